"""Rendering analysed tracks: a table per track, a line per track, JSON Lines, and the
live reporter of library runs (results on stdout, progress and notices on stderr)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fpcli.cli.render import format_value, is_terminal, note, print_json_line, same_terminal, shown, stderr, stdout
from fpcli.errors import FpcliError
from fpcli.fingerprint import DIM_BY_NAME, DIMS, Fingerprint
from fpcli.results import TIMEOUT_ERROR_TYPE, TrackResult

if TYPE_CHECKING:
    from rich.progress import TaskID

    from fpcli.library import RunSummary
from fpcli.files import printable_path

MAX_FULL_TABLES = 3  # runs with more tracks print one line per track


class Reporter:
    """Renders run events: results to stdout (tables, lines or JSON Lines), a progress
    bar and notices to stderr. The bar shows only when stderr is a terminal, and never
    captures stdout (``redirect_stdout=False``): ``fpcli analyze --json dir > out``
    gets every line even with the bar on screen."""

    def __init__(self, *, as_json: bool, quiet: bool, show_tracks: bool = True) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.show_tracks = show_tracks
        self.total = 0
        self.stopped: RunSummary | None = None   # the run's summary when an error ended it
        self._stderr = stderr()
        # rich.progress is imported here: `fpcli cache stats` and `--help` do not pay for it
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self._stderr, transient=True, redirect_stdout=False,
            redirect_stderr=False, disable=quiet or not self._stderr.is_terminal,
        )
        self._task: TaskID | None = None  # rich.progress.TaskID

    def __enter__(self) -> Reporter:
        self._progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._progress.__exit__(kind, value, traceback)

    def event(self, kind: str, payload: Any) -> None:
        if kind == "start":
            self.total, description = payload
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=self.total)
            return
        if kind == "stopped":   # an error ends the run: its summary so far, said after the bar
            self.stopped = payload
            return
        if kind == "track":
            self._track(payload)
        if self._task is not None:
            self._progress.advance(self._task, payload if kind == "advance" and isinstance(payload, int) else 1)

    def notice(self, message: str) -> None:
        """A plain notice on stderr (above the bar when it is drawn); none with quiet."""
        if not self.quiet:
            note("", message, self._diagnostics())

    def index_progress(self) -> Callable[[str, int, int | None], None]:
        """Progress of a search index built from every record (``search.saved.IndexProgress``):
        a notice when it starts, even when stderr is not a terminal (minutes at a
        million records are never silent), then the bar: rows read of the store's records."""
        read = [0]

        def on_rows(kind: str, rows: int, total: int | None) -> None:
            if rows == 0:
                read[0] = 0
                self.notice(f"building the {kind} search index from every record"
                            + (f" ({total:,} in the store)" if total else "") + ": none is saved and current")
                self.event("start", (total, f"{kind} index"))
            else:
                self.event("advance", rows - read[0])
                read[0] = rows
        return on_rows

    def snapshot(self, result: TrackResult) -> None:
        """One snapshot of a followed stream: a JSON line, or one line of the rising
        fingerprint (seconds heard, tempo and confidence). Snapshots are results of a
        live run: printed even with quiet, which leaves results and errors only."""
        if self.as_json:
            print_json_line(result.to_json(), self._results())
        else:
            render_track_line(result, self._results())

    def final(self, result: TrackResult) -> None:
        """The last result of a followed stream, as ``analyze`` shows one track."""
        self.total = 1
        self._track(result)

    def _diagnostics(self) -> Console:
        return self._progress.console if self._progress.live.is_started else self._stderr

    def _results(self) -> Console | None:
        """Results go to stdout (None: the plain stdout); only when stdout is the
        terminal the live bar is drawn on are they printed through the bar's console,
        above it (two consoles writing to one screen would tear the bar). On another
        terminal than stderr's they stay on stdout (they went to stderr's)."""
        if self._progress.live.is_started and same_terminal(sys.stdout, sys.stderr):
            return self._progress.console
        return None

    def _track(self, result: TrackResult) -> None:
        if self.as_json and self.show_tracks:
            print_json_line(result.to_json(), self._results())
        elif result.failed:
            if self.show_tracks or not self.quiet:  # validate lists them in its report too
                note("[red]error:[/red]", f"{result.path}: {result.error}" + _skipped(result), self._diagnostics())
        elif self.show_tracks:  # results are data: printed even with --quiet
            if self.total <= MAX_FULL_TABLES:
                render_track(result, self._results())
            else:
                render_track_line(result, self._results())


def _skipped(result: TrackResult) -> str:
    """What a failure the store answered means: a file skipped until it changes, or a
    timeout skipped until a run allows more time."""
    if not result.cached:
        return ""
    # Named with its command: validate shares these lines and has no --retry-failed.
    if result.error_type == TIMEOUT_ERROR_TYPE:
        return " (timed out before under this --timeout or a longer one: skipped; a longer --timeout or " \
               "fpcli analyze --retry-failed retries)"
    return " (failed before and unchanged: skipped; fpcli analyze --retry-failed retries)"


def failed_result(path: str, exc: Exception) -> TrackResult:
    """A failed result for an input that could not be opened (its reason, not the path)."""
    reason = getattr(exc, "reason", None) or str(exc)
    return TrackResult(path=path, status="error", error=reason, error_type=type(exc).__name__)


@contextlib.contextmanager
def stopped_said(reporter: Reporter, *, quiet: bool) -> Iterator[None]:
    """Around a run and its ``reporter`` (entered before it, so that the bar is gone
    first): an error that ended the run after its "stopped" event goes on its way
    after that summary, what the run did before it. Redis gone mid-run printed the
    error alone, and the user could not tell how much of the library was done."""
    try:
        yield
    except FpcliError:
        if reporter.stopped is not None and not quiet:
            render_summary(reporter.stopped, stopped=True)
        raise


def render_summary(summary: RunSummary, *, stopped: bool = False) -> None:
    """The run's one summary line; ``stopped``: an error (said after it) ended the run."""
    line = (f"analysed {summary.analysed}, from cache {summary.cached}, failed {summary.failed}"
            f"{f' ({summary.skipped} failed before, skipped)' if summary.skipped else ''}"
            f"{f', not analysable {summary.problems}' if summary.problems else ''} in {summary.wall_seconds:.1f} s")
    if summary.analysed:
        line += f" ({summary.audio_per_second:.0f} s of audio per second analysed)"
    if summary.skipped_new:
        # Not "never analysed": a file changed since its preview has none to finish either.
        line += (f"; {summary.skipped_new} without a preview to finish (new, or changed since), left for a full "
                 "run (--upgrade finishes previews only)")
    if summary.ignored:
        line += f"; {summary.ignored}"
    if stopped:
        note("[red]stopped:[/red]", "the tracks reported before the error below are stored; once it is fixed, "
                                    "run again to resume. " + line)
    elif summary.interrupted:
        note("[yellow]interrupted:[/yellow]", "finished tracks are stored; run again to resume. " + line)
    else:
        note("", line)


def render_track_line(result: TrackResult, out: Console | None = None) -> None:
    """One line per track: origin, duration, tempo, path, and what is partial about it;
    on ``out`` or else stdout."""
    assert result.streaming is not None
    tempo = format_value(result.streaming.values["tempo_bpm"], "BPM")
    origin = "cached" if result.cached else "new"
    parts = [(f"{origin:6} {result.duration_s or 0:7.1f} s {tempo:>6} BPM  {printable_path(result.path)}", "")]
    if result.status != "ok":
        parts.append((f" {result.status}", "yellow"))
    if not result.streaming.complete:
        confidence = result.streaming.confidence or {}
        mean = sum(confidence.values()) / len(confidence) if confidence else 0.0
        # To a tenth of a second, as the duration beside it: whole seconds said "heard 0 s" at 0.3 s.
        parts.append((f" heard {result.streaming.seconds:.1f} s, confidence {mean:.2f}", "yellow"))
    if out is None and not is_terminal(sys.stdout):  # plain text, as rich would write it, at a tenth of the cost
        sys.stdout.write("".join(text for text, _ in parts) + "\n")
        return
    (out or stdout()).print(Text.assemble(*parts), soft_wrap=True)


def render_track(result: TrackResult, out: Console | None = None, footer: Sequence[str] = ()) -> None:
    """A table of one track's dims: streaming value and confidence, batch value, unit;
    then the plain lines of ``footer``."""
    out = out or stdout()
    streaming, reference = result.streaming, result.batch
    assert streaming is not None
    heading = track_heading(result)
    rows = _track_rows(streaming, reference)
    nulls = [f"{kind} {name} ({DIM_BY_NAME[name].unit}) is null: " for kind, fp in
             (("streaming", streaming), ("batch", reference)) for name in (fp.reasons if fp else ())]
    reasons = [reason for fp in (streaming, reference) for reason in (fp.reasons.values() if fp else ())]
    if not out.is_terminal:
        # A pipe: the heading, one plain tab-separated line per dim (rich expanded each tab
        # to spaces) and the null reasons, in one write: a reader that stops after a line
        # (| head -1) has them all before it leaves, and the exit is 0, not 141 by chance
        # (13 writes under an unbuffered stdout).
        lines = [printable_path(text) for text, _ in heading] + ["\t".join(row) for row in rows] + \
            [f"  {null}{printable_path(reason)}" for null, reason in zip(nulls, reasons, strict=True)] + \
            [printable_path(line) for line in footer]
        out.file.write("".join(line + "\n" for line in lines))
        out.file.flush()
        return
    title = "\n".join(f"[{style}]{shown(text)}[/{style}]" if style else shown(text) for text, style in heading)
    _track_table(title, rows, reference is not None, out)
    for null, reason in zip(nulls, reasons, strict=True):
        out.print(f"  [dim]{null}{shown(reason)}[/dim]", soft_wrap=True)  # one line however long
    for line in footer:
        out.print(shown(line), soft_wrap=True)


def track_heading(result: TrackResult) -> list[tuple[str, str]]:
    """(plain text, style) of each line above a track's dims: the path and the file's
    facts, then what is partial about the result (damage, a preview). One builder for
    the terminal's table title and a pipe's plain lines: a script reading the pipe
    must not take a damaged file or a preview for a whole-track result."""
    assert result.streaming is not None
    facts = (f"{result.duration_s or 0:.1f} s, {result.samplerate} Hz, {result.channels} ch, "
             f"{result.format}/{result.subtype}{', from the store' if result.cached else ''}")
    lines = [(f"{result.path}  ({facts})", "")]
    if result.status == "partial":
        lines.append((f"partial: {result.partial_reason}", "yellow"))
    if not result.streaming.complete:
        lines.append((f"preview: the first {result.streaming.seconds:.1f} s only", "yellow"))
    return lines


def _track_rows(streaming: Fingerprint, reference: Fingerprint | None) -> list[list[str]]:
    """group, dimension, streaming value, confidence, (batch value,) unit per dim."""
    rows = []
    for dim in DIMS:
        if not dim.streaming and reference is None:
            continue
        row = [dim.group, dim.name]
        if dim.streaming:
            confidence = (streaming.confidence or {}).get(dim.name, 0.0)
            row += [format_value(streaming.values[dim.name], dim.unit), f"{confidence:.2f}"]
        else:
            row += ["", ""]
        if reference is not None:
            row.append(format_value(reference.values[dim.name], dim.unit))
        row.append(dim.unit)
        rows.append(row)
    return rows


def _track_table(title: str, rows: list[list[str]], with_batch: bool, out: Console) -> None:
    table = Table(title=title, title_justify="left")
    for name, justify in (("group", "left"), ("dimension", "left"), ("streaming", "right"), ("conf", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if with_batch:
        table.add_column("batch", justify="right")
    table.add_column("unit")
    for row in rows:
        table.add_row(*row)
    out.print(table)
