"""The README's "Python API" block runs as written (against the fake server), and ``import evalsuite`` stays light."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, write_config

from evalsuite.testing.fake_server import FakeOpenAIServer


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- python-api:[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README has no python-api block"
    return m.group(1)


def _pair_file(path: Path) -> Path:
    rows = []
    for i in range(1, 9):
        w1, w2 = ("model_1", "model_1") if i % 3 else ("tie", "model_2")  # vicuna (model_1) mostly wins both orders
        rows.append({"question_id": i, "model_1": "vicuna-13b", "model_2": "llama-13b", "g1_winner": w1, "g2_winner": w2,
                     "judge": ["gpt-4", "pair-v2"], "turn": 1})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_readme_python_api_block_runs(tmp_path: Path, questions: Path) -> None:
    code = _readme_block()
    (tmp_path / "snippet.py").write_text(code, encoding="utf-8")
    _pair_file(tmp_path / "gpt-4_pair.jsonl")
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 2.0}) as srv:
        write_config(tmp_path / "evalsuite.toml", srv.base_url, ["sft", "dpo"], questions)
        res = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        calls = srv.stats()["by_model"]
    assert calls == {"sft": 24, "dpo": 24, "judge": 48}  # 12 two-turn questions; both orders judged
    out = res.stdout.splitlines()
    assert out[0].startswith("dpo vs sft: ") and "on 24 items" in out[0]
    assert out[1].startswith("gate: pass")
    model, win_rate = out[2].split()
    # questions 3 and 6 disagree between orders (ties under MT-Bench's rule), the other 6 are wins: (6 + 2 * 0.5) / 8
    assert model == "vicuna-13b" and float(win_rate) == 7 / 8
    assert (tmp_path / "runs" / "default" / "results.json").is_file()
    assert (tmp_path / "runs" / "mtbench" / "leaderboard.md").is_file()


def test_import_evalsuite_is_light_and_reexports_lazily() -> None:
    code = (
        "import sys, evalsuite\n"
        "assert not {'numpy', 'scipy', 'openai', 'evalsuite.api'} & set(sys.modules), sorted(sys.modules)\n"
        "from evalsuite import gate, import_judgments, load_results\n"
        "import evalsuite.api as api\n"
        "assert (gate, import_judgments, load_results) == (api.gate, api.import_judgments, api.load_results)\n"
        "assert callable(evalsuite.gate) and 'gate' in dir(evalsuite)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
