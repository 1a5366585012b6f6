"""fpcli validate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fpcli.cli.options import (
    DEFAULT_JOBS,
    ExcludeOption,
    ExecutorOption,
    JobsOption,
    PathMapOption,
    QuietOption,
    SchedulerOption,
    TimeoutOption,
    finite,
    parse_seconds,
    path_text,
    run_options,
)
from fpcli.cli.render import error_line, print_json, shown, stdout
from fpcli.cli.root import EXIT_BELOW_THRESHOLD, EXIT_INTERRUPTED, app
from fpcli.errors import ParameterError
from fpcli.executors import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from fpcli.validate import LibraryValidation

DEFAULT_THRESHOLD = 0.95  # fpcli.validate.DEFAULT_THRESHOLD (checked by a test; not imported: start-up time)


@app.command()
def validate(
    ctx: typer.Context,
    library: Annotated[list[Path], typer.Option("--library", "-l", help="Folder or file to validate (repeatable).",
                                                show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    jobs: JobsOption = DEFAULT_JOBS,
    fail_under: Annotated[float | None, typer.Option(
        "--fail-under", min=0, max=1, show_default=False, callback=finite,
        help="Exit 4 when the share of valid tracks is below this (0-1), for CI.")] = None,
    partial: Annotated[str | None, typer.Option(
        "--partial", show_default=False,
        help="Also validate streams cut after these seconds (e.g. 10,30) and show error by confidence.")] = None,
    no_store: Annotated[bool, typer.Option(
        "--no-store", help="A what-if run: do not store the verdicts (search --strategy auto relies on them).")]
    = False,
    tolerance: Annotated[list[str] | None, typer.Option(
        "--tolerance", show_default=False, help="Override a metric's tolerance, e.g. tempo_bpm=0.05 (repeatable).")]
    = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0, max=1, callback=finite,
                                             help="Minimum normalised cosine similarity.")] = DEFAULT_THRESHOLD,
    worst: Annotated[int, typer.Option("--worst", min=0, help="How many of the worst tracks to list.")] = 5,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    quiet: QuietOption = False,
    exclude: ExcludeOption = None,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
    path_map: PathMapOption = None,
) -> None:
    """Check the streaming analyzer against the batch reference, per metric and per track.

    Fingerprints come from the store; missing ones are computed (and stored) in
    parallel. Each track's result (valid/invalid, similarity, per-metric errors) is
    stored in its record. Files that cannot be decoded are reported, not fatal.

    Examples:

      fpcli validate --library ~/Music

      fpcli validate -l ~/Music --partial 10,30,60

      fpcli validate -l ~/Music --fail-under 0.95 --json > validation.json

    Exit codes: 0 ok, 4 valid share below --fail-under, 1 fatal, 2 usage, 130 interrupted.
    """
    from fpcli.validate import parse_tolerances, validate_library

    try:
        tolerances = parse_tolerances(tolerance or [])
    except ParameterError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--tolerance") from None
    seconds = parse_seconds(partial)
    options = run_options(jobs=jobs, timeout_s=timeout, executor=executor, scheduler=scheduler, path_map=path_map,
                          exclude=exclude)
    from fpcli.cli.tracks import Reporter  # rich: only when a command runs (start-up time)

    with ctx.obj.open_store() as store, Reporter(as_json=False, quiet=quiet, show_tracks=False) as reporter:
        report = validate_library([path_text(p) for p in library], store, options, tolerances=tolerances,
                                  threshold=threshold, partial_seconds=seconds, store_verdicts=not no_store,
                                  on_event=reporter.event)
    if as_json:
        print_json(report.to_json())
    else:
        render_validation(report, worst)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    share = report.valid_share
    if fail_under is not None and (share is None or share < fail_under):
        error_line(f"valid share {share if share is None else f'{share:.3f}'} is below --fail-under {fail_under}")
        raise typer.Exit(EXIT_BELOW_THRESHOLD)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_validation(report: LibraryValidation, worst: int) -> None:
    out = stdout()
    from rich.table import Table

    table = Table(title="Streaming vs batch, per metric", title_justify="left")
    for name in ("metric", "error", "tol", "mean err", "max err", "pass", "n"):
        table.add_column(name, justify="left" if name in ("metric", "error") else "right", no_wrap=name == "metric")
    for row in report.metric_table():
        rate = "—" if row["pass_rate"] is None else f"{100 * row['pass_rate']:.1f} %"
        name = row["metric"]
        if row["relations"]:
            name += " (" + ", ".join(f"{k} {v}" for k, v in sorted(row["relations"].items())) + ")"
        tolerance = f"{row['tolerance']:g}" + (f" (+{row['floor']:g})" if row.get("floor") else "")
        table.add_row(name, row["kind"], tolerance, _fmt(row["mean_error"]), _fmt(row["max_error"]),
                      rate, str(row["tracks"]))
    out.print(table)
    summary = report.summary()
    share = "—" if summary["valid_share"] is None else f"{100 * summary['valid_share']:.1f} %"
    out.print(f"tracks {summary['tracks']}: valid {summary['valid']} ({share}), invalid {summary['invalid']}, "
              f"failed to decode {summary['failed_to_decode']}; similarity median {_fmt(summary['median_similarity'])}"
              f", worst {_fmt(summary['worst_similarity'])} (threshold {summary['threshold']:g})")
    for track in report.worst(worst):
        if track.result is None:
            continue
        failed = ", ".join(track.result.failed_metrics) or "none"
        out.print(f"  {track.status:8} similarity {_fmt(track.result.similarity)}  failed: {failed}  "
                  f"{shown(track.path)}", soft_wrap=True)
    for track in report.tracks:
        if track.status == "error":
            out.print(f"  [red]error[/red]    {shown(track.path)}: {shown(track.error)}", soft_wrap=True)
    if report.partial:
        render_partial(report.partial)


def render_partial(partial: dict[str, Any]) -> None:
    buckets = partial["buckets"]
    labels = [row["confidence"] for row in next(iter(buckets.values()))]
    from rich.table import Table

    table = Table(title=f"Error by streaming confidence, streams cut at {partial['seconds']} s "
                        f"({partial['tracks']} tracks): mean error (samples)", title_justify="left")
    table.add_column("metric", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("monotone")
    for name, rows in buckets.items():
        cells = ["—" if r["mean_error"] is None else f"{r['mean_error']:.3g} ({r['samples']})" for r in rows]
        table.add_row(name, *cells, "yes" if partial["monotone"][name] else "[red]no[/red]")
    stdout().print(table)
