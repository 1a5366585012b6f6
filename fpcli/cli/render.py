"""Output: data to stdout (tables on a terminal, plain lines in a pipe, JSON Lines for
``--json``), diagnostics to stderr. Every user-supplied string (a file name, a message
that quotes one) is printed as plain text, never parsed as Rich markup: a file called
``x[/bold]y.wav`` is shown as it is."""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from fpcli.files import printable_path

if TYPE_CHECKING:
    from rich.console import Console

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
    """JSON for stdout: UTF-8 text where possible; a path byte that is not UTF-8
    (a lone surrogate) is written as its ``\\udcXX`` escape, so the output is always
    valid UTF-8 and ``os.fsencode(json.loads(...))`` gives the exact bytes back."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, allow_nan=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def print_json_line(data: Any) -> None:
    sys.stdout.write(json_text(data) + "\n")
    sys.stdout.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json_text(data, indent=1) + "\n")


def note(prefix_markup: str, message: str, console: Console | None = None) -> None:
    """One diagnostic line on stderr: a styled prefix (rich markup such as
    ``[red]error:[/red]``) and a plain-text message."""
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


def rows_out(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
             justify: dict[str, str] | None = None) -> None:
    """A table on a terminal; in a pipe, one tab-separated plain line per row (no
    header, nothing truncated), as ``ls`` or ``git`` do. Cells are plain text."""
    if not is_terminal(sys.stdout):
        for row in rows:
            sys.stdout.write("\t".join(printable_path(cell) for cell in row) + "\n")
        return
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=escape(title), title_justify="left")
    for name in columns:
        table.add_column(name, justify=(justify or {}).get(name, "left"))  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*[Text(printable_path(cell)) for cell in row])
    stdout().print(table)


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


def number(value: float | None) -> str:
    """A figure for bench tables: 3 significant digits, thousands separated above 1000."""
    if value is None:
        return "—"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
