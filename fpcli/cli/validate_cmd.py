"""fpcli validate."""

from __future__ import annotations

import math
import sys
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
    file_argument,
    finite,
    parse_seconds,
    path_text,
    run_options,
)
from fpcli.cli.render import (
    error_line,
    is_terminal,
    note,
    plain_table,
    print_json,
    report_bad_entries,
    stdout,
    table_layout,
    warn_line,
    written_at_once,
)
from fpcli.cli.root import EXIT_BELOW_THRESHOLD, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, app
from fpcli.errors import ParameterError, StoreError
from fpcli.executors import DEFAULT_TIMEOUT_S
from fpcli.files import printable_path

if TYPE_CHECKING:
    from rich.console import Console

    from fpcli.validate import LibraryValidation

DEFAULT_THRESHOLD = 0.95  # fpcli.validate.DEFAULT_THRESHOLD (checked by a test; not imported: start-up time)


@app.command(short_help="Check the streaming analyzer against the batch reference.")
def validate(
    ctx: typer.Context,
    library: Annotated[list[Path], typer.Option("--library", "-l", help="Folder or file to validate (repeatable).",
                                                parser=file_argument, metavar="PATH",
                                                show_default=False, readable=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    jobs: JobsOption = DEFAULT_JOBS,
    fail_under: Annotated[float | None, typer.Option(
        "--fail-under", min=0, max=1, show_default=False, callback=finite,
        help="Exit 4 when the share of valid tracks among those compared is below this (0-1), or when no "
             "track could be compared, for CI. Files that cannot be decoded or found are not in the share: "
             "they fail the run (exit 3) even when the share passes.")] = None,
    partial: Annotated[str | None, typer.Option(
        "--partial", show_default=False,
        help="Also validate streams cut after these seconds (e.g. 10,30) and show error by confidence.")] = None,
    no_store: Annotated[bool, typer.Option(
        "--no-store", help="A what-if run: do not store the verdicts (search --strategy auto relies on them).")]
    = False,
    tolerance: Annotated[list[str] | None, typer.Option(
        "--tolerance", show_default=False, callback=finite_tolerances,
        help="Override a metric's tolerance, e.g. tempo_bpm=0.05 (repeatable); makes the run a what-if: "
             "verdicts are stored only under the default criteria.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0, max=1, callback=finite,
                                             help="Minimum normalised cosine similarity (another than the default "
                                                  "makes the run a what-if, as --tolerance does).")]
    = DEFAULT_THRESHOLD,
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
    stored in its record. Files that cannot be decoded, and paths that cannot be
    read (missing, say: "not analysable"), are reported and the other tracks still
    validated; they are not in the valid share (the streaming analyzer never saw
    them) but make the exit code 3.

    Examples:

      fpcli validate --library ~/Music

      fpcli validate -l ~/Music --partial 10,30,60

      fpcli validate -l ~/Music --fail-under 0.95 --json > validation.json

    Exit codes: 0 ok (a folder without audio says so and exits 0), 3 some files could not
    be decoded or found (or their --partial streams failed), or fingerprints or verdicts
    could not be stored, 4 valid share below
    --fail-under or, with --fail-under, nothing compared (4 wins over 3), 1 fatal, 2
    usage, 130 interrupted (143, 129: stopped by SIGTERM, SIGHUP).
    """
    from fpcli.validate import parse_tolerances, validate_library

    if any(path_text(p) == "-" for p in library):
        # The analysers read "-" as stdin: it failed as "Bad file descriptor, a fault of fpcli".
        raise typer.BadParameter("validate reads files and folders, not a stream on stdin (-); a file named - is "
                                 "given as ./-", param_hint="--library")
    try:
        tolerances = parse_tolerances(tolerance or [])
    except ParameterError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--tolerance") from None
    seconds = parse_seconds(partial)
    options = run_options(jobs=jobs, timeout_s=timeout, executor=executor, scheduler=scheduler, path_map=path_map,
                          exclude=exclude)
    from fpcli.cli.tracks import Reporter, stopped_said  # rich: only when a command runs (start-up time)

    # A verdict under other criteria stored over the default one steered every later
    # `search --strategy auto` (a one-off --tolerance experiment made every track invalid).
    what_if = bool(tolerance) or threshold != DEFAULT_THRESHOLD
    store_verdicts = not (no_store or what_if)
    reporter = Reporter(as_json=False, quiet=quiet, show_tracks=False)
    report: LibraryValidation | None = None
    try:
        with ctx.obj.open_store() as store, stopped_said(reporter, quiet=quiet), reporter:
            report = validate_library([path_text(p) for p in library], store, options, tolerances=tolerances,
                                      threshold=threshold, partial_seconds=seconds, store_verdicts=store_verdicts,
                                      on_event=reporter.event)
    except StoreError:
        if report is None or report.stopped_by is None:
            raise
        # Closing the store that stopped the run failed as the run did: the report stands.
    if as_json:
        print_json(report.to_json())
    elif report.tracks:
        with written_at_once():   # | head -1 exits 0, not 141 by chance
            render_validation(report, worst)
    report_bad_entries(store)   # each was analysed again and its record replaced: said, as every command says it
    if not report.tracks and fail_under is None and not report.interrupted and report.stopped_by is None:
        warn_line(_nothing_found(library))  # rather than a table of dashes; --fail-under says it in its error
    unstored = [t.verdict_not_stored for t in report.tracks if t.verdict_not_stored]
    if unstored:   # with the store gone, not advice to store nothing: the error below says what failed
        warn_line(f"{len(unstored)} verdict{'s' if len(unstored) != 1 else ''} not stored ({unstored[0]})"
                  + ("" if report.stopped_by else "; --no-store validates without storing"))
    if what_if and not no_store and not quiet and report.tracks:
        note("", "verdicts not stored: --tolerance or --threshold makes a what-if run (the stored verdicts, which "
                 "search --strategy auto reads, are the default criteria's)")
    if report.stopped_by is not None:   # the report above, then the error that ended the run (exit 1)
        if not quiet:
            note("[red]stopped:[/red]", f"the report covers the {len(report.tracks)} tracks done before the error "
                                        "below; once it is fixed, run again to complete it")
        raise report.stopped_by
    raise typer.Exit(exit_code(report, fail_under, verdicts_kept=store_verdicts))


def _verdicts_kept(report: LibraryValidation, meant: bool) -> str:
    """What became of the verdicts of an interrupted run (it said "verdicts are stored"
    under --no-store, and when the store had refused them)."""
    if not meant:
        return "verdicts are not stored (--no-store)"
    lost = report.summary()["verdicts_not_stored"]
    if lost:
        return f"verdicts are stored but {lost} the store refused"
    return "verdicts are stored"


def finite_tolerances(values: list[str] | None) -> list[str] | None:
    """Callback of --tolerance: a limit must be a finite number >= 0. Infinity passed
    the core's ">= 0" and then could not be written as JSON; NaN was refused as
    "must be >= 0", which misleads. The rest (a known metric, a number at all, >= 0)
    is the core's parser's."""
    for item in values or []:
        _, _, text = item.partition("=")
        try:
            limit = float(text)
        except ValueError:
            continue
        if not math.isfinite(limit):
            raise typer.BadParameter(f"{item!r}: {text!r} is not a finite number (give a number >= 0)")
    return values


def _nothing_found(library: list[Path]) -> str:
    return "no audio file found under " + ", ".join(path_text(p) for p in library)


def exit_code(report: LibraryValidation, fail_under: float | None, *, verdicts_kept: bool = True) -> int:
    """The exit code of a finished run, with an error line for a failed --fail-under.
    ``verdicts_kept``: the run was to store its verdicts (no --no-store).

    The gate wins over failed files (4 over 3): it is what a CI job asked about, and
    the summary line already counts the failures.
    """
    if report.interrupted:
        # The tables printed cover the tracks compared before it: a log of stdout alone
        # read as a complete run (5 valid of 26 looked like a 100 % pass).
        compared = len(report.compared)   # not the failed ones (28 "compared" of 24)
        covered = (f"the report covers the {compared} track{'s' if compared != 1 else ''} compared; the --partial "
                   "streams were stopped, and their table is left out" if report.partial_interrupted else
                   f"the report covers {len(report.tracks)} tracks, those done before the interrupt")
        note("[yellow]interrupted:[/yellow]", f"{covered}; {_verdicts_kept(report, verdicts_kept)}, run again "
                                              "to complete it")
        return EXIT_INTERRUPTED
    share = report.valid_share
    if fail_under is not None and share is None:  # no evidence is not a pass
        error_line(f"no track could be validated ({_failures(report)}): --fail-under {fail_under} is not met")
        return EXIT_BELOW_THRESHOLD
    if fail_under is not None and share is not None and share < fail_under:
        error_line(f"valid share {share:.3f} is below --fail-under {fail_under}")
        return EXIT_BELOW_THRESHOLD
    # A --partial stream that failed left its track out of the confidence table: a
    # run with an error line in it exited 0.
    verdicts_lost = report.summary()["verdicts_not_stored"]   # done, but not kept: a script must see it
    return EXIT_SOME_FAILED if report.failed or report.partial_failed or verdicts_lost else EXIT_OK


def _failures(report: LibraryValidation) -> str:
    """Why nothing was compared: no audio file at all, or the counts of the failed tracks."""
    summary = report.summary()
    if not summary["tracks"]:
        return "no audio file found"
    return (f"failed to decode {summary['failed_to_decode']}, not analysable {summary['not_analysable']}"
            + _not_stored(summary) + _timed_out(summary) + _not_comparable(summary))


def _not_stored(summary: dict[str, Any]) -> str:
    """", not stored N" when tracks were analysed but their fingerprints or verdicts
    could not be stored (a user who may only read, a record evicted meanwhile)."""
    return f", not stored {summary['not_stored']}" if summary["not_stored"] else ""


def _timed_out(summary: dict[str, Any]) -> str:
    """", timed out N" when the run's time limit stopped any track (not the file's fault:
    a longer --timeout tries it again)."""
    return f", timed out {summary['timed_out']} (a longer --timeout tries again)" if summary["timed_out"] else ""


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _similarity(value: float | None) -> str:
    """A similarity to 4 decimals, cut, not rounded: 0.9999998 under --threshold 1 was
    shown as "invalid  similarity 1.0000", a verdict its own number contradicted."""
    return "—" if value is None else f"{math.floor(value * 1e4) / 1e4:.4f}"


def render_validation(report: LibraryValidation, worst: int) -> None:
    """The per-metric table, the counts, the worst tracks and the failed ones, and the
    partial table: tables on a terminal; in a pipe plain lines (each table its title, its
    column names and one tab-separated line per row), nothing cut or wrapped."""
    from fpcli.validate import FAILED_STATUSES  # imported by the run already

    out = stdout() if is_terminal(sys.stdout) else None
    rows = []
    for row in report.metric_table():
        rate = "—" if row["pass_rate"] is None else f"{100 * row['pass_rate']:.1f} %"
        name = row["metric"]
        if row["relations"]:
            name += " (" + ", ".join(f"{k} {v}" for k, v in sorted(row["relations"].items())) + ")"
        tolerance = f"{row['tolerance']:g}" + (f" (+{row['floor']:g})" if row.get("floor") else "")
        rows.append([(name, ""), (row["kind"], ""), (tolerance, ""), (_fmt(row["mean_error"]), ""),
                     (_fmt(row["max_error"]), ""), (rate, ""), (str(row["tracks"]), "")])
    _table("Streaming vs batch, per metric", ["metric", "error", "tol", "mean err", "max err", "pass", "n"],
           rows, out)
    _line([(summary_line(report.summary()), "")], out)
    # A table as the others are (a pipe had lines of spaces, with no title or column names).
    worst_rows = [[(track.status, ""), (_similarity(track.result.similarity), ""),
                   (", ".join(track.result.failed_metrics) or "none", ""), (printable_path(track.path), "")]
                  for track in report.worst(worst) if track.result is not None]
    if worst_rows:
        _table(f"Worst {len(worst_rows)} track(s)", ["status", "similarity", "failed metrics", "path"], worst_rows,
               out)
    for track in report.tracks:
        if track.status in FAILED_STATUSES:
            label = {"error": "error   ", "timed_out": "timed out", "not_stored": "not stored"}.get(
                track.status, "not analysable")
            _line([("  ", ""), (label, "red"), (f" {printable_path(track.path)}: {printable_path(track.error or '')}",
                                                  "")], out)
        elif track.status == "not_comparable":
            _line([(f"  not comparable {printable_path(track.path)}: no metric measured (shorter than one analysis "
                    "frame?)", "")], out)
    if report.partial:
        render_partial(report.partial, out)


# A cell or a line piece: its text and a rich style ("" for none), which only a terminal shows.
Piece = tuple[str, str]


def _line(pieces: list[Piece], out: Console | None) -> None:
    """One line, never wrapped: styled on a terminal (``out``), plain in a pipe (None)."""
    if out is None:
        sys.stdout.write("".join(text for text, _ in pieces) + "\n")
        return
    from rich.text import Text

    out.print(Text.assemble(*pieces), soft_wrap=True)


def _table(title: str, columns: list[str], rows: list[list[Piece]], out: Console | None) -> None:
    """A table on a terminal; in a pipe, or on a terminal too narrow to draw it with
    every number and name whole (``table_layout``: "0.0316" folded to "0.031" over "6"
    was read as 0.031), its title, its column names and its rows as tab-separated lines
    (numbers only would not say which column is which)."""
    texts = [[text for text, _ in row] for row in rows]
    layout = None if out is None else table_layout(columns, texts, out.width)
    if out is None or layout is None:
        plain_table(title, columns, texts)
        return
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=escape(title), title_justify="left")
    for index, (name, (low, high)) in enumerate(zip(columns, layout, strict=True)):
        left = index == 0 or name in ("error", "monotone", "failed metrics", "path")
        table.add_column(name, justify="left" if left else "right", overflow="fold", min_width=low, max_width=high)
    for row in rows:
        table.add_row(*[Text(text, style=style) for text, style in row])
    out.print(table)


def summary_line(summary: dict[str, Any]) -> str:
    """The counts line. The share is of the tracks compared, and says so when some
    could not be (they are not in it, so "100.0 %" alone would overstate the run)."""
    share = "—" if summary["valid_share"] is None else f"{100 * summary['valid_share']:.1f} %"
    if summary["valid_share"] is not None and summary["compared"] != summary["tracks"]:
        share += f" of {summary['compared']} compared"
    unanalysable = f", not analysable {summary['not_analysable']}" if summary["not_analysable"] else ""
    return (f"tracks {summary['tracks']}: valid {summary['valid']} ({share}), invalid {summary['invalid']}, "
            f"failed to decode {summary['failed_to_decode']}{unanalysable}{_not_stored(summary)}{_timed_out(summary)}"
            f"{_not_comparable(summary)}; "
            "similarity median "
            f"{_similarity(summary['median_similarity'])}, worst {_similarity(summary['worst_similarity'])} "
            f"(threshold {summary['threshold']:g})")


def _not_comparable(summary: dict[str, Any]) -> str:
    """The count of tracks with nothing measured, when there are any (tracks too short
    to analyse: not in the share, not a failure, but not silently dropped either)."""
    count = summary["not_comparable"]
    return f", not comparable {count}" if count else ""


def render_partial(partial: dict[str, Any], out: Console | None) -> None:
    """Mean error by confidence bucket per metric, and whether it falls as confidence rises."""
    buckets = partial["buckets"]
    labels = [row["confidence"] for row in next(iter(buckets.values()))]
    rows = []
    for name, cells in buckets.items():
        rows.append([(name, ""), *[(_bucket_cell(r), "") for r in cells],
                     _monotone_cell(partial["monotone"][name])])
    cuts = ", ".join(f"{cut:g}" for cut in partial["seconds"])   # "10, 30", not "[10.0, 30.0]"
    _table(f"Error by streaming confidence, streams cut at {cuts} s ({partial['tracks']} tracks): "
           "mean error (samples); null: samples with no error to measure (a null on either side), with their "
           "pass rate", ["metric", *labels, "monotone"], rows, out)
    for failure in partial.get("failed", ()):   # a report of an older fpcli has none
        _line([("  ", ""), ("error   ", "red"), (f" {printable_path(failure['path'])}: streaming its first seconds "
                                                  f"failed: {printable_path(failure['error'])}", "")], out)


def _monotone_cell(monotone: bool | None) -> Piece:
    return ("—", "") if monotone is None else ("yes", "") if monotone else ("no", "red")


def _bucket_cell(row: dict[str, Any]) -> str:
    """A bucket's mean error and sample count; samples with no error measured (a null
    on either side: passed when both are null, failed when one is) are counted with
    their pass rate, not shown as an empty dash (``--json`` has the same figures)."""
    if row["mean_error"] is not None:
        return f"{row['mean_error']:.3g} ({row['samples']})"
    return f"null ({row['samples']}, {100 * row['pass_rate']:.0f} % pass)" if row["samples"] else "—"
