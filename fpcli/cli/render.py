"""Output: data to stdout (tables on a terminal, plain lines in a pipe, JSON Lines for
``--json``), diagnostics to stderr. Every user-supplied string (a file name, a message
that quotes one) is printed as plain text, never parsed as Rich markup: a file called
``x[/bold]y.wav`` is shown as it is."""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import datetime
import errno
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from fpcli.files import printable_path

if TYPE_CHECKING:
    from rich.console import Console

    from fpcli.store import FingerprintStore

# rich is imported only where output goes to a terminal: a command whose output is piped
# (and --version, --help) does not pay its ~35 ms import.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_STYLE_TAG = re.compile(r"\[/?[a-z ]*\]")
# Variables with which rich styles output that is not a terminal (FORCE_COLOR) or
# treats it as one: then rich decides, as it always did.
_RICH_OVERRIDES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def is_terminal(stream: IO[str]) -> bool:
    """Whether rich would treat ``stream`` as a terminal (False for a pipe or a file)."""
    if any(os.environ.get(name) for name in _RICH_OVERRIDES):
        return stdout().is_terminal if stream is sys.stdout else stderr().is_terminal
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def same_terminal(first: IO[str], second: IO[str]) -> bool:
    """Whether both streams are terminals, and the same one (one screen): stdout on
    one terminal and stderr on another are two screens, and what goes to stdout must
    stay there."""
    if not (is_terminal(first) and is_terminal(second)):
        return False
    try:
        a, b = os.fstat(first.fileno()), os.fstat(second.fileno())
    except (AttributeError, ValueError, OSError):   # replaced by a stream without a descriptor (a test's)
        return True   # terminals by rich's word (FORCE_COLOR, TTY_COMPATIBLE): taken as one
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def shown(text: object) -> str:
    """A user-supplied string made safe for Rich markup and for the terminal
    (undecodable bytes as \\xNN, control characters escaped)."""
    from rich.markup import escape

    return escape(printable_path(str(text)))


def json_text(data: Any, *, indent: int | None = None) -> str:
    """JSON for stdout, always valid UTF-8. On a UTF-8 stdout, UTF-8 text; a path byte
    that is not UTF-8 (a lone surrogate) is written as its ``\\udcXX`` escape, so that
    ``os.fsencode(json.loads(...))`` gives the exact bytes back. On any other stdout
    (``PYTHONIOENCODING=ascii``, a Latin-1 locale) every non-ASCII character is escaped:
    ASCII reads the same in the encoding the stream declares and as UTF-8, so a reader
    of either kind gets the same document, and nothing needs the binary layer behind
    ``sys.stdout``, which a replaced stream may not have."""
    if not writes_utf8(sys.stdout):
        return json.dumps(data, ensure_ascii=True, indent=indent, allow_nan=False)
    text = json.dumps(data, ensure_ascii=False, indent=indent, allow_nan=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def writes_utf8(stream: IO[str] | None) -> bool:
    """Whether ``stream`` encodes its text as UTF-8 (a stream without an encoding, as
    tests' in-memory ones, takes text as it is: as good as UTF-8)."""
    encoding = getattr(stream, "encoding", None)
    return not encoding or codecs.lookup(encoding).name == "utf-8"


def print_json_line(data: Any, out: Console | None = None) -> None:
    """One JSON line, flushed: a result of a run still going (``analyze --json``)
    reaches a pipe's reader as it is made. ``out``: the console of a progress bar
    drawn on the terminal stdout is, printed through which the line goes above the
    bar (written under it, each line followed the bar's text on the same line)."""
    if out is not None:
        out.out(json_text(data), highlight=False)
        return
    sys.stdout.write(json_text(data) + "\n")
    sys.stdout.flush()


def json_lines_out(items: Iterable[Any]) -> None:
    """A whole listing as JSON Lines (``lines_out``)."""
    lines_out(json_text(item) + "\n" for item in items)


# A pipe's buffer on Linux: a listing that fits is handed over in one write.
PIPE_CHUNK = 65536


def lines_out(lines: Iterable[str]) -> None:
    """Write a listing's lines (each ending in a newline) in chunks of up to about
    PIPE_CHUNK characters. A listing that fits a pipe's buffer is one write, so a reader
    that stops early (``fpcli cache list | head -1``) has it all before it leaves, and the
    exit is 0; written a line at a time (unbuffered, as ``PYTHONUNBUFFERED`` makes
    stdout, or flushed per line) it was 0 or 141 by chance."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= PIPE_CHUNK:
            sys.stdout.write("".join(chunk))
            chunk, size = [], 0
    if chunk:
        sys.stdout.write("".join(chunk))


class _HeldOutput(io.StringIO):
    """What ``written_at_once`` holds back, with the encoding of the stream it stands
    for (``json_text`` and ``writes_utf8`` ask)."""

    def __init__(self, encoding: str | None) -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str | None:  # type: ignore[override]
        return self._encoding


@contextlib.contextmanager
def written_at_once() -> Iterator[None]:
    """Hold what is printed to stdout inside and write it when done (``lines_out``'s
    chunks) when stdout is no terminal: a report of many lines was as many writes under
    an unbuffered stdout, and a reader that stops after one (``| head -1``) made the exit
    141 by chance. On a terminal, as it comes."""
    if is_terminal(sys.stdout):
        yield
        return
    real = sys.stdout
    held = _HeldOutput(getattr(real, "encoding", None))
    sys.stdout = held
    try:
        yield
    finally:
        sys.stdout = real
        lines_out([held.getvalue()])


def print_json(data: Any) -> None:
    sys.stdout.write(json_text(data, indent=1) + "\n")


_PLAIN_NOTES_OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("fpcli_plain_notes_off", default=False)


@contextlib.contextmanager
def plain_notes_off(off: bool) -> Iterator[None]:
    """Within the block (with ``off``), ``note`` leaves out the lines without a prefix
    (summaries and notices: a command's --quiet); warnings and errors still show."""
    token = _PLAIN_NOTES_OFF.set(off)
    try:
        yield
    finally:
        _PLAIN_NOTES_OFF.reset(token)


def note(prefix_markup: str, message: str, console: Console | None = None) -> None:
    """One diagnostic line on stderr: a styled prefix (rich markup such as
    ``[red]error:[/red]``) and a plain-text message."""
    if not prefix_markup and _PLAIN_NOTES_OFF.get():
        return
    if console is None and not is_terminal(sys.stderr):
        prefix = _STYLE_TAG.sub("", prefix_markup) + " " if prefix_markup else ""
        sys.stderr.write(prefix + printable_path(message) + "\n")
        sys.stderr.flush()
        return
    from rich.text import Text

    line = Text.from_markup(prefix_markup + " ") if prefix_markup else Text()
    line.append(printable_path(message))
    (console or stderr()).print(line, soft_wrap=True)


def error_line(message: str) -> None:
    note("[red]error:[/red]", message)


def warn_line(message: str) -> None:
    note("[yellow]warning:[/yellow]", message)


BAD_ENTRIES_SHOWN = 10   # then a count: a run over a damaged store of 100,000 records is no 100,000 lines


def report_bad_entries(store: FingerprintStore) -> None:
    """One warning per bad entry met while reading (each skipped, none fatal), the first
    BAD_ENTRIES_SHOWN of them and the count of the others; each is reported once (the
    list is emptied), so a command may report as it goes and again at its end."""
    keys = list(dict.fromkeys(bad.key for bad in store.bad_entries))
    first = {bad.key: bad for bad in reversed(store.bad_entries)}
    for key in keys[:BAD_ENTRIES_SHOWN]:
        warn_line(f"skipped a bad store entry: {first[key]} (fpcli cache verify --repair removes it)")
    if len(keys) > BAD_ENTRIES_SHOWN:
        warn_line(f"skipped {len(keys) - BAD_ENTRIES_SHOWN} more bad store entries (fpcli cache verify lists them, "
                  "--repair removes them)")
    store.bad_entries.clear()


def rows_out(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
             justify: dict[str, str] | None = None) -> None:
    """A table on a terminal; in a pipe, one tab-separated plain line per row (no
    header, nothing truncated), as ``ls`` or ``git`` do. Cells are plain text.

    Nothing is cut on a terminal either (``table_layout``): a "path" column folds onto
    more lines, the others keep their cells whole or wrap between words. The widest
    alone folded a failure's message and held its path to 24 characters, split
    mid-name; rich's default had cut every path to "/tmp/sw…" at 80 columns, the one
    thing a failure or a listing is for. A terminal too narrow gets the plain lines."""
    if not is_terminal(sys.stdout):   # written as it goes: 200,000 rows are no table to measure
        lines_out("\t".join(printable_path(cell) for cell in row) + "\n" for row in rows)
        return
    shown = [[printable_path(cell) for cell in row] for row in rows]
    console = stdout()
    layout = table_layout(columns, shown, console.width)
    if layout is None:   # a terminal too narrow: plain lines, said what they are
        plain_table(title, columns, shown)
        return
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=escape(title), title_justify="left")
    for name, (low, high) in zip(columns, layout, strict=True):
        table.add_column(name, justify=(justify or {}).get(name, "left"),  # type: ignore[arg-type]
                         overflow="fold", min_width=low, max_width=high)
    for row in shown:
        table.add_row(*[Text(cell) for cell in row])
    console.print(table)


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table as plain lines: its title, its column names and one tab-separated line
    per row (rows alone would not say which column is which)."""
    for line in ([title], columns, *rows):
        sys.stdout.write("\t".join(line) + "\n")


FIXED_COLUMN_MAX = 24    # characters: text beside a folding column wraps at this width or its longest word
FOLDED_COLUMN_MIN = 12   # characters a folding column needs to be worth folding into
FOLDED_COLUMN_ROOM = 48  # characters a folding column is given before others stay unwrapped (most file paths)


def table_layout(columns: Sequence[str], rows: Sequence[Sequence[str]],
                 width: int) -> list[tuple[int | None, int]] | None:
    """Each column's (least, most) width for a table of these plain cells on a terminal
    ``width`` characters wide, or None: it cannot be drawn without cutting a name or a
    number, and plain lines are written instead.

    One column folds onto more lines: "path", else the widest column of text (cells
    with spaces: a message), at least FOLDED_COLUMN_MIN wide and at most the room the
    others leave (left to rich, it took a long path's width and the last column was cut
    at the screen's edge). The others keep their cells whole, text wrapping between
    words if it must (at FIXED_COLUMN_MAX or its longest word); a column of names or
    numbers is never split: "analysis.streami" / "ng_x", or "0.031" / "6" for 0.0316,
    read as other names and numbers."""
    from rich.cells import cell_len  # terminal cells: a CJK character takes two

    cells = [[name, *(row[i] for row in rows)] for i, name in enumerate(columns)]
    naturals = [max(cell_len(cell) for cell in column) for column in cells]
    words = [max(cell_len(word) for cell in column for word in cell.split(" ")) for column in cells]
    text = [any(" " in cell for cell in column[1:]) for column in cells]
    folding = list(columns).index("path") if "path" in columns else \
        max((i for i in range(len(columns)) if text[i]), key=lambda i: naturals[i], default=None)
    wrapped = [max(FIXED_COLUMN_MAX, w) if t else n for n, w, t in zip(naturals, words, text, strict=True)]
    tightest = [w if t else n for n, w, t in zip(naturals, words, text, strict=True)]
    first: list[tuple[int | None, int]] | None = None
    ways = (naturals, [min(n, w) for n, w in zip(naturals, wrapped, strict=True)], tightest)
    for number, fixed in enumerate(ways):
        if number == len(ways) - 1 and first is not None:
            break   # the tightest only where nothing else fits
        needed = _table_width(fixed, folding)
        if needed <= width:
            room = width - needed + (0 if folding is None else min(FOLDED_COLUMN_MIN, fixed[folding]))
            layout: list[tuple[int | None, int]] = [(None, room) if i == folding else (fixed[i], fixed[i])
                                                    for i in range(len(fixed))]
            # Each next way wraps the others more and leaves the folding column more
            # room: of the first two, the first that gives it FOLDED_COLUMN_ROOM (or all
            # it needs), else the first that fits; the tightest only where neither fits.
            # The first that fit kept a message unwrapped and folded the paths into
            # 12-32 characters at 130-175 columns, where wrapping the message held them
            # whole; asking for the whole path folded long paths into 16 characters all
            # the same, and taking the tightest for room wrapped messages at their
            # longest word (11-line rows at 95-114 columns).
            if folding is None or room >= min(naturals[folding], FOLDED_COLUMN_ROOM):
                return layout
            first = first or layout
    return first


def _table_width(fixed: list[int], folding: int | None) -> int:
    """Characters a table of columns this wide needs (the folding one at its least),
    with rich's borders and padding (3 a column, and 1)."""
    if not fixed:
        return 0
    folded = 0 if folding is None else min(FOLDED_COLUMN_MIN, fixed[folding]) - fixed[folding]
    return sum(fixed) + folded + 3 * len(fixed) + 1


def format_value(value: float | None, unit: str) -> str:
    """One number formatter for every table: Hz and BPM to 0.1, loudness to 0.01,
    the rest to 0.001; a missing value is a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit in ("Hz", "BPM"):
        return f"{value:.1f}"
    if unit in ("LUFS", "LU", "dB"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def number(value: float | None, *, grouped: bool = True) -> str:
    """A figure for bench tables: 3 significant digits, whole above 1000, its
    thousands separated when ``grouped`` (for people; tab-separated lines in a pipe
    are for programs, which read "2,038" as two fields or as 2)."""
    if value is None:
        return "—"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}" if grouped else f"{value:.0f}"


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# -- the standard streams ------------------------------------------------------------------------

class OutputError(Exception):
    """stdout cannot take the command's output: closed when fpcli started (``>&-``), a
    full disk, an I/O error. A fatal error. Not an OSError: click would take that for
    its own and exit 1 without a word."""


class ReaderGone(Exception):
    """The reader of stdout left (a broken pipe: ``fpcli cache list | head -1``). Not a
    BrokenPipeError, which click and rich catch and turn into a silent exit 1."""


# Characters fpcli prints that an ASCII or Latin-1 stream cannot hold, as plain ASCII;
# any other is written as its backslash escape (see ``_plain_or_escaped``).
_PLAIN = {"\u2014": "-", "\u2013": "-", "\u00b7": "-", "\u2026": "...", "\u2265": ">=", "\u2264": "<="}
PLAIN_ERRORS = "fpcli-plain"  # the codecs error handler of a stream that is not UTF-8


def _plain_or_escaped(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a dash for an em-dash, a backslash escape for the rest."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    char = error.object[error.start]
    return _PLAIN.get(char) or char.encode("ascii", "backslashreplace").decode("ascii"), error.start + 1


class GuardedStream:
    """sys.stdout or sys.stderr as fpcli writes to them (``guard_standard_streams``).

    Results (stdout) that cannot be written end the run: ``ReaderGone`` when the
    reader left, ``OutputError`` otherwise, closed stdout included. Diagnostics
    (stderr) that cannot be written are dropped, so that the exit code still tells
    how the run went. Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO | None, *, results: bool) -> None:
        self._stream = stream
        self._results = results

    def write(self, text: str) -> int:
        if self._stream is None:
            if self._results:
                raise OutputError("cannot write the output: stdout is closed")
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._failed(exc)
            return len(text)

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._failed(exc)

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer, reconfigure...
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def _failed(self, exc: OSError) -> None:
        if not self._results:
            self._stream = None  # and every later diagnostic with it
            return
        if exc.errno == errno.EPIPE:
            raise ReaderGone from None
        raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None


def guard_standard_streams() -> None:
    """Make the standard streams safe to write whatever the shell gave: closed ones
    (``>&-``, ``2>&-``, ``<&-``), a reader that leaves, an encoding that is not UTF-8.

    A closed descriptor 0, 1 or 2 gets /dev/null, so that no file the run opens takes
    its number (and then someone's prints); worker processes inherit it. A closed stdin
    reads as empty. Text a stream's encoding cannot hold degrades (``PLAIN_ERRORS``)."""
    codecs.register_error(PLAIN_ERRORS, _plain_or_escaped)
    for descriptor in (0, 1, 2):
        _occupy(descriptor)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - for the process, as the interpreter's own
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not writes_utf8(stream):
            stream.reconfigure(errors=PLAIN_ERRORS)
    if not isinstance(sys.stdout, GuardedStream):
        sys.stdout = cast(TextIO, GuardedStream(sys.stdout, results=True))
    if not isinstance(sys.stderr, GuardedStream):
        sys.stderr = cast(TextIO, GuardedStream(sys.stderr, results=False))


def _occupy(descriptor: int) -> None:
    """Point a closed ``descriptor`` at /dev/null (inheritable, as the standard ones are)."""
    try:
        os.fstat(descriptor)
        return
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_RDWR)  # the lowest free number: maybe ``descriptor`` itself
    if devnull != descriptor:
        os.dup2(devnull, descriptor)
        os.close(devnull)
    os.set_inheritable(descriptor, True)
