"""PNG plots of a results document (matplotlib, the ``plots`` extra): forest plot of win rates with CIs, win rate
against beta per variant, per-category bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from evalsuite.errors import InputError


def write_plots(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("--plots needs matplotlib", fix="pip install 'evalsuite[plots]'") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    comps = [c for c in results.get("comparisons", []) if c.get("win_rate") is not None]
    written: list[Path] = []
    baseline = results["baseline"]

    if comps:
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(comps) + 1.5))
        order = sorted(comps, key=lambda c: c["win_rate"])
        ys = range(len(order))
        ax.errorbar(
            [100 * c["win_rate"] for c in order], list(ys),
            xerr=[[100 * (c["win_rate"] - c["ci_low"]) for c in order], [100 * (c["ci_high"] - c["win_rate"]) for c in order]],
            fmt="o", capsize=3,
        )
        ax.axvline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(list(ys), [c["model"] for c in order])
        ax.set_xlabel(f"win rate vs {baseline} (%), {int(100 * results.get('stats', {}).get('confidence', 0.95))}% CI")
        ax.set_title("Win rate vs baseline")
        fig.tight_layout()
        written.append(out_dir / "forest.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    sweeps = results.get("sweeps", [])
    if sweeps:
        fig, ax = plt.subplots(figsize=(7, 4))
        for s in sweeps:
            rows = s["rows"]
            betas = [r["beta"] for r in rows]
            wr = [100 * r["win_rate"] for r in rows]
            lo = [100 * (r["win_rate"] - r["ci_low"]) for r in rows]
            hi = [100 * (r["ci_high"] - r["win_rate"]) for r in rows]
            ax.errorbar(betas, wr, yerr=[lo, hi], marker="o", capsize=3, label=s["variant"])
        ax.axhline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("beta")
        ax.set_ylabel(f"win rate vs {baseline} (%)")
        ax.legend()
        ax.set_title("Win rate against beta")
        fig.tight_layout()
        written.append(out_dir / "beta_sweep.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    cats = sorted({k for c in comps for k in c.get("per_category", {})})
    if comps and cats:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats)), 4))
        width = 0.8 / len(comps)
        for i, c in enumerate(comps):
            vals = [100 * (c["per_category"].get(k, {}).get("win_rate") or 0) for k in cats]
            ax.bar([j + i * width for j in range(len(cats))], vals, width, label=c["model"])
        ax.axhline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cats))], cats, rotation=30)
        ax.set_ylabel(f"win rate vs {baseline} (%)")
        ax.legend(fontsize="small")
        ax.set_title("Win rate by category")
        fig.tight_layout()
        written.append(out_dir / "categories.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
