"""Training-health flags on synthetic metric streams: each flag fires on its anomaly and not on a healthy run."""

from __future__ import annotations

import math
from collections.abc import Callable

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
