"""The workflows, each one composition of the same stages: load the questions -> open the run store -> generate
what is missing -> judge -> compute -> write.

``_stages.py`` holds the stages and :func:`run_pipeline`, the one place they are strung together; each workflow
module is its judge-and-compute step and what it writes:

- :mod:`~evalsuite.pipeline.compare`: every pair in both orders -> ``results.json``, ``leaderboard.md``, viewer;
- :mod:`~evalsuite.pipeline.sequential`: the same in waves, each candidate stopped once its gate decision settles;
- :mod:`~evalsuite.pipeline.grade`: single-answer 1-10 grades -> ``grades.json``;
- :mod:`~evalsuite.pipeline.label`: K samples per prompt, judged on a schedule -> a TRL preference file;
- :mod:`~evalsuite.pipeline.iterate`: label -> train -> compare, round after round;
- :mod:`~evalsuite.pipeline.calibrate`: a run's verdicts corrected by human votes (reads a run, asks no model).

The workflow modules are imported by name (``from evalsuite.pipeline.compare import run_compare``), so importing
one does not load the others.
"""

from evalsuite.backends.roles import StageBackends
from evalsuite.pipeline._stages import (
    LEADERBOARD_FILE,
    RESULTS_FILE,
    PipelineOutput,
    PipelineRun,
    ProgressFactory,
    compute_results,
    load_questions,
    run_pipeline,
    write_outputs,
)

__all__ = [
    "LEADERBOARD_FILE",
    "RESULTS_FILE",
    "PipelineOutput",
    "PipelineRun",
    "ProgressFactory",
    "StageBackends",
    "compute_results",
    "load_questions",
    "run_pipeline",
    "write_outputs",
]
