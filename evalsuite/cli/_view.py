"""``view``: write the run's self-contained HTML viewer (leaderboard + every judgment); never calls a model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("view")
@click.option("--run-dir", default="runs/default", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the page (default: RUN_DIR/viewer.html).")
@click.option("--max-matches", type=click.IntRange(min=0), default=None,
              help="The most matches the page embeds, inconsistent, losses and errors first (0: all). Default: "
                   "20,000, every match of a normal run.")
def view_cmd(run_dir: str, out: str | None, max_matches: int | None = None) -> None:
    """Write one HTML file (no server, no network) with the leaderboard and every match: both answers, both orders'
    judge outputs, the reconciled result; filters and a stable link per match."""
    from evalsuite.cli._report import load_results
    from evalsuite.report.html import write_viewer

    from evalsuite.report.html import MAX_VIEWER_MATCHES

    path = write_viewer(Path(run_dir), load_results(run_dir), Path(out) if out else None,
                        max_matches=MAX_VIEWER_MATCHES if max_matches is None else max_matches)
    click.echo(f"wrote {path}", err=True)
