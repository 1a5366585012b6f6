"""fpcli bench."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fpcli.cli.options import check_outputs, finite, path_text
from fpcli.cli.render import is_terminal, note, number, rows_out, stderr, warn_line
from fpcli.cli.root import EXIT_BELOW_THRESHOLD, app
from fpcli.errors import FpcliError
from fpcli.files import write_text
from fpcli.store import is_redis_url

if TYPE_CHECKING:
    from fpcli.bench import BenchResult, Change, Check

COMPARE_TOLERANCE = 0.25  # fpcli.bench.COMPARE_TOLERANCE (checked by a test; not imported: start-up time)


@app.command(short_help="Measure speed, cache, validation and search; a CI gate.")
def bench(
    ctx: typer.Context,
    library: Annotated[Path | None, typer.Option("--library", "-l", show_default=False, readable=False,
                                                 metavar="PATH",
                                                 help="Measure on this library (default: a copy of sample_audio/).")]
    = None,
    quick: Annotated[bool, typer.Option("--quick", help=(
        "A reduced run for CI (seconds on the default sample library; minutes on a --library of whole tracks)."))]
    = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes for the analyze steps.")] = 2,
    json_file: Annotated[str | None, typer.Option("--json", show_default=False, metavar="FILE",
                                                   help="Write the result as JSON (schema fpcli-bench/1).")] = None,
    markdown: Annotated[str | None, typer.Option("--markdown", show_default=False, metavar="FILE",
                                                  help="Write the tables as Markdown (e.g. a CI job summary).")]
    = None,
    check_: Annotated[bool, typer.Option(
        "--check", help="Exit 4 if a figure misses its threshold, or (with --compare) the analyzers' speed "
                        "ratios or the hit rate regressed (other regressions are flagged only: a busy machine "
                        "moves them).")] = False,
    thresholds: Annotated[Path | None, typer.Option(
        "--thresholds", show_default=False,
        help="Thresholds file, TOML or JSON, - for stdin (default: tool.fpcli.bench.thresholds in "
             "./pyproject.toml).")]
    = None,
    compare_with: Annotated[Path | None, typer.Option(
        "--compare", show_default=False, help="An earlier --json result to compare with (- reads stdin).")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0, callback=finite,
                                             help="--compare flags figures worse by more than this share.")]
    = COMPARE_TOLERANCE,
) -> None:
    """Measure analysis speed, the cache, validation and search; check and compare.

    Runs on a temporary store (your store is not touched; with --store redis://... it
    is a private namespace on that server, deleted afterwards). The analyzers' speed
    over decode-only speed (medians of interleaved rounds) holds on a noisy machine;
    other thresholds are set generously (cold / warm is one run of each).

    Examples:

      fpcli bench

      fpcli bench --quick --check --markdown bench.md

      fpcli bench --library ~/Music --json today.json --compare yesterday.json

    Exit codes: 0 ok, 4 with --check a figure missed its threshold or regressed, 1
    fatal error (a library of fewer than 2 decodable tracks), 2 usage error, 130
    interrupted.
    """
    from fpcli.bench import baseline_differences
    from fpcli.bench import check as check_figures
    from fpcli.bench import compare as compare_figures
    from fpcli.bench import run as run_bench

    limits, earlier = _bench_inputs(thresholds, compare_with, gate=check_)
    check_outputs({"--json": json_file, "--markdown": markdown})  # before a minute of measuring, not after
    if json_file and markdown and path_text(json_file) == path_text(markdown) == "-":
        raise typer.BadParameter("--json already writes to stdout", param_hint="--markdown")
    if library is not None and not os.path.lexists(library):  # "no decodable audio files" hid the typo
        raise typer.BadParameter(f"{path_text(library)}: no such file or folder", param_hint="--library")
    status = stderr().status("benchmarking")
    with status:
        location = ctx.obj.spec.resolved().location
        redis_url = location if is_redis_url(location) else None
        result = run_bench(library, quick=quick, jobs=jobs, redis_url=redis_url,
                           on_step=lambda step: status.update(f"benchmarking: {step}"))
    checks = check_figures(result, limits)
    changes = compare_figures(result, earlier, tolerance) if earlier is not None else []
    differences = baseline_differences(result, earlier) if earlier is not None else []
    if differences:
        warn_line(f"--compare: the earlier result was measured {'; '.join(differences)}: its absolute "
                  "figures do not compare (the gated ratios hold better)")
    if "-" not in (path_text(json_file) if json_file else None, path_text(markdown) if markdown else None):
        _render_bench(result, checks, changes)   # else stdout carries that document alone
    if json_file:
        write_text(json_file, json.dumps(_bench_json(result, checks, changes), indent=1) + "\n")
    if markdown:
        write_text(markdown, _bench_markdown(result, checks, changes))
    misses = [c for c in checks if not c.passed]
    regressions = [c for c in changes if c.regression and c.gated]
    if check_:
        for miss in misses:
            note("[red]miss[/red]", f"{miss.name} = {number(miss.value)} (threshold {miss.op} {miss.threshold:g})")
        for change in regressions:
            note("[red]regression[/red]", f"{change.name}: {number(change.before)} -> {number(change.after)}")
        if misses or regressions:
            raise typer.Exit(EXIT_BELOW_THRESHOLD)


def _bench_inputs(thresholds: Path | None, compare_with: Path | None, *,
                  gate: bool) -> tuple[dict[str, tuple[str, float]], dict[str, Any] | None]:
    """The thresholds and the earlier result, read and validated before the benchmark
    runs (a bad file fails in a second, not after a minute of measuring); a bad file
    is a usage error (exit 2) naming the option, the file and what is wrong. A bad
    ./pyproject.toml stops only a run that ``gate``s on its thresholds (--check): any
    project's broken file stopped every bench run in its folder."""
    from fpcli.bench import DEFAULT_THRESHOLDS, Thresholds, load_earlier, load_thresholds

    if thresholds is not None and compare_with is not None and str(thresholds) == str(compare_with) == "-":
        raise typer.BadParameter("--thresholds already reads stdin", param_hint="--compare")
    try:
        limits = load_thresholds(thresholds)
    except FpcliError as exc:
        if thresholds is not None:
            raise typer.BadParameter(str(exc), param_hint="--thresholds") from None
        if gate:  # ./pyproject.toml's table: not an option given, so not a usage error
            raise
        warn_line(f"{exc}: its thresholds are not read, the defaults are shown")
        limits = Thresholds(DEFAULT_THRESHOLDS)
    try:
        earlier = load_earlier(compare_with) if compare_with is not None else None
    except FpcliError as exc:
        raise typer.BadParameter(str(exc), param_hint="--compare") from None
    return limits, earlier


def _bench_rows(result: BenchResult, checks: list[Check], changes: list[Change], *,
                grouped: bool = True) -> list[list[str]]:
    by_check = {c.name: c for c in checks}
    by_change = {c.name: c for c in changes}
    rows = []
    for name, figure in result.figures.items():
        chk = by_check.get(name)
        row = [name, number(figure.value, grouped=grouped), figure.unit, figure.kind,
               f"{chk.op} {chk.threshold:g}" if chk else "", ("ok" if chk.passed else "MISS") if chk else ""]
        if changes:
            change = by_change.get(name)
            row.append(_change_cell(change) if change else "")
        rows.append(row)
    return rows


def _change_cell(change: Change) -> str:
    """"+12 %", "-40 % REGRESSION", or "n/a" where a relative change is undefined (from 0)."""
    if change.change is None:
        return "n/a"
    flag = (" REGRESSION" if change.gated else " regression, not gated") if change.regression else ""
    return f"{100 * change.change:+.0f} %{flag}"


def _files(library: dict[str, Any]) -> str:
    """"24 files", or "24 of 28 files decodable": the others were left out of every
    figure, and only the JSON said so."""
    decodable, files = library["decodable"], library.get("files", library["decodable"])
    return f"{decodable} files" if decodable == files else f"{decodable} of {files} files decodable"


def _bench_header(result: BenchResult) -> str:
    m = result.machine
    return (f"{result.date} · {m['cores']} cores, {m['cpu']} · Python {m['python']}, numpy {m['numpy']}, "
            f"soundfile {m['soundfile']}, libsndfile {m['libsndfile']} · library: {result.library['path']} "
            f"({_files(result.library)}, {result.library['audio_s']:.0f} s of audio)"
            f"{' · quick' if result.quick else ''}")


def _render_bench(result: BenchResult, checks: list[Check], changes: list[Change]) -> None:
    columns = ["figure", "value", "unit", "kind", "threshold", "check"] + (["change"] if changes else [])
    if not is_terminal(sys.stdout):  # rows_out leaves a table's title out of a pipe: these facts go to stderr
        note("", f"fpcli bench — {_bench_header(result)}")
    rows_out(f"fpcli bench — {_bench_header(result)}", columns,
             _bench_rows(result, checks, changes, grouped=is_terminal(sys.stdout)),
             {"value": "right", "change": "right"})


def _bench_json(result: BenchResult, checks: list[Check], changes: list[Change]) -> dict[str, Any]:
    """The --json result: the figures, and the verdicts the table shows (each threshold
    checked, each change against --compare), which a CI job otherwise had to redo."""
    return {**result.to_json(),
            "checks": [dataclasses.asdict(check) for check in checks],
            "changes": [dataclasses.asdict(change) for change in changes]}


def _bench_markdown(result: BenchResult, checks: list[Check], changes: list[Change]) -> str:
    from tabulate import tabulate

    from fpcli.bench import WORKLOAD

    columns = ["figure", "value", "unit", "kind", "threshold", "check"] + (["change"] if changes else [])
    misses = sum(not c.passed for c in checks)
    return "\n".join([
        "# fpcli bench", "", _bench_header(result), "", f"Command: `fpcli {' '.join(sys.argv[1:])}`", "",
        tabulate(_bench_rows(result, checks, changes), columns, tablefmt="github"), "",
        f"Thresholds: {len(checks) - misses} met, {misses} missed. Cache workload: {WORKLOAD}.", "",
    ])
