"""PNG plots of a typed ``Results`` (matplotlib, the ``plots`` extra): forest plot of win rates with CIs, win rate
against beta per variant, per-category bars."""

from __future__ import annotations

from pathlib import Path
from evalsuite.errors import InputError
from evalsuite.report.results import Results


def write_plots(results: Results, out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("--plots needs matplotlib", fix="pip install 'evalsuite[plots]'") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    comps = [c for c in results.comparisons if c.win_rate is not None and c.ci_low is not None and c.ci_high is not None]
    written: list[Path] = []
    baseline = results.baseline

    if comps:
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(comps) + 1.5))
        order = sorted(comps, key=lambda c: c.win_rate or 0.0)
        ys = range(len(order))
        wr = [c.win_rate or 0.0 for c in order]
        ax.errorbar(
            [100 * w for w in wr], list(ys),
            xerr=[[100 * (w - (c.ci_low or 0.0)) for w, c in zip(wr, order)],
                  [100 * ((c.ci_high or 0.0) - w) for w, c in zip(wr, order)]],
            fmt="o", capsize=3,
        )
        ax.axvline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(list(ys), [c.model for c in order])
        ax.set_xlabel(f"win rate vs {baseline} (%), {int(100 * results.stats.confidence)}% CI")
        ax.set_title("Win rate vs baseline")
        fig.tight_layout()
        written.append(out_dir / "forest.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    sweeps = results.sweeps
    if sweeps:
        fig, ax = plt.subplots(figsize=(7, 4))
        for s in sweeps:
            rows = [r for r in s.rows if r.win_rate is not None and r.ci_low is not None and r.ci_high is not None]
            betas = [r.beta for r in rows]
            rates = [100 * (r.win_rate or 0.0) for r in rows]
            lo = [100 * ((r.win_rate or 0.0) - (r.ci_low or 0.0)) for r in rows]
            hi = [100 * ((r.ci_high or 0.0) - (r.win_rate or 0.0)) for r in rows]
            ax.errorbar(betas, rates, yerr=[lo, hi], marker="o", capsize=3, label=s.variant)
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

    cats = sorted({k for c in comps for k in c.per_category})
    if comps and cats:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats)), 4))
        width = 0.8 / len(comps)
        for i, c in enumerate(comps):
            vals = [100 * ((c.per_category[k].win_rate if k in c.per_category else None) or 0) for k in cats]
            ax.bar([j + i * width for j in range(len(cats))], vals, width, label=c.model)
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
