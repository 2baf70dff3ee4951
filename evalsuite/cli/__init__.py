"""The ``evalsuite`` command line: wiring only. Commands live in small modules and import heavy code lazily, so
``evalsuite --help``, ``report`` and ``gate`` start fast. An ``InputError`` anywhere, a usage error, or an optional
package that is not installed becomes one line on stderr and exit code 2; whatever was already computed stays in the
run store."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from evalsuite import __version__
from evalsuite.errors import InputError, missing_extra

# command name -> "module:attribute"; imported only when the command runs (or --help lists it).
_COMMANDS: dict[str, str] = {
    "compare": "evalsuite.cli._run:compare_cmd",
    "generate": "evalsuite.cli._run:generate_cmd",
    "judge": "evalsuite.cli._run:judge_cmd",
    "grade": "evalsuite.cli._run:grade_cmd",
    "report": "evalsuite.cli._report:report_cmd",
    "gate": "evalsuite.cli._report:gate_cmd",
    "agreement": "evalsuite.cli._report:agreement_cmd",
    "calibrate": "evalsuite.cli._calibrate:calibrate_cmd",
    "export": "evalsuite.cli._interop:export_cmd",
    "import-answers": "evalsuite.cli._interop:import_answers_cmd",
    "import-judgments": "evalsuite.cli._interop:import_judgments_cmd",
    "demo": "evalsuite.cli._demo:demo_cmd",
    "train": "evalsuite.cli._train:train_cmd",
    "view": "evalsuite.cli._view:view_cmd",
    "data": "evalsuite.cli._data:data_group",
    "label": "evalsuite.cli._loop:label_cmd",
    "iterate": "evalsuite.cli._loop:iterate_cmd",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evalsuite")
def cli() -> None:
    """LLM-as-judge evaluation for post-training: did DPO/SimPO/IPO/KTO beat SFT, and is it real?

    \b
      evalsuite compare sft dpo simpo          # generate, judge both orders, leaderboard
      evalsuite gate --baseline sft --candidate dpo --min-win-rate 0.5
      evalsuite report --format md > LEADERBOARD.md
      evalsuite demo                           # the whole pipeline on tiny local models, CPU only

    Exit codes: 0 success, 1 gate failed, 2 usage or input error.
    """


def usage_error_line(exc: click.ClickException) -> str:
    """A click usage error (a missing option, a bad value, an unknown verb) in evalsuite's one-line format."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "evalsuite"
    return f"{exc.format_message()} — fix: see '{command} --help'"


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI. Exit codes: 0 success, 1 gate failed, 2 usage or input error (one line on stderr), 130 interrupted."""
    try:
        return cli.main(args=argv, prog_name="evalsuite", standalone_mode=False)
    except InputError as exc:
        click.echo(f"evalsuite: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("evalsuite: interrupted; finished work is saved — re-run the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"evalsuite: error: {usage_error_line(exc)}", err=True)
        sys.exit(2)
    except ImportError as exc:
        missing = missing_extra(exc)  # an optional package (torch, vllm, ...) that the core install leaves out
        if missing is None:
            raise
        click.echo(f"evalsuite: error: {missing}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("evalsuite: interrupted; finished work is saved — re-run the same command to resume", err=True)
        sys.exit(130)
