"""The command line: parse options, make one core call, render. The only module that
imports typer, rich or tabulate.

Exit codes: 0 all files ok; 3 the run completed but some files failed; 1 a fatal
error (one red line on stderr); 2 a usage error (bad option or argument).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fpcli import __version__
from fpcli.errors import FpcliError
from fpcli.fingerprint import DIM_BY_NAME, DIMS
from fpcli.library import TrackResult, analyze_file

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3

app = typer.Typer(
    name="fpcli",
    help="Acoustic fingerprints for music libraries: analyze, cache, validate, search, bench.\n\n"
         "Exit codes: 0 ok, 1 fatal error, 2 usage error, 3 some files failed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"fpcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """fpcli: acoustic fingerprints for music libraries."""


@app.command()
def analyze(
    paths: Annotated[list[Path], typer.Argument(help="Audio files to analyse.", show_default=False)],
    batch: Annotated[bool, typer.Option("--batch", help="Also compute the 25D batch reference.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per track per line (JSON Lines).")] = False,
) -> None:
    """Stream each file through the 13D analyzer and print its fingerprint.

    Examples:

      fpcli analyze track.flac

      fpcli analyze --batch --json a.flac b.mp3 | jq .streaming.tempo_bpm
    """
    failed = 0
    for path in paths:
        result = analyze_file(path, batch=batch)
        failed += result.failed
        if as_json:
            print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
        else:
            _render_track(result)
    if failed:
        _stderr().print(f"[red]{failed} of {len(paths)} file(s) failed[/red]")
        raise typer.Exit(EXIT_SOME_FAILED)


def _format_value(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit in ("Hz", "BPM"):
        return f"{value:.1f}"
    if unit in ("LUFS", "LU", "dB"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def _render_track(result: TrackResult) -> None:
    out = _stdout()
    if result.failed:
        _stderr().print(f"[red]error[/red] {result.error}")
        return
    facts = f"{result.duration_s:.1f} s, {result.samplerate} Hz, {result.channels} ch, {result.format}/{result.subtype}"
    title = f"{result.path}  ({facts})"
    if result.status == "partial":
        title += f"\n[yellow]partial: {result.partial_reason}[/yellow]"
    table = Table(title=title, title_justify="left")
    table.add_column("group")
    table.add_column("dimension")
    table.add_column("streaming", justify="right")
    table.add_column("conf", justify="right")
    if result.batch is not None:
        table.add_column("batch", justify="right")
    table.add_column("unit")
    streaming, reference = result.streaming, result.batch
    for dim in DIMS:
        if not dim.streaming and reference is None:
            continue
        row = [dim.group, dim.name]
        if dim.streaming:
            row += [_format_value(streaming.values[dim.name], dim.unit), f"{streaming.confidence[dim.name]:.2f}"]
        else:
            row += ["", ""]
        if reference is not None:
            row.append(_format_value(reference.values[dim.name], dim.unit))
        row.append(dim.unit)
        table.add_row(*row)
    out.print(table)
    for kind, fp in (("streaming", streaming), ("batch", reference)):
        for name, reason in (fp.reasons.items() if fp else ()):
            out.print(f"  [dim]{kind} {name} ({DIM_BY_NAME[name].unit}) is null: {reason}[/dim]")


def main() -> None:
    """Console entry point: the one place that turns an FpcliError into a red line.

    Typer's standalone mode handles usage errors (exit 2) and --help; anything that is
    neither a usage error nor an FpcliError is a bug and keeps its traceback.
    """
    try:
        app()
    except FpcliError as exc:
        _stderr().print(f"[red]error:[/red] {exc}")
        sys.exit(EXIT_FATAL)
