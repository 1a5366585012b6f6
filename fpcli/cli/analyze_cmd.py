"""fpcli analyze."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fpcli.cli.app import EXIT_INTERRUPTED, EXIT_SOME_FAILED, app
from fpcli.cli.options import (
    DEFAULT_JOBS,
    ExecutorOption,
    JobsOption,
    PathMapOption,
    QuietOption,
    SchedulerOption,
    TimeoutOption,
    path_text,
    run_options,
)
from fpcli.cli.tracks import Reporter, render_summary
from fpcli.executors import DEFAULT_TIMEOUT_S


@app.command()
def analyze(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively).",
                                                show_default=False)],
    batch: Annotated[bool, typer.Option("--batch", help="Also compute (and cache) the 25D batch reference.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per track per line (JSON Lines).")] = False,
    jobs: JobsOption = DEFAULT_JOBS,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if the store has the track.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                               help="Retry files that failed before and have not changed.")] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    quiet: QuietOption = False,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
    path_map: PathMapOption = None,
) -> None:
    """Fingerprint files or whole libraries; unchanged tracks come from the store.

    Each new or changed file is decoded once and streamed through the 13D analyzer
    (and the 25D batch reference with --batch); results are stored as they finish,
    so an interrupted run resumes where it stopped. Files that failed are recorded
    and skipped until they change (or --retry-failed); they still count as failed.

    Examples:

      fpcli analyze track.flac

      fpcli analyze ~/Music --jobs 2

      fpcli analyze --batch --json a.flac b.mp3 | jq .streaming.tempo_bpm.value

      fpcli --store redis://cache:6379/0 analyze /music --executor dask --scheduler tcp://sched:8786

    Exit codes: 0 all ok, 3 some files failed, 1 fatal error, 2 usage error, 130 interrupted.
    """
    from fpcli.library import run_library

    options = run_options(batch=batch, force=force, retry_failed=retry_failed, jobs=jobs, timeout_s=timeout,
                          executor=executor, scheduler=scheduler, path_map=path_map)
    with ctx.obj.open_store() as store, Reporter(as_json=as_json, quiet=quiet) as reporter:
        summary = run_library([path_text(p) for p in paths], store, options, on_event=reporter.event)
    if not quiet:
        render_summary(summary)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed or summary.problems:
        raise typer.Exit(EXIT_SOME_FAILED)
