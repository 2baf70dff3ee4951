"""Training-health flags: the warning signs practitioners read off a preference-optimisation run's logged metrics.

Pure functions of the metrics stream written to ``metrics.jsonl`` (one mapping per logged step with the stable keys
``step, loss, margin, chosen_reward, rejected_reward, chosen_logp, rejected_logp, accuracy, kl``; missing or null
values are skipped). No training library is imported here.

Trend checks compare the mean of the first quarter of the logged values with the mean of the last quarter, which is
robust to the step-to-step noise of small batches; they need at least ``MIN_POINTS_FOR_TREND`` logged values.
Threshold checks (margin, KL) apply from the first value.

Where the trainer has a reference (DPO, IPO, KTO: ``reference=True`` with its ``beta``), the chosen and rejected
checks read the per-batch log-ratio to the reference, ``reward / beta = policy log-prob - reference log-prob`` on
the same batch: it starts at 0 (the policy starts as the reference) and does not swing with batch composition, as the
raw summed log-probs of different batches do (by 40+ nats), which hid real collapses. The reference-free SimPO
keeps the raw log-prob checks.

``expected`` names the metrics the trainer logs: one never logged in a run (TRL renamed its key, say) is a
``metrics-missing`` flag rather than health checks that silently did not run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean, pstdev

# Trend checks on fewer points would read noise as a trend.
MIN_POINTS_FOR_TREND = 8
# Loss: the last-quarter mean must be below the first-quarter mean by at least this fraction of it (a noisy flat
# loss dips below its start half the time, so "any drop" would pass it).
LOSS_MIN_RELATIVE_DROP = 0.01
# Loss swinging: std of step-to-step changes divided by the mean absolute loss.
LOSS_SWING_RELATIVE_STD = 1.0
# Margin (chosen reward - rejected reward): above this the policy has run far from the reference.
MARGIN_EXPLODING = 20.0
# Super-linear growth: the last half's increase is this many times the first half's, and the margin is large enough
# to matter.
MARGIN_SUPERLINEAR_RATIO = 4.0
MARGIN_SUPERLINEAR_MIN = 5.0
# Margin not growing: last-quarter mean at most first-quarter mean plus this.
MARGIN_MIN_GROWTH = 0.01
# Chosen log-prob falling: a drop larger than this many nats, or this fraction of its starting magnitude.
CHOSEN_LOGP_MAX_DROP_NATS = 20.0
CHOSEN_LOGP_MAX_DROP_RELATIVE = 0.5
# Rejected log-prob rising by more than this many nats.
REJECTED_LOGP_MAX_RISE_NATS = 1.0
# With a reference: the chosen answers ending (last-quarter mean of the per-batch log-ratio) this many nats below the
# reference is a collapse (the run: 12-17 nats below with `health ok`); the rejected ones ending above it
# by REJECTED_LOGP_MAX_RISE_NATS means the dispreferred answers became more likely than before training.
CHOSEN_LOGRATIO_MAX_DROP_NATS = 10.0
# KL to the reference (KTO logs it) above this many nats.
KL_MAX = 10.0
# Overfitting: reward accuracy pinned at (almost) 1 while the loss is (almost) 0 in the last quarter.
OVERFIT_ACCURACY = 0.99
OVERFIT_LOSS = 0.05

FIX_COLLAPSE = "beta too small or learning rate too high: raise --beta or lower --lr"
FIX_NO_EFFECT = "beta too large or data poor: lower --beta, raise --lr, or run `evalsuite data check` on the data"
FIX_UNSTABLE = "learning rate too high or batch too small: lower --lr or raise --grad-accum"
FIX_OVERFIT = "too many epochs: lower --epochs (or --max-steps) or add data"
FIX_METRICS = (
    "the installed TRL logs under other names: map them in TRL_METRIC_NAMES (evalsuite/trainers/_train.py), "
    "or install the TRL version evalsuite was tested with"
)
METRICS_MISSING = "metrics-missing"


@dataclass(frozen=True)
class Flag:
    """One warning sign: a stable code, what was seen (with numbers), and the usual fix."""

    code: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "fix": self.fix}


def _series(metrics: Sequence[Mapping[str, float | None]], key: str) -> tuple[list[int], list[float]]:
    steps: list[int] = []
    values: list[float] = []
    for position, row in enumerate(metrics, start=1):
        value = row.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            continue
        step = row.get("step")
        steps.append(int(step) if isinstance(step, (int, float)) else position)
        values.append(number)
    return steps, values


def _quarters(values: Sequence[float]) -> tuple[float, float]:
    size = max(1, len(values) // 4)
    return fmean(values[:size]), fmean(values[-size:])


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def _loss_flags(steps: list[int], loss: list[float]) -> list[Flag]:
    flags: list[Flag] = []
    if len(loss) < MIN_POINTS_FOR_TREND:
        return flags
    first, last = _quarters(loss)
    if last >= first - LOSS_MIN_RELATIVE_DROP * abs(first):
        flags.append(
            Flag(
                "loss_not_falling",
                f"loss did not fall: last-quarter mean {_fmt(last)} vs first-quarter mean {_fmt(first)} "
                f"(steps {steps[0]}-{steps[-1]})",
                FIX_NO_EFFECT,
            )
        )
    changes = [b - a for a, b in zip(loss, loss[1:])]
    scale = fmean(abs(v) for v in loss)
    if scale > 0:
        swing = pstdev(changes) / scale
        if swing > LOSS_SWING_RELATIVE_STD:
            flags.append(
                Flag(
                    "loss_swinging",
                    f"loss swings: step-to-step changes have std {_fmt(swing)}x the mean loss {_fmt(scale)} "
                    f"(limit {LOSS_SWING_RELATIVE_STD:g}x)",
                    FIX_UNSTABLE,
                )
            )
    return flags


def _margin_flags(steps: list[int], margin: list[float]) -> list[Flag]:
    flags: list[Flag] = []
    if not margin:
        return flags
    peak_at = max(range(len(margin)), key=lambda i: margin[i])
    exploding = margin[peak_at] > MARGIN_EXPLODING
    reason = f"above {MARGIN_EXPLODING:g}"
    if not exploding and len(margin) >= MIN_POINTS_FOR_TREND:
        half = len(margin) // 2
        early_growth = margin[half - 1] - margin[0]
        late_growth = margin[-1] - margin[half - 1]
        if (
            margin[-1] > MARGIN_SUPERLINEAR_MIN
            and late_growth > 0
            and late_growth > MARGIN_SUPERLINEAR_RATIO * max(early_growth, 0.0)
        ):
            exploding, peak_at = True, len(margin) - 1
            reason = (
                f"growing super-linearly: +{_fmt(late_growth)} in the second half "
                f"vs +{_fmt(early_growth)} in the first"
            )
    if exploding:
        flags.append(
            Flag(
                "margin_exploding",
                f"margin grew to {_fmt(margin[peak_at])} by step {steps[peak_at]} ({reason})",
                FIX_COLLAPSE,
            )
        )
    elif len(margin) >= MIN_POINTS_FOR_TREND:
        first, last = _quarters(margin)
        if last <= first + MARGIN_MIN_GROWTH:
            flags.append(
                Flag(
                    "margin_not_growing",
                    f"margin did not grow: last-quarter mean {_fmt(last)} vs first-quarter mean {_fmt(first)} "
                    f"by step {steps[-1]}",
                    FIX_NO_EFFECT,
                )
            )
    return flags


def _logp_flags(
    chosen: tuple[list[int], list[float]], rejected: tuple[list[int], list[float]]
) -> list[Flag]:
    flags: list[Flag] = []
    steps, values = chosen
    if len(values) >= MIN_POINTS_FOR_TREND:
        first, last = _quarters(values)
        drop = first - last
        relative = drop / abs(first) if first else 0.0
        if drop > CHOSEN_LOGP_MAX_DROP_NATS or (drop > 0 and relative > CHOSEN_LOGP_MAX_DROP_RELATIVE):
            flags.append(
                Flag(
                    "chosen_logp_falling",
                    f"chosen log-prob fell from {_fmt(first)} to {_fmt(last)} by step {steps[-1]} "
                    f"(-{_fmt(drop)} nats, {relative:.0%}): the model is unlearning the preferred answers",
                    FIX_COLLAPSE,
                )
            )
    steps, values = rejected
    if len(values) >= MIN_POINTS_FOR_TREND:
        first, last = _quarters(values)
        if last - first > REJECTED_LOGP_MAX_RISE_NATS:
            flags.append(
                Flag(
                    "rejected_logp_rising",
                    f"rejected log-prob rose from {_fmt(first)} to {_fmt(last)} by step {steps[-1]}: "
                    "the model is making dispreferred answers more likely",
                    FIX_NO_EFFECT,
                )
            )
    return flags


def _logratio_flags(
    steps: list[int], chosen: list[float], rejected: tuple[list[int], list[float]], beta: float
) -> list[Flag]:
    flags: list[Flag] = []
    if len(chosen) >= MIN_POINTS_FOR_TREND:
        first, last = _quarters(chosen)
        if last < -CHOSEN_LOGRATIO_MAX_DROP_NATS:
            flags.append(
                Flag(
                    "chosen_logp_falling",
                    f"chosen answers ended {_fmt(-last)} nats below the reference by step {steps[-1]} (last-quarter "
                    f"mean of the per-batch log-ratio, chosen reward / beta {beta:g}; first quarter {_fmt(first)}; "
                    f"limit {CHOSEN_LOGRATIO_MAX_DROP_NATS:g}): the model is unlearning the preferred answers",
                    FIX_COLLAPSE,
                )
            )
    rejected_steps, values = rejected
    if len(values) >= MIN_POINTS_FOR_TREND:
        _, last = _quarters(values)
        if last > REJECTED_LOGP_MAX_RISE_NATS:
            flags.append(
                Flag(
                    "rejected_logp_rising",
                    f"rejected answers ended {_fmt(last)} nats above the reference by step {rejected_steps[-1]} "
                    f"(last-quarter mean of the per-batch log-ratio, rejected reward / beta {beta:g}): "
                    "the model is making dispreferred answers more likely",
                    FIX_NO_EFFECT,
                )
            )
    return flags


def _log_ratio(metrics: Sequence[Mapping[str, float | None]], reward: str, beta: float) -> tuple[list[int], list[float]]:
    steps, rewards = _series(metrics, reward)
    return steps, [r / beta for r in rewards]


def _missing_flags(metrics: Sequence[Mapping[str, float | None]], expected: Mapping[str, str]) -> list[Flag]:
    if not metrics:
        return [
            Flag(
                METRICS_MISSING,
                "no training step reached metrics.jsonl (the trainer logged no `loss`): no health check ran",
                FIX_METRICS,
            )
        ]
    missing = [name for name in expected if not _series(metrics, name)[1]]
    if not missing:
        return []
    keys = ", ".join(f"{name} (TRL key {expected[name]!r})" for name in missing)
    return [
        Flag(
            METRICS_MISSING,
            f"no value of {keys} in any of the {len(metrics)} logged steps: the health checks that read "
            f"{'it' if len(missing) == 1 else 'them'} did not run",
            FIX_METRICS,
        )
    ]


def _kl_flags(steps: list[int], kl: list[float]) -> list[Flag]:
    over = [i for i, v in enumerate(kl) if v > KL_MAX]
    if not over:
        return []
    peak = max(over, key=lambda i: kl[i])
    return [
        Flag(
            "kl_high",
            f"KL to the reference reached {_fmt(kl[peak])} at step {steps[peak]} (limit {KL_MAX:g}), "
            f"first above the limit at step {steps[over[0]]}",
            FIX_COLLAPSE,
        )
    ]


def _overfit_flags(
    loss: tuple[list[int], list[float]], accuracy: tuple[list[int], list[float]]
) -> list[Flag]:
    (loss_steps, loss_values), (_, acc_values) = loss, accuracy
    if len(loss_values) < MIN_POINTS_FOR_TREND or len(acc_values) < MIN_POINTS_FOR_TREND:
        return []
    _, last_loss = _quarters(loss_values)
    _, last_acc = _quarters(acc_values)
    if last_acc >= OVERFIT_ACCURACY and last_loss <= OVERFIT_LOSS:
        return [
            Flag(
                "overfitting",
                f"reward accuracy {last_acc:.2f} with loss {_fmt(last_loss)} over the last quarter "
                f"(to step {loss_steps[-1]}): the training pairs are memorised",
                FIX_OVERFIT,
            )
        ]
    return []


def training_flags(
    metrics: Sequence[Mapping[str, float | None]],
    *,
    beta: float | None = None,
    reference: bool = False,
    expected: Mapping[str, str] | None = None,
) -> list[Flag]:
    """Warning signs in a run's logged metrics, in a stable order; ``[]`` for a healthy (or too short) run.

    ``reference`` with ``beta``: the trainer's rewards are ``beta`` x the log-ratio to a reference (DPO, IPO, KTO),
    and the chosen/rejected checks read that log-ratio; otherwise they read the raw log-probs. ``expected`` maps
    each metric the trainer should have logged to the trainer's own key for it, for the ``metrics-missing`` flag.
    """
    flags = _missing_flags(metrics, expected) if expected is not None else []
    loss = _series(metrics, "loss")
    flags += _loss_flags(*loss)
    flags += _margin_flags(*_series(metrics, "margin"))
    if reference and beta:
        flags += _logratio_flags(
            *_log_ratio(metrics, "chosen_reward", beta), _log_ratio(metrics, "rejected_reward", beta), beta
        )
    else:
        flags += _logp_flags(_series(metrics, "chosen_logp"), _series(metrics, "rejected_logp"))
    flags += _kl_flags(*_series(metrics, "kl"))
    flags += _overfit_flags(loss, _series(metrics, "accuracy"))
    return flags


__all__ = [
    "CHOSEN_LOGP_MAX_DROP_NATS",
    "CHOSEN_LOGRATIO_MAX_DROP_NATS",
    "CHOSEN_LOGP_MAX_DROP_RELATIVE",
    "KL_MAX",
    "MARGIN_EXPLODING",
    "METRICS_MISSING",
    "MIN_POINTS_FOR_TREND",
    "Flag",
    "training_flags",
]
