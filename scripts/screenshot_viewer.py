"""Screenshot of the HTML viewer (docs/viewer.png) from a real run: ``evalsuite compare`` over loopback against the
fake OpenAI-compatible server (evalsuite.testing.fake_server) on the bundled mtb-style benchmark, then
``evalsuite view``, then headless Chromium opens the page from disk, opens the first match and takes the picture.

    python scripts/screenshot_viewer.py [--out docs/viewer.png] [--limit 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_viewer import chromium_driver, load_to_interactive_ms

from evalsuite.report.results import load_results
from evalsuite.testing.fake_server import FakeOpenAIServer, FaultPlan

ROOT = Path(__file__).resolve().parents[1]
STRENGTHS = {"sft": 0.0, "dpo-b0.1": 0.8, "simpo-b2.0": -0.3}


def _config(path: Path, base_url: str) -> Path:
    lines = ['[bench]', 'name = "mtb-style"', ""]
    for m in STRENGTHS:
        lines += [f'[models."{m}"]', 'backend = "openai"', f'base_url = "{base_url}"', f'model = "{m}"', ""]
    lines += ["[judge]", 'backend = "openai"', f'base_url = "{base_url}"', 'model = "judge"', "concurrency = 16"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _evalsuite(*args: str, cwd: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "evalsuite", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"evalsuite {args[0]} failed:\n{res.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "viewer.png")
    ap.add_argument("--limit", type=int, default=2, help="questions per category of the bundled benchmark")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="evalsuite-screenshot-") as tmp:
        work = Path(tmp)
        with FakeOpenAIServer(strengths=STRENGTHS, position_bias=0.4, faults=FaultPlan(rate_no_verdict=0.03)) as srv:
            cfg = _config(work / "evalsuite.toml", srv.base_url)
            _evalsuite("compare", "sft", *[m for m in STRENGTHS if m != "sft"], "--config", str(cfg), "--run-dir", "run",
                       "--limit", str(args.limit), "--quiet", "--resamples", "2000", "--bt-rounds", "200", cwd=work)
        _evalsuite("view", "--run-dir", "run", cwd=work)
        page = work / "run" / "viewer.html"
        with chromium_driver(width=1400, height=1100) as driver:
            load_to_interactive_ms(driver, page)
            # the part a reader comes for: the match list with its filters, the first match opened
            driver.execute_script(
                "var plots = document.querySelector('#leaderboard details'); if (plots) plots.open = false;"
                "var first = document.querySelector('#matches > details.match'); first.open = true;"
                "window.scrollTo(0, document.getElementById('judgments').offsetTop - 8);"
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        results = load_results(work / "run" / "results.json")
    n = sum(c.n + c.errors for c in results.comparisons)
    print(f"wrote {args.out} ({n} matches of {results.info.benchmark.n_questions} questions)")


if __name__ == "__main__":
    main()
