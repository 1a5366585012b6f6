"""The command line: parse options, make one core call, render. The only module that
imports typer, rich or tabulate.

Exit codes: 0 all files ok; 3 the run completed but some files failed (or a check
found problems); 1 a fatal error (one red line on stderr); 2 a usage error;
130 interrupted (finished work is kept).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fpcli import __version__
from fpcli.bench import COMPARE_TOLERANCE, WORKLOAD, load_thresholds, write_atomically
from fpcli.bench import check as check_figures
from fpcli.bench import compare as compare_figures
from fpcli.bench import run as run_bench
from fpcli.errors import FpcliError
from fpcli.fingerprint import DIM_BY_NAME, DIMS
from fpcli.library import DEFAULT_TIMEOUT_S, RunOptions, RunSummary, run_library
from fpcli.memory import keep_buffers_on_heap
from fpcli.results import TrackResult
from fpcli.search import SearchResult, parse_weights, write_m3u
from fpcli.search import search as run_search
from fpcli.store import (
    DEFAULT_SIZE_LIMIT_MB,
    FingerprintStore,
    export_store,
    import_store,
    prune,
    result_from_record,
    verify,
)
from fpcli.validate import DEFAULT_THRESHOLD, LibraryValidation, parse_tolerances, validate_library

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_BELOW_THRESHOLD, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
MAX_FULL_TABLES = 3  # runs with more tracks print one line per track

app = typer.Typer(
    name="fpcli",
    help="Acoustic fingerprints for music libraries: analyze, cache, validate, search, bench.\n\n"
         "Exit codes: 0 ok, 1 fatal error, 2 usage error, 3 some files failed, 4 below a --fail-under or\n"
         "--check threshold, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
cache_app = typer.Typer(
    help="Inspect and maintain the fingerprint store.\n\n"
         "Examples:\n\n  fpcli cache stats\n\n  fpcli cache list --json | jq .path\n\n"
         "  fpcli cache export backup.jsonl",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=1))


def _version(value: bool) -> None:
    if value:
        print(f"fpcli {__version__}")
        raise typer.Exit()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Global options, handed to every command through the typer context."""

    store: str | None
    size_limit_mb: float
    ttl_s: float | None

    def open_store(self) -> FingerprintStore:
        return FingerprintStore.open(self.store, size_limit_mb=self.size_limit_mb, ttl_s=self.ttl_s)


@app.callback()
def _root(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(
        "--store", envvar="FPCLI_STORE", show_default=False,
        help="Store: a directory (default: the user cache directory, e.g. ~/.cache/fpcli/store) or a "
             "shared Redis URL redis://user:password@host:port/db (user and password optional).")] = None,
    store_size_mb: Annotated[float, typer.Option(
        "--store-size-mb", envvar="FPCLI_STORE_SIZE_MB", min=1,
        help="Store size limit in MiB; least-recently-used records are evicted beyond it.")] = DEFAULT_SIZE_LIMIT_MB,
    store_ttl: Annotated[float | None, typer.Option(
        "--store-ttl", envvar="FPCLI_STORE_TTL", min=1, show_default=False,
        help="Expire records this many seconds after they were written (default: never).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """fpcli: acoustic fingerprints for music libraries."""
    ctx.obj = Settings(store, store_size_mb, store_ttl)


# -- analyze --------------------------------------------------------------------------------

ExecutorOption = Annotated[str, typer.Option(
    "--executor", help="local (worker processes) or dask (a Dask cluster; needs --scheduler and a shared store).")]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", show_default=False, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786.")]
PathMapOption = Annotated[list[str] | None, typer.Option(
    "--path-map", show_default=False,
    help="Rewrite paths for Dask workers: CLIENT_PREFIX=WORKER_PREFIX (repeatable).")]


def _run_options(*, executor: str, scheduler: str | None, path_map: list[str] | None, **kwargs) -> RunOptions:
    if executor not in ("local", "dask"):
        raise typer.BadParameter(f"{executor!r}: local or dask", param_hint="--executor")
    if executor == "dask" and not scheduler:
        raise typer.BadParameter("--executor dask needs --scheduler tcp://HOST:PORT", param_hint="--scheduler")
    return RunOptions(executor=executor, scheduler=scheduler, path_map=tuple(path_map or ()), **kwargs)

@app.command()
def analyze(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively).",
                                                show_default=False)],
    batch: Annotated[bool, typer.Option("--batch", help="Also compute (and cache) the 25D batch reference.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per track per line (JSON Lines).")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = os.cpu_count() or 1,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if the store has the track.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                               help="Retry files that failed before and have not changed.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Per-file time limit, seconds.")]
    = DEFAULT_TIMEOUT_S,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, notices or summary.")] = False,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
    path_map: PathMapOption = None,
) -> None:
    """Fingerprint files or whole libraries; unchanged tracks come from the store.

    Each new or changed file is decoded once and streamed through the 13D analyzer
    (and the 25D batch reference with --batch); results are stored as they finish,
    so an interrupted run resumes where it stopped. Files that failed are recorded
    and skipped until they change (or --retry-failed).

    Examples:

      fpcli analyze track.flac

      fpcli analyze ~/Music --jobs 2

      fpcli analyze --batch --json a.flac b.mp3 | jq .streaming.tempo_bpm.value

      fpcli --store redis://cache:6379/0 analyze /music --executor dask --scheduler tcp://sched:8786

    Exit codes: 0 all ok, 3 some files failed, 1 fatal error, 2 usage error, 130 interrupted.
    """
    options = _run_options(batch=batch, force=force, retry_failed=retry_failed, jobs=jobs, timeout_s=timeout,
                           executor=executor, scheduler=scheduler, path_map=path_map)
    with ctx.obj.open_store() as store, _Reporter(as_json=as_json, quiet=quiet) as reporter:
        summary = run_library(list(map(str, paths)), store, options, on_event=reporter.event)
    if not quiet:
        _render_summary(summary)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed or summary.problems:
        raise typer.Exit(EXIT_SOME_FAILED)


class _Reporter:
    """Renders run events: results to stdout (tables or JSON Lines), a progress bar
    and notices to stderr. The progress bar shows only on a terminal."""

    def __init__(self, *, as_json: bool, quiet: bool, show_tracks: bool = True) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.show_tracks = show_tracks
        self.total = 0
        self._stderr = _stderr()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self._stderr, transient=True,
            disable=quiet or not self._stderr.is_terminal,
        )
        self._task: Any = None

    def __enter__(self) -> _Reporter:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def event(self, kind: str, payload: Any) -> None:
        if kind == "start":
            self.total, description = payload
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=self.total)
            return
        if kind == "skip":
            path, message = payload
            if not self.quiet:
                self._stderr.print(f"[yellow]skipped[/yellow] {path}: {message}", soft_wrap=True)
        elif kind == "track":
            if self.show_tracks:
                self._track(payload)
            elif payload.failed and not self.quiet:
                self._stderr.print(f"[red]error[/red] {payload.error}", soft_wrap=True)
        if self._task is not None:
            self._progress.advance(self._task)

    def _results_console(self) -> Console:
        """Where human-readable results go: stdout, except when the progress bar is live
        on the same terminal; then through the bar's console, which prints above it
        (two consoles writing to one screen would tear the bar)."""
        if self._progress.live.is_started and sys.stdout.isatty():
            return self._progress.console
        return _stdout()

    def _track(self, result: TrackResult) -> None:
        if self.as_json:
            print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
        elif result.failed:
            self._stderr.print(f"[red]error[/red] {result.error}", soft_wrap=True)
        elif self.total <= MAX_FULL_TABLES:
            _render_track(result, self._results_console())
        else:
            _render_track_line(result, self._results_console())


def _render_summary(summary: RunSummary) -> None:
    line = (f"analysed {summary.analysed}, from cache {summary.cached}, failed {summary.failed}, "
            f"skipped {summary.skipped + summary.problems} in {summary.wall_seconds:.1f} s "
            f"({summary.audio_per_second:.0f} s of audio per second)")
    if summary.interrupted:
        line = "[yellow]interrupted[/yellow]: finished tracks are stored; run again to resume. " + line
    _stderr().print(line, soft_wrap=True)


def _format_value(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit in ("Hz", "BPM"):
        return f"{value:.1f}"
    if unit in ("LUFS", "LU", "dB"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def _render_track_line(result: TrackResult, out: Console) -> None:
    tempo = _format_value(result.streaming.values["tempo_bpm"], "BPM")
    origin = "cached" if result.cached else "new"
    status = "" if result.status == "ok" else f" [yellow]{result.status}[/yellow]"
    out.print(f"{origin:6} {result.duration_s:7.1f} s {tempo:>6} BPM  {result.path}{status}", soft_wrap=True)


def _render_track(result: TrackResult, out: Console | None = None) -> None:
    out = out or _stdout()
    facts = f"{result.duration_s:.1f} s, {result.samplerate} Hz, {result.channels} ch, {result.format}/{result.subtype}"
    title = f"{result.path}  ({facts}{', from the store' if result.cached else ''})"
    if result.status == "partial":
        title += f"\n[yellow]partial: {result.partial_reason}[/yellow]"
    table = Table(title=title, title_justify="left")
    for name, justify in (("group", "left"), ("dimension", "left"), ("streaming", "right"), ("conf", "right")):
        table.add_column(name, justify=justify)
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


# -- validate -------------------------------------------------------------------------------

def _parse_seconds(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        seconds = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected seconds like 10,30,60") from None
    if not seconds or seconds[0] <= 0:
        raise typer.BadParameter(f"{text!r}: seconds must be positive")
    return seconds


@app.command()
def validate(
    ctx: typer.Context,
    library: Annotated[list[Path], typer.Option("--library", "-l", help="Folder or file to validate (repeatable).",
                                                show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = os.cpu_count() or 1,
    fail_under: Annotated[float | None, typer.Option(
        "--fail-under", min=0, max=1, show_default=False,
        help="Exit 4 when the share of valid tracks is below this (0-1), for CI.")] = None,
    partial: Annotated[str | None, typer.Option(
        "--partial", show_default=False,
        help="Also validate streams cut after these seconds (e.g. 10,30) and show error by confidence.")] = None,
    tolerance: Annotated[list[str] | None, typer.Option(
        "--tolerance", show_default=False, help="Override a metric's tolerance, e.g. tempo_bpm=0.05 (repeatable).")]
    = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0, max=1,
                                             help="Minimum normalised cosine similarity.")] = DEFAULT_THRESHOLD,
    worst: Annotated[int, typer.Option("--worst", min=0, help="How many of the worst tracks to list.")] = 5,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Per-file time limit, seconds.")]
    = DEFAULT_TIMEOUT_S,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
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
    tolerances = parse_tolerances(tolerance or [])
    seconds = _parse_seconds(partial)
    options = _run_options(jobs=jobs, timeout_s=timeout, executor=executor, scheduler=scheduler, path_map=path_map)
    with ctx.obj.open_store() as store, _Reporter(as_json=False, quiet=quiet, show_tracks=False) as reporter:
        report = validate_library(list(map(str, library)), store, options, tolerances=tolerances,
                                  threshold=threshold, partial_seconds=seconds, on_event=reporter.event)
    if as_json:
        _print_json(report.to_json())
    else:
        _render_validation(report, worst)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    share = report.valid_share
    if fail_under is not None and (share is None or share < fail_under):
        _stderr().print(f"[red]valid share {share if share is None else f'{share:.3f}'} is below "
                        f"--fail-under {fail_under}[/red]")
        raise typer.Exit(EXIT_BELOW_THRESHOLD)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _render_validation(report: LibraryValidation, worst: int) -> None:
    out = _stdout()
    table = Table(title="Streaming vs batch, per metric", title_justify="left")
    for name in ("metric", "error", "tol", "mean err", "max err", "pass", "n"):
        table.add_column(name, justify="left" if name in ("metric", "error") else "right", no_wrap=name == "metric")
    for row in report.metric_table():
        rate = "—" if row["pass_rate"] is None else f"{100 * row['pass_rate']:.1f} %"
        name = row["metric"]
        if row["relations"]:
            name += " (" + ", ".join(f"{k} {v}" for k, v in sorted(row["relations"].items())) + ")"
        table.add_row(name, row["kind"], f"{row['tolerance']:g}", _fmt(row["mean_error"]), _fmt(row["max_error"]),
                      rate, str(row["tracks"]))
    out.print(table)
    summary = report.summary()
    share = "—" if summary["valid_share"] is None else f"{100 * summary['valid_share']:.1f} %"
    out.print(f"tracks {summary['tracks']}: valid {summary['valid']} ({share}), invalid {summary['invalid']}, "
              f"failed to decode {summary['failed_to_decode']}; similarity median {_fmt(summary['median_similarity'])}"
              f", worst {_fmt(summary['worst_similarity'])} (threshold {summary['threshold']:g})")
    for track in report.worst(worst):
        failed = ", ".join(track.result.failed_metrics) or "none"
        out.print(f"  {track.status:8} similarity {_fmt(track.result.similarity)}  failed: {failed}  {track.path}",
                  soft_wrap=True)
    for track in report.tracks:
        if track.status == "error":
            out.print(f"  [red]error[/red]    {track.error}", soft_wrap=True)
    if report.partial:
        _render_partial(report.partial)


def _render_partial(partial: dict) -> None:
    buckets = partial["buckets"]
    labels = [row["confidence"] for row in next(iter(buckets.values()))]
    table = Table(title=f"Error by streaming confidence, streams cut at {partial['seconds']} s "
                        f"({partial['tracks']} tracks): mean error (samples)", title_justify="left")
    table.add_column("metric", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("monotone")
    for name, rows in buckets.items():
        cells = ["—" if r["mean_error"] is None else f"{r['mean_error']:.3g} ({r['samples']})" for r in rows]
        table.add_row(name, *cells, "yes" if partial["monotone"][name] else "[red]no[/red]")
    _stdout().print(table)


# -- search ---------------------------------------------------------------------------------

@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[Path, typer.Argument(help="An audio file (analysed now if the store lacks it).")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many similar tracks.")] = 10,
    strategy: Annotated[str, typer.Option("--strategy", "-s",
                                          help="fast, accurate, batch or auto (chooses and says why).")] = "auto",
    library: Annotated[Path | None, typer.Option("--library", "-l", show_default=False,
                                                 help="Only tracks under this folder.")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", show_default=False,
        help="Group weights, e.g. temporal=2,stereo=0 (groups: frequency, dynamics, temporal, spectral, "
             "harmonic, variation, stereo; default 1 each).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show the dims that contributed most.")] = False,
    m3u: Annotated[Path | None, typer.Option("--m3u", show_default=False,
                                             help="Write a playlist of the query and its hits.")] = None,
    compute_missing: Annotated[bool, typer.Option(
        "--compute-missing", help="batch: compute missing batch fingerprints first.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Find the tracks in the store that sound most like QUERY.

    Strategies: fast (cached streaming fingerprints), accurate (fast candidates
    re-ranked with batch fingerprints, computing the missing ones for the candidates),
    batch (batch fingerprints for all), auto (from the query's confidence and
    validation).

    Examples:

      fpcli search track.flac -k 10

      fpcli search track.flac --strategy accurate --explain

      fpcli search track.flac -l ~/Music/Jazz --m3u similar.m3u
    """
    with ctx.obj.open_store() as store:
        result = run_search(store, str(query), k=k, strategy=strategy, group_weights=parse_weights(weights),
                            under=str(library) if library else None, explain=explain,
                            compute_missing=compute_missing)
    if m3u is not None:
        write_m3u(result, m3u)
    if as_json:
        _print_json(result.to_json())
        return
    _render_search(result, explain)


def _render_search(result: SearchResult, explain: bool) -> None:
    table = Table(title=f"{len(result.hits)} tracks like {result.query}", title_justify="left")
    for name, justify in (("#", "right"), ("distance", "right"), ("path", "left")):
        table.add_column(name, justify=justify)
    if explain:
        table.add_column("closest differences (query → hit)")
    for rank, hit in enumerate(result.hits, start=1):
        row = [str(rank), f"{hit.distance:.3f}", hit.path]
        if explain:
            row.append("; ".join(f"{e['dim']} {_format_value(e['query'], DIM_BY_NAME[e['dim']].unit)} → "
                                 f"{_format_value(e['hit'], DIM_BY_NAME[e['dim']].unit)}" for e in hit.explain))
        table.add_row(*row)
    _stdout().print(table)
    stats = result.stats
    _stderr().print(f"strategy {result.strategy} ({result.reason}); index {stats.get('index', '—')}, "
                    f"{stats.get('rows', '—')} tracks; cache hits {stats['cache_hits']}; "
                    f"{1000 * stats['seconds']:.1f} ms", soft_wrap=True)
    if stats.get("missing_batch"):
        _stderr().print(f"[yellow]{stats['missing_batch']} track(s) have no batch fingerprint and were not "
                        "searched: use --compute-missing or `fpcli analyze --batch`[/yellow]")


# -- bench ----------------------------------------------------------------------------------

@app.command()
def bench(
    ctx: typer.Context,
    library: Annotated[Path | None, typer.Option("--library", "-l", show_default=False,
                                                 help="Measure on this library (default: a copy of sample_audio/).")]
    = None,
    quick: Annotated[bool, typer.Option("--quick", help="A reduced run for CI (under a minute).")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes for the analyze steps.")] = 2,
    json_file: Annotated[Path | None, typer.Option("--json", show_default=False,
                                                   help="Write the result as JSON (schema fpcli-bench/1).")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", show_default=False,
                                                  help="Write the tables as Markdown (e.g. a CI job summary).")]
    = None,
    check_: Annotated[bool, typer.Option("--check", help="Exit 4 if a figure misses its threshold.")] = False,
    thresholds: Annotated[Path | None, typer.Option(
        "--thresholds", show_default=False,
        help="Thresholds file, TOML or JSON (default: tool.fpcli.bench.thresholds in ./pyproject.toml).")]
    = None,
    compare_with: Annotated[Path | None, typer.Option("--compare", show_default=False,
                                                      help="An earlier --json result to compare with.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0,
                                             help="--compare flags figures worse by more than this share.")]
    = COMPARE_TOLERANCE,
) -> None:
    """Measure analysis speed, the cache, validation and search; check and compare.

    Runs on a temporary store (your store is not touched; with --store redis://... it
    is a private namespace on that server, deleted afterwards). Ratios (analysis speed /
    decode-only speed, cold / warm) hold on a noisy machine; absolute thresholds are
    set generously.

    Examples:

      fpcli bench

      fpcli bench --quick --check --markdown bench.md

      fpcli bench --library ~/Music --json today.json --compare yesterday.json
    """
    limits = load_thresholds(thresholds)
    earlier = _read_json(compare_with) if compare_with else None
    status = _stderr().status("benchmarking")
    with status:
        store = ctx.obj.store or os.environ.get("FPCLI_STORE") or ""
        redis_url = store if store.startswith(("redis://", "rediss://")) else None
        result = run_bench(library, quick=quick, jobs=jobs, redis_url=redis_url,
                           on_step=lambda step: status.update(f"benchmarking: {step}"))
    checks = check_figures(result, limits)
    changes = compare_figures(result, earlier, tolerance) if earlier is not None else []
    _render_bench(result, checks, changes)
    if json_file:
        write_atomically(json_file, json.dumps(result.to_json(), indent=1) + "\n")
    if markdown:
        write_atomically(markdown, _bench_markdown(result, checks, changes))
    misses = [c for c in checks if not c.passed]
    regressions = [c for c in changes if c.regression]
    if check_:
        for miss in misses:
            _stderr().print(f"[red]miss[/red] {miss.name} = {_num(miss.value)} "
                            f"(threshold {miss.op} {miss.threshold:g})")
        for change in regressions:
            _stderr().print(f"[red]regression[/red] {change.name}: {_num(change.before)} -> {_num(change.after)}")
        if misses or regressions:
            raise typer.Exit(EXIT_BELOW_THRESHOLD)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FpcliError(f"cannot read {path}: {exc}") from None


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _bench_rows(result, checks, changes) -> list[list[str]]:
    by_check = {c.name: c for c in checks}
    by_change = {c.name: c for c in changes}
    rows = []
    for name, figure in result.figures.items():
        chk = by_check.get(name)
        row = [name, _num(figure.value), figure.unit, figure.kind,
               f"{chk.op} {chk.threshold:g}" if chk else "", ("ok" if chk.passed else "MISS") if chk else ""]
        if changes:
            change = by_change.get(name)
            row.append(f"{100 * change.change:+.0f} %{' REGRESSION' if change.regression else ''}" if change else "")
        rows.append(row)
    return rows


def _bench_header(result) -> str:
    m = result.machine
    return (f"{result.date} · {m['cores']} cores, {m['cpu']} · Python {m['python']}, numpy {m['numpy']}, "
            f"soundfile {m['soundfile']}, libsndfile {m['libsndfile']} · library: {result.library['path']} "
            f"({result.library['decodable']} files, {result.library['audio_s']:.0f} s of audio)"
            f"{' · quick' if result.quick else ''}")


def _render_bench(result, checks, changes) -> None:
    columns = ["figure", "value", "unit", "kind", "threshold", "check"] + (["change"] if changes else [])
    table = Table(title=f"fpcli bench — {_bench_header(result)}", title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in ("value", "change") else "left")
    for row in _bench_rows(result, checks, changes):
        table.add_row(*[cell.replace("MISS", "[red]MISS[/red]").replace("REGRESSION", "[red]REGRESSION[/red]")
                        for cell in row])
    _stdout().print(table)


def _bench_markdown(result, checks, changes) -> str:
    from tabulate import tabulate

    columns = ["figure", "value", "unit", "kind", "threshold", "check"] + (["change"] if changes else [])
    misses = sum(not c.passed for c in checks)
    return "\n".join([
        "# fpcli bench", "", _bench_header(result), "", f"Command: `fpcli {' '.join(sys.argv[1:])}`", "",
        tabulate(_bench_rows(result, checks, changes), columns, tablefmt="github"), "",
        f"Thresholds: {len(checks) - misses} met, {misses} missed. Cache workload: {WORKLOAD}.", "",
    ])


# -- cache ------------------------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@cache_app.command("stats")
def cache_stats(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Entries, size, hit rate, hits, misses, evictions, expiries, failures.

    Hits and misses count lookups made by analyze (and later validate and search),
    kept across runs.

    Examples:

      fpcli cache stats

      fpcli --store /data/fp cache stats --json | jq .hit_rate
    """
    with ctx.obj.open_store() as store:
        stats = store.stats()
    if as_json:
        _print_json(stats)
        return
    rate = "—" if stats["hit_rate"] is None else f"{100 * stats['hit_rate']:.1f} %"
    rows = [
        ("location", stats["location"]),
        ("entries", f"{stats['entries']} ({stats['with_batch']} with batch, {stats['validated']} validated)"),
        ("failures", str(stats["failures"])),
        ("size", f"{_mib(stats['size_bytes'])} of "
                 + (f"{_mib(stats['size_limit_bytes'])} limit" if stats["size_limit_bytes"] else "no limit")),
        ("ttl", "none" if stats["ttl_s"] is None else f"{stats['ttl_s']:g} s"),
        ("hit rate", f"{rate} ({stats['hits']} hits, {stats['misses']} misses)"),
        ("evictions", str(stats["evictions"])),
        ("expiries", str(stats["expiries"])),
        ("by version", ", ".join(f"v{k}: {v}" for k, v in sorted(stats["by_version"].items())) or "—"),
    ]
    table = Table(show_header=False, box=None)
    for key, value in rows:
        table.add_row(f"[bold]{key}[/bold]", value)
    _stdout().print(table)
    for warning in stats["warnings"]:
        _stderr().print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)


def _record_summary(record: dict[str, Any]) -> dict[str, Any]:
    audio, values = record["audio"], record["streaming"]["values"]
    validation = record.get("validation") or {}
    return {
        "path": record["path"], "duration_s": audio["duration_s"], "samplerate": audio["samplerate"],
        "channels": audio["channels"], "partial": audio["partial"], "tempo_bpm": values.get("tempo_bpm"),
        "has_batch": bool(record.get("batch")), "validation": validation.get("status"),
        "fingerprint_version": record["fingerprint_version"], "analysed_at": record["analysed_at"],
    }


@cache_app.command("list")
def cache_list(
    ctx: typer.Context,
    contains: Annotated[str | None, typer.Option("--contains", help="Only paths containing this text.")] = None,
    missing_batch: Annotated[bool, typer.Option("--missing-batch", help="Only records without batch values.")]
    = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record per line.")] = False,
) -> None:
    """List stored records, sorted by path.

    Examples:

      fpcli cache list --contains Beatles

      fpcli cache list --missing-batch --json
    """
    with ctx.obj.open_store() as store:
        records = [r for r in store.records()
                   if (contains is None or contains in r["path"]) and not (missing_batch and r.get("batch"))]
    records.sort(key=lambda r: r["path"])
    records = records[:limit] if limit else records
    if as_json:
        for record in records:
            print(json.dumps(_record_summary(record), ensure_ascii=False))
        return
    table = Table(title=f"{len(records)} record(s)", title_justify="left")
    for name in ("path", "duration", "rate/ch", "tempo", "batch", "validation", "analysed"):
        table.add_column(name)
    for record in map(_record_summary, records):
        table.add_row(record["path"], f"{record['duration_s']:.1f} s",
                      f"{record['samplerate']}/{record['channels']}", _format_value(record["tempo_bpm"], "BPM"),
                      "yes" if record["has_batch"] else "no", record["validation"] or "—", _when(record["analysed_at"]))
    _stdout().print(table)


@cache_app.command("show")
def cache_show(ctx: typer.Context, path: Annotated[Path, typer.Argument(help="An audio file.")],
               as_json: Annotated[bool, typer.Option("--json", help="Print the stored record as JSON.")] = False
               ) -> None:
    """Show the stored record of a file (found by content, so moved files work too).

    Examples:

      fpcli cache show track.flac

      fpcli cache show --json track.flac | jq .streaming.values
    """
    with ctx.obj.open_store() as store:
        try:
            record = store.record_for_path(path)
        except OSError as exc:
            raise FpcliError(f"{path}: {exc.strerror or exc}") from None
    if record is None:
        raise FpcliError(f"{path}: not in the store (run: fpcli analyze {path})")
    if as_json:
        _print_json(record)
        return
    _render_track(result_from_record(record, str(path)))
    validation = record.get("validation")
    _stdout().print(f"analysed {_when(record['analysed_at'])}, last used {_when(record.get('last_used_at'))}, "
                    f"validation: {validation['status'] if validation else 'not validated'}")


@cache_app.command("clear")
def cache_clear(ctx: typer.Context,
                yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
                ) -> None:
    """Remove every record, failure and counter from the store.

    Example:

      fpcli cache clear --yes
    """
    with ctx.obj.open_store() as store:
        if not yes:
            typer.confirm(f"Remove everything in the store at {store.location}?", abort=True, err=True)
        removed = store.clear()
    _stderr().print(f"removed {removed} entries")


@cache_app.command("prune")
def cache_prune(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Drop records and failures of files that are gone or have changed.

    Example:

      fpcli cache prune
    """
    with ctx.obj.open_store() as store:
        removed = prune(store)
    if as_json:
        _print_json([{"path": path, "reason": why} for path, why in removed])
        return
    for path, why in removed:
        _stdout().print(f"{why:16} {path}", soft_wrap=True)
    _stderr().print(f"pruned {len(removed)} entries")


@cache_app.command("failures")
def cache_failures(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List files that could not be analysed (skipped until they change).

    Examples:

      fpcli cache failures

      fpcli analyze ~/Music --retry-failed
    """
    with ctx.obj.open_store() as store:
        failures = sorted(store.failures(), key=lambda f: f["path"])
    if as_json:
        _print_json(failures)
        return
    table = Table(title=f"{len(failures)} failure(s)", title_justify="left")
    for name in ("path", "error", "message", "when"):
        table.add_column(name)
    for failure in failures:
        table.add_row(failure["path"], failure["error_type"], failure["message"], _when(failure.get("failed_at")))
    _stdout().print(table)


@cache_app.command("export")
def cache_export(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="JSON Lines file to write.")]) -> None:
    """Write every record and failure to a JSON Lines file (atomically).

    Example:

      fpcli cache export backup.jsonl
    """
    with ctx.obj.open_store() as store:
        counts = export_store(store, file)
    _stderr().print(f"exported {counts['records']} records and {counts['failures']} failures to {file}")


@cache_app.command("import")
def cache_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="JSON Lines file to read.")]) -> None:
    """Read records and failures from an export; invalid lines are rejected and listed.

    The file is parsed as JSON only (nothing is ever unpickled) and every record is
    checked against the schema before it is stored. Exit code 3 if any line was
    rejected.

    Example:

      fpcli cache import backup.jsonl
    """
    with ctx.obj.open_store() as store:
        counts, rejected = import_store(store, file)
    for reason in rejected:
        _stderr().print(f"[red]rejected[/red] {reason}", soft_wrap=True)
    _stderr().print(f"imported {counts['records']} records and {counts['failures']} failures, "
                    f"rejected {len(rejected)} lines")
    if rejected:
        raise typer.Exit(EXIT_SOME_FAILED)


@cache_app.command("verify")
def cache_verify(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Check the store's integrity and every entry's schema; exit 3 on problems.

    Example:

      fpcli cache verify
    """
    with ctx.obj.open_store() as store:
        problems = verify(store)
        entries = len(store.backend)
    if as_json:
        _print_json({"entries": entries, "problems": problems})
    else:
        for problem in problems:
            _stdout().print(f"[red]problem[/red] {problem}", soft_wrap=True)
        _stderr().print(f"checked {entries} entries: {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(EXIT_SOME_FAILED)


def main() -> None:
    """Console entry point: the one place that turns an FpcliError into a red line.

    Typer's standalone mode handles usage errors (exit 2) and --help; anything that is
    neither a usage error nor an FpcliError is a bug and keeps its traceback.
    """
    keep_buffers_on_heap()  # 12-15 % faster analysis in this process (fpcli/memory.py)
    try:
        app()
    except FpcliError as exc:
        _stderr().print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(EXIT_FATAL)
