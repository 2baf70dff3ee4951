"""Judging: templates (jinja2 files in ``prompts/``), verdict parsing, position-swap reconciliation, judge health,
and the judge stage that asks a judge model about every pair in both orders."""

from evalsuite.judge._calls import (
    JudgeSummary,
    ask_judge,
    judge_label,
    plan_grade_requests,
    plan_judge_requests,
    plan_requests,
    rendered_user_prompt,
    run_grade,
    run_judge,
)
from evalsuite.judge.swap import JudgeHealth, ReconcileMode, build_matches, judge_health, match_error_reason, reconcile_swap
from evalsuite.judge.templates import JudgeTemplate, builtin_template_names, load_template, select_template
from evalsuite.judge.verdict import VERDICT_FORMATS, VerdictFormat, get_verdict_format, parse_verdict, verdict_from_probs

__all__ = [
    "VERDICT_FORMATS",
    "JudgeHealth",
    "JudgeSummary",
    "ask_judge",
    "judge_label",
    "plan_grade_requests",
    "plan_judge_requests",
    "plan_requests",
    "rendered_user_prompt",
    "run_grade",
    "run_judge",
    "JudgeTemplate",
    "ReconcileMode",
    "VerdictFormat",
    "build_matches",
    "builtin_template_names",
    "get_verdict_format",
    "judge_health",
    "load_template",
    "match_error_reason",
    "parse_verdict",
    "reconcile_swap",
    "select_template",
    "verdict_from_probs",
]
