"""Training-health flags: each fires on its anomaly and not on a healthy run, on synthetic metric streams and on real
tiny training runs (a DPO run driven into collapse; a TRL log key gone missing, seen from the run to the leaderboard).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evalsuite.trainers import health
from evalsuite.trainers.health import Flag, training_flags

N = 120


def _stream(**series: Callable[[int], float | None]) -> list[dict[str, float | None]]:
    """A healthy DPO run (loss falling, margin growing steadily, log-probs drifting gently), with overrides."""
    base: dict[str, Callable[[int], float | None]] = {
        # Small deterministic wiggle so the stream is not a perfect line.
        "loss": lambda t: 0.69 - 0.25 * t / N + 0.01 * math.sin(t),
        "margin": lambda t: 2.0 * t / N + 0.02 * math.sin(t),
        "chosen_logp": lambda t: -100.0 - 4.0 * t / N,
        "rejected_logp": lambda t: -110.0 - 20.0 * t / N,
        "accuracy": lambda t: 0.5 + 0.3 * t / N,
        "kl": lambda t: None,
    }
    base.update(series)
    return [{"step": t, **{k: f(t) for k, f in base.items()}} for t in range(1, N + 1)]


def _codes(flags: list[Flag]) -> list[str]:
    return [f.code for f in flags]


def test_healthy_run_has_no_flags() -> None:
    assert training_flags(_stream()) == []


def test_healthy_kto_run_with_small_kl_has_no_flags() -> None:
    assert training_flags(_stream(kl=lambda t: 0.5 * t / N, accuracy=lambda t: None)) == []


def test_loss_not_falling_points_at_beta_or_data() -> None:
    flags = training_flags(_stream(loss=lambda t: 0.69 + 0.01 * math.sin(t)))
    assert _codes(flags) == ["loss_not_falling"]
    assert "beta too large or data poor" in flags[0].fix
    assert "last-quarter mean" in flags[0].message


def test_loss_swinging_points_at_learning_rate() -> None:
    flags = training_flags(_stream(loss=lambda t: (0.2 if t % 2 else 1.2) - 0.1 * t / N))
    assert _codes(flags) == ["loss_swinging"]
    assert "learning rate too high" in flags[0].fix


def test_margin_exploding_above_threshold_names_value_and_step() -> None:
    flags = training_flags(_stream(margin=lambda t: 48.2 * t / N))
    assert _codes(flags) == ["margin_exploding"]
    assert "margin grew to 48.2 by step 120" in flags[0].message
    assert "beta too small or learning rate too high" in flags[0].fix


def test_margin_growing_super_linearly_is_flagged_below_the_threshold() -> None:
    flags = training_flags(_stream(margin=lambda t: 15.0 * (t / N) ** 4))
    assert _codes(flags) == ["margin_exploding"]
    assert "super-linearly" in flags[0].message


def test_margin_not_growing_points_at_beta_or_data() -> None:
    flags = training_flags(_stream(margin=lambda t: 0.001 * math.sin(t)))
    assert _codes(flags) == ["margin_not_growing"]
    assert "beta too large or data poor" in flags[0].fix


def test_chosen_logp_falling_sharply_in_nats() -> None:
    flags = training_flags(_stream(chosen_logp=lambda t: -100.0 - 40.0 * t / N))
    assert _codes(flags) == ["chosen_logp_falling"]
    assert "beta too small or learning rate too high" in flags[0].fix


def test_chosen_logp_falling_sharply_relative() -> None:
    # SimPO logs per-token log-probs: a small number of nats can still be a collapse.
    flags = training_flags(_stream(chosen_logp=lambda t: -2.0 - 3.0 * t / N))
    assert _codes(flags) == ["chosen_logp_falling"]


def test_rejected_logp_rising() -> None:
    flags = training_flags(_stream(rejected_logp=lambda t: -110.0 + 10.0 * t / N))
    assert _codes(flags) == ["rejected_logp_rising"]


def test_kl_above_limit() -> None:
    flags = training_flags(_stream(kl=lambda t: 12.0 * t / N))
    assert _codes(flags) == ["kl_high"]
    assert "reached 12" in flags[0].message and "beta too small" in flags[0].fix


def test_overfitting_points_at_epochs() -> None:
    flags = training_flags(
        _stream(
            loss=lambda t: 0.69 * max(0.0, 1 - 1.5 * t / N) + 0.001,
            accuracy=lambda t: min(1.0, 0.5 + 2 * t / N),
        )
    )
    assert _codes(flags) == ["overfitting"]
    assert "too many epochs" in flags[0].fix


def test_short_runs_get_threshold_checks_only() -> None:
    two_steps = [{"step": 1, "loss": 0.69, "margin": 0.0}, {"step": 2, "loss": 0.70, "margin": 0.0}]
    assert training_flags(two_steps) == []  # no trend from two points
    exploded = [{"step": 1, "loss": 0.5, "margin": 1.0}, {"step": 2, "loss": 0.1, "margin": 25.0, "kl": 11.0}]
    assert _codes(training_flags(exploded)) == ["margin_exploding", "kl_high"]


def test_missing_null_and_nonfinite_values_are_skipped() -> None:
    stream = _stream(margin=lambda t: None if t % 3 else 2.0 * t / N)
    stream[5]["loss"] = float("nan")
    stream[6]["loss"] = None
    assert training_flags(stream) == []
    assert training_flags([]) == []


def test_thresholds_are_documented_constants() -> None:
    assert health.MARGIN_EXPLODING == 20.0 and health.KL_MAX == 10.0
    assert health.CHOSEN_LOGP_MAX_DROP_NATS == 20.0 and health.CHOSEN_LOGP_MAX_DROP_RELATIVE == 0.5


@pytest.mark.parametrize("code", ["loss_not_falling", "margin_exploding"])
def test_flags_serialise_for_the_manifest(code: str) -> None:
    flag = Flag(code, "why", "fix it")
    assert flag.to_dict() == {"code": code, "message": "why", "fix": "fix it"}



# ---------------------------------------------------------------------------------------------------------------
# Chosen/rejected judged on the per-batch log-ratio to the reference (DPO, IPO, KTO)

BETA = 0.01


def _batch_swing(t: int) -> float:
    """What batch composition does to a summed log-prob: +-40 nats from one batch to the next, no trend."""
    return 40.0 * math.sin(2.7 * t)


def _dpo_stream(chosen_ratio: Callable[[int], float], rejected_ratio: Callable[[int], float]) -> list[dict[str, float | None]]:
    """A DPO run whose chosen/rejected log-ratios to the reference follow the given curves; the logged rewards are
    beta x the log-ratio and the raw log-probs are reference log-prob (swinging with the batch) + log-ratio."""
    return _stream(
        chosen_reward=lambda t: BETA * chosen_ratio(t),
        rejected_reward=lambda t: BETA * rejected_ratio(t),
        margin=lambda t: BETA * (chosen_ratio(t) - rejected_ratio(t)),
        chosen_logp=lambda t: -200.0 + _batch_swing(t) + chosen_ratio(t),
        rejected_logp=lambda t: -210.0 + _batch_swing(t + 1) + rejected_ratio(t),
    )


def test_a_collapse_below_the_reference_is_seen_through_batch_noise() -> None:
    # The run: chosen answers end 12-17 nats below the reference while the raw log-probs swing by batch.
    stream = _dpo_stream(lambda t: -15.0 * min(1.0, 3 * t / N), lambda t: -40.0 * t / N)
    flags = training_flags(stream, beta=BETA, reference=True)
    assert "chosen_logp_falling" in _codes(flags)
    [flag] = [f for f in flags if f.code == "chosen_logp_falling"]
    assert "15 nats below the reference" in flag.message and "beta 0.01" in flag.message
    assert "beta too small or learning rate too high" in flag.fix
    # Read as raw summed log-probs of different batches (the old rule), the same run looked healthy.
    assert "chosen_logp_falling" not in _codes(training_flags(stream))


def test_a_collapse_right_after_the_first_step_is_still_below_the_reference() -> None:
    # Collapsed by step 2 and stayed there: first and last quarters agree, but both are far below the reference.
    flags = training_flags(_dpo_stream(lambda t: 0.0 if t == 1 else -18.0, lambda t: -45.0), beta=BETA,
                           reference=True)
    assert "chosen_logp_falling" in _codes(flags)


def test_healthy_dpo_drifting_a_little_below_the_reference_is_not_flagged() -> None:
    stream = _dpo_stream(lambda t: -4.0 * t / N, lambda t: -30.0 * t / N)
    assert training_flags(stream, beta=BETA, reference=True) == []


def test_rejected_answers_ending_above_the_reference_are_flagged() -> None:
    flags = training_flags(_dpo_stream(lambda t: 6.0 * t / N, lambda t: 3.0 * t / N), beta=BETA, reference=True)
    assert _codes(flags) == ["rejected_logp_rising"]
    assert "above the reference" in flags[0].message


def test_simpo_has_no_reference_and_keeps_the_raw_log_prob_checks() -> None:
    # SimPO's rewards are beta x the average log-prob, not a log-ratio: a large negative reward is normal there.
    simpo = _stream(chosen_reward=lambda t: -2.0 * 1.5, chosen_logp=lambda t: -1.5 - 0.2 * t / N,
                    rejected_logp=lambda t: -1.8 - 0.5 * t / N)
    assert training_flags(simpo, beta=2.0, reference=False) == []
    collapsed = _stream(chosen_logp=lambda t: -1.5 - 3.0 * t / N, rejected_logp=lambda t: -1.8 - 3.0 * t / N)
    assert "chosen_logp_falling" in _codes(training_flags(collapsed, beta=2.0, reference=False))


# ---------------------------------------------------------------------------------------------------------------
# Metrics that went missing are a flag, not silence

DPO_KEYS = {"loss": "loss", "margin": "rewards/margins", "chosen_reward": "rewards/chosen",
            "rejected_reward": "rewards/rejected", "chosen_logp": "logps/chosen", "rejected_logp": "logps/rejected",
            "accuracy": "rewards/accuracies"}


def test_a_metric_never_logged_is_a_metrics_missing_flag() -> None:
    stream = _dpo_stream(lambda t: -15.0, lambda t: -40.0)
    for row in stream:
        row["chosen_reward"] = None  # as if TRL had renamed rewards/chosen
    flags = training_flags(stream, beta=BETA, reference=True, expected=DPO_KEYS)
    assert flags[0].code == health.METRICS_MISSING == "metrics-missing"
    assert "chosen_reward (TRL key 'rewards/chosen')" in flags[0].message and "120 logged steps" in flags[0].message
    assert "TRL_METRIC_NAMES" in flags[0].fix
    assert "chosen_logp_falling" not in _codes(flags)  # the check that needed it could not run, and says so above


def test_no_logged_step_at_all_is_a_metrics_missing_flag() -> None:
    assert _codes(training_flags([], expected={"loss": "loss"})) == ["metrics-missing"]
    assert training_flags([]) == []  # nothing expected (a run shorter than one logging interval): nothing to say


def test_a_complete_stream_has_nothing_missing() -> None:
    stream = _dpo_stream(lambda t: -2.0 * t / N, lambda t: -20.0 * t / N)
    assert training_flags(stream, beta=BETA, reference=True, expected=DPO_KEYS) == []


def test_every_trainer_family_names_the_trl_keys_it_is_expected_to_log() -> None:
    from evalsuite.trainers._train import TRAINER_BUILDERS, TRAINER_METRICS, TRL_METRIC_NAMES, expected_metrics

    # every trainer family _train_one builds says what it logs (online DPO has its own loop and key map)
    assert set(TRAINER_BUILDERS) == set(TRAINER_METRICS)
    assert expected_metrics("dpo") == DPO_KEYS
    for trainer in TRAINER_METRICS:
        for stable, key in expected_metrics(trainer).items():
            assert TRL_METRIC_NAMES[key] == stable


# ---------------------------------------------------------------------------------------------------------------
# Real tiny runs (CPU, seconds): the collapse, and a TRL key gone missing from the run to the leaderboard

N_PAIRS = 16


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (more only contend for a busy CPU); restored afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> tuple[Path, Path]:
    """A tiny SFT checkpoint (the demo's recipe, shrunk: 16 of its preference prompts with their chosen answers) and
    the preference file; the checkpoint is registered in ``<out>/manifest.json`` as ``sft``."""
    pytest.importorskip("trl")
    from evalsuite._resources import demo_data_dir
    from evalsuite.demo.tiny import build_tiny_model
    from evalsuite.trainers import TrainOptions, train_variant

    root = tmp_path_factory.mktemp("health")
    rows = [json.loads(line) for line in (demo_data_dir() / "prefs.jsonl").read_text().splitlines()][:N_PAIRS]
    prefs = root / "prefs.jsonl"
    prefs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sft_data = root / "sft.jsonl"
    sft_data.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r["chosen"]}) + "\n" for r in rows))
    base = build_tiny_model(root / "base", hidden_size=64, num_layers=2, num_heads=4, seed=0)
    out = root / "checkpoints"
    train_variant("sft", model=str(base), data=str(sft_data), out_dir=out, progress=False,
                  options=TrainOptions(lr=5e-3, max_steps=10, batch_size=8, seed=0, max_length=128))
    return out, prefs


@pytest.mark.slow
def test_a_real_dpo_run_driven_into_collapse_is_flagged(sft_run: tuple[Path, Path], tmp_path: Path) -> None:
    from evalsuite.trainers import TrainOptions, read_metrics, train_variant

    out, prefs = sft_run
    # The settings (beta 0.01, lr 5e-3, full weights), for three epochs of 16 pairs.
    [entry] = train_variant("dpo", model=str(out / "sft"), data=str(prefs), betas=[0.01], out_dir=tmp_path,
                            progress=False,
                            options=TrainOptions(lr=5e-3, max_steps=12, batch_size=4, seed=0, max_length=128))
    metrics = read_metrics(entry.metrics)
    ratio = [m["chosen_reward"] / 0.01 for m in metrics]
    last_quarter = sum(ratio[-3:]) / 3
    assert ratio[0] == 0.0 and last_quarter < -health.CHOSEN_LOGRATIO_MAX_DROP_NATS  # collapsed below the reference
    codes = [f["code"] for f in entry.flags]
    assert "chosen_logp_falling" in codes, entry.flags
    [flag] = [f for f in entry.flags if f["code"] == "chosen_logp_falling"]
    assert "below the reference" in flag["message"]
    assert "metrics-missing" not in codes


@pytest.mark.slow
def test_a_renamed_trl_key_is_said_by_the_run_and_shown_on_the_leaderboard(
    sft_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from conftest import run_cli, write_config

    from evalsuite.cli._train import train_cmd
    from evalsuite.testing.fake_server import FakeOpenAIServer
    from evalsuite.trainers import _metrics

    out, prefs = sft_run
    # As if a TRL release had renamed "rewards/chosen": the trainer's logs carry it under a name we do not map.
    real_metrics_row = _metrics.metrics_row

    def renamed(logs: dict[str, float], step: int, names: dict[str, str] | None = None) -> dict[str, object] | None:
        logs = {("rewards/chosen_mean" if k == "rewards/chosen" else k): v for k, v in logs.items()}
        return real_metrics_row(logs, step, names)

    monkeypatch.setattr(_metrics, "metrics_row", renamed)
    args = ["dpo", "--model", str(out / "sft"), "--data", str(prefs), "--out", str(out), "--beta", "0.1",
            "--max-steps", "2", "--batch-size", "4", "--lr", "1e-4", "--max-length", "128", "--quiet"]
    result = CliRunner().invoke(train_cmd, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[metrics-missing]" in result.output and "rewards/chosen" in result.output  # the run says so

    cfg = tmp_path / "evalsuite.toml"
    with FakeOpenAIServer() as srv:
        write_config(cfg, srv.base_url, [], tmp_path / "unused.jsonl")
        text = cfg.read_text().replace(f'path = "{tmp_path / "unused.jsonl"}"', 'name = "mtb-style"\nlimit = 1\n'
                                       'categories = ["writing"]')
        cfg.write_text(text + f'\n[train]\nmanifest = "{out / "manifest.json"}"\nbackend = "hf"\nmax_tokens = 4\n')
        res = run_cli("compare", "sft", "dpo-b0.1", "--config", str(cfg), "--run-dir", "run", "--quiet",
                      "--resamples", "200", "--bt-rounds", "50", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    board = (tmp_path / "run" / "leaderboard.md").read_text()
    assert "`dpo-b0.1` ⚠" in board
    [row] = [line for line in board.splitlines() if "metrics-missing" in line]
    assert row.startswith("| `dpo-b0.1`") and "rewards/chosen" in row
