"""fpcli analyze."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    path_text,
    refuse_given,
    run_options,
)
from fpcli.cli.render import note, report_bad_entries, warn_line
from fpcli.cli.root import EXIT_INTERRUPTED, EXIT_SOME_FAILED, app
from fpcli.errors import FpcliError
from fpcli.executors import DEFAULT_TIMEOUT_S
from fpcli.params import MAX_CHANNELS, MAX_SAMPLERATE, MIN_SAMPLERATE, AnalysisParams

if TYPE_CHECKING:
    from fpcli.results import TrackResult
    from fpcli.store import FingerprintStore


@app.command(short_help="Fingerprint files or whole libraries, incrementally.")
def analyze(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively).", readable=False,
                                                parser=file_argument,
                                                metavar="PATH...", show_default=False)],
    batch: Annotated[bool, typer.Option("--batch", help="Also compute (and cache) the 25D batch reference.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per track per line (JSON Lines).")] = False,
    jobs: JobsOption = DEFAULT_JOBS,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if the store has the track.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                               help="Retry files that failed before and have not changed.")] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    quiet: QuietOption = False,
    seconds: Annotated[float | None, typer.Option(
        "--seconds", min=0.5, show_default=False, callback=finite,
        help="A preview: analyse at most the first N seconds of each track (stored as partial; a later "
             "full run upgrades it).")] = None,
    upgrade: Annotated[bool, typer.Option(
        "--upgrade", help="Finish the previews (lowest confidence first; with --seconds, extend them to N s "
                          "instead); files never analysed are left alone.")]
    = False,
    every: Annotated[float | None, typer.Option(
        "--every", min=0.1, show_default=False, callback=finite,
        help="Print a snapshot every S seconds of audio (one file or - for stdin); each is stored as a "
             "partial record (a stream's only with --name), so an interrupted run keeps what was heard.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", show_default=False, help="Store a stream (-) under this name (a stream has no path).")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not store the result of a stream.")] = False,
    raw_format: Annotated[str | None, typer.Option(
        "--raw-format", show_default=False,
        help="Raw PCM on stdin: s16le, s32le, f32le, f64le or u8 (with --rate and --channels).")] = None,
    rate: Annotated[int | None, typer.Option("--rate", show_default=False,
                                             help=f"Raw PCM sample rate, Hz ({MIN_SAMPLERATE}-{MAX_SAMPLERATE}).")
                    ] = None,
    channels: Annotated[int | None, typer.Option("--channels", min=1, max=MAX_CHANNELS, show_default=False,
                                                 help="Raw PCM channels.")] = None,
    exclude: ExcludeOption = None,
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

      fpcli analyze ~/Music --exclude 'Podcasts/' --exclude '*.wav'

      fpcli analyze ~/Music --seconds 30   (a fast first pass; later: fpcli analyze ~/Music --upgrade)

      ffmpeg -i URL -f flac - | fpcli analyze - --every 10 --name radio

      arecord -f S16_LE -r 44100 -c 2 | fpcli analyze - --raw-format s16le --rate 44100 --channels 2 --no-store

      fpcli analyze --batch --json a.flac b.mp3 | jq .streaming.tempo_bpm.value

      fpcli --store redis://cache:6379/0 analyze /music --executor dask --scheduler tcp://sched:8786

    Exit codes: 0 all ok, 3 some files failed, 1 fatal error, 2 usage error, 130 interrupted
    (143, 129: stopped by SIGTERM, SIGHUP).
    """
    from fpcli.library import run_library

    texts = [path_text(p) for p in paths]
    _refuse_ignored(ctx, stream="-" in texts, followed=every is not None, raw=raw_format is not None)
    if "-" in texts or every is not None:
        _follow(ctx, texts, as_json=as_json, quiet=quiet, seconds=seconds, every=every, name=name,
                no_store=no_store, raw=(raw_format, rate, channels))
        return
    from fpcli.cli.tracks import Reporter, render_summary, stopped_said  # rich: only when a command runs

    options = run_options(seconds=seconds, upgrade=upgrade, batch=batch, force=force, retry_failed=retry_failed,
                          jobs=jobs, timeout_s=timeout, executor=executor, scheduler=scheduler, path_map=path_map,
                          exclude=exclude)
    reporter = Reporter(as_json=as_json, quiet=quiet)
    with ctx.obj.open_store() as store:
        try:
            with stopped_said(reporter, quiet=quiet), reporter:
                evicted = _evictions(store)
                summary = run_library(texts, store, options, on_event=reporter.event)
                evicted = _evictions(store) - evicted
        except FpcliError:   # a run an error stops says the bad entries it met too, before the error
            report_bad_entries(store)
            raise
    if not quiet:
        render_summary(summary)
    report_bad_entries(store)   # each was analysed again and its record replaced: said, as every command says it
    if store.unsaved:
        warn_line(f"{store.unsaved} result(s) not stored: {store.refused}")
    if evicted > 0:
        # Said: a run that evicted 448 of 601 records to stay within the limit said nothing.
        # The store counts its evictions, not whose writes made them: two runs at once each
        # said "170 evicted" of 170 in all, so the count is said to be the store's.
        warn_line(f"{evicted} least recently used entr{'ies' if evicted != 1 else 'y'} evicted during this run to keep "
                  f"the store within its size limit of {store.backend.size_limit / 2**20:g} MiB (made room for this "
                  "run's writes or for other processes'; --store-size-mb raises it)")
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed or summary.problems or store.unsaved:   # unsaved: not what the run is for
        raise typer.Exit(EXIT_SOME_FAILED)


# Options of one kind of run (parameter names), which the other kinds would ignore.
RAW_OPTIONS = ("raw_format", "rate", "channels")
STREAM_OPTIONS = (*RAW_OPTIONS, "name")
LIBRARY_OPTIONS = ("batch", "force", "retry_failed", "upgrade", "jobs", "timeout", "exclude", "executor",
                   "scheduler", "path_map")


def _refuse_ignored(ctx: typer.Context, *, stream: bool, followed: bool, raw: bool) -> None:
    """Usage errors (exit 2) for options given that this kind of run would ignore: the
    stream's options (raw PCM, --name, --no-store) on files and folders, the library
    run's (--batch, --jobs, --upgrade, ...) on a stream or a file followed with --every,
    --rate and --channels without --raw-format (a container states its own). Accepted
    without a word, they read as honoured: a file analysed "at 44100 Hz", a stream
    "with its batch reference"."""
    if not stream and not followed:
        refuse_given(ctx, (*STREAM_OPTIONS, "no_store"), "for a stream on stdin: fpcli analyze - ...")
        if ctx.params.get("upgrade"):
            # A forced look-up knows no preview: every file counted as "without a preview
            # to finish", and nothing was done (exit 0).
            refuse_given(ctx, ("force",), "for recomputing every file; --upgrade finishes the previews alone "
                                          "(or, with --seconds, extends them): give one of them")
        if ctx.params.get("seconds") is not None:
            # Batch values are of whole tracks: with a preview they were dropped without a
            # word, and no stored record could answer (each run analysed every file again).
            refuse_given(ctx, ("batch",), "for whole tracks: a preview (--seconds) has streaming values only")
        return
    what = "a stream (-)" if stream else "a file followed with --every"
    refuse_given(ctx, LIBRARY_OPTIONS, f"for runs over files and folders, not for {what}")
    if not stream:
        refuse_given(ctx, STREAM_OPTIONS, "for a stream on stdin (-): a followed file is stored under its path")
    elif not raw:
        refuse_given(ctx, ("rate", "channels"), "for raw PCM, with --raw-format (a container's header states its own)")


def _evictions(store: FingerprintStore) -> int:
    """The store's own eviction count (0 on Redis, whose count is the server's, every
    database's, and whose limit is its maxmemory)."""
    from fpcli.store.spec import is_redis_url

    return 0 if is_redis_url(store.location) else store.backend.counter("evictions")


def _check_raw(raw_format: str | None, rate: int | None, channels: int | None) -> None:
    """Usage errors of the raw PCM options, found before a byte of stdin is read."""
    from fpcli.audio.raw import RAW_FORMATS

    if raw_format is None:
        return
    if raw_format not in RAW_FORMATS:
        raise typer.BadParameter(f"{raw_format!r} is not one of {', '.join(RAW_FORMATS)}", param_hint="--raw-format")
    if rate is None or channels is None:
        raise typer.BadParameter("raw PCM needs --rate and --channels", param_hint="--raw-format")
    if not MIN_SAMPLERATE <= rate <= MAX_SAMPLERATE:
        raise typer.BadParameter(f"{rate} Hz is outside {MIN_SAMPLERATE}-{MAX_SAMPLERATE} Hz", param_hint="--rate")


def _follow(ctx: typer.Context, texts: list[str], *, as_json: bool, quiet: bool, seconds: float | None,
            every: float | None, name: str | None, no_store: bool,
            raw: tuple[str | None, int | None, int | None]) -> None:
    """One stream (stdin) or one file followed as it is read: snapshots every ``every``
    seconds, each stored as a partial record (a stream only with --name)."""
    from fpcli.analyze import changed_while_read, open_entry
    from fpcli.analyze import keep as keep_result
    from fpcli.audio import open_stream
    from fpcli.cli.tracks import Reporter, failed_result
    from fpcli.cue import album_image_of
    from fpcli.errors import AudioReadError, StoreFullError, StoreReadOnlyError, UnstorableError
    from fpcli.files import printable_path
    from fpcli.live import follow, stream_identity

    if len(texts) != 1:
        what, hint = (("- (a stream on stdin) is analysed alone: give no other path with it", "-") if "-" in texts
                      else ("--every follows one file (or - for a stream on stdin), not several", "--every"))
        raise typer.BadParameter(what, param_hint=hint)
    path = texts[0]
    if path != "-" and os.path.isdir(path):   # several files, as a list of them is (it failed as "a file")
        raise typer.BadParameter("--every follows one file (or - for a stream on stdin), not a folder",
                                 param_hint="--every")
    image = None if path == "-" else album_image_of(path)
    if image is not None:   # it was stored as a track, a search hit for its own tracks
        raise typer.BadParameter(f"{printable_path(path)} is the album image of a CUE sheet, not a track: follow "
                                 f"one of its tracks ({printable_path(image)}#01, ...), or analyse it without --every "
                                 "(its tracks)", param_hint="--every")
    raw_format, rate, channels = raw
    _check_raw(raw_format, rate, channels)
    if path == "-" and name and no_store:
        raise typer.BadParameter("--name stores the stream; --no-store does not: choose one", param_hint="--name")
    reporter = Reporter(as_json=as_json, quiet=quiet)
    storing = not no_store and (path != "-" or name is not None)
    try:
        reader = open_stream(sys.stdin.buffer, raw_format=raw_format, samplerate=rate or 0,
                             channels=channels or 0) if path == "-" else open_entry(path)
    except AudioReadError as exc:
        # A named stream by its name, as its results are (it said "-" of a stream that
        # failed, "stream:NAME" of one that did not).
        result = failed_result(stream_identity(name).path if path == "-" and name else path, exc)
        if storing and path != "-" and os.access(path, os.R_OK) and os.path.isfile(path):
            with ctx.obj.open_store() as store:   # not audio: recorded, as a run over files records it
                keep_result(store, path, store.identify(path), result)
        reporter.event("track", result)
        raise typer.Exit(EXIT_SOME_FAILED) from None
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(ctx.obj.open_store()) if storing else None
        # The entry's digest as a look-up checks it: the result is saved under it (see look_up's force).
        identity = (stream_identity(name) if path == "-" and name else
                    store.identify(path, params_key=AnalysisParams().key())) if store else None
        # A file is reported by the path as given, as a run over files reports it (the
        # store knows it by its absolute path); a named stream by its name.
        label = identity.path if identity and path == "-" else path

        stored = []   # whether anything was stored (an interrupt says so only then)
        unstorable: list[str] = []   # why a snapshot could not be stored (a damaged header's length)
        changed: list[TrackResult] = []   # the file changed while followed: nothing more is stored

        def keep(result: TrackResult) -> None:
            if store is not None and identity is not None:
                # A file written while followed (a recording still growing) ended at the
                # audio there was, and was stored as complete under the digest of what
                # it held at the start; a run over files refuses it, and so does this.
                if not changed and path != "-" and (change := changed_while_read(path, identity)) is not None:
                    changed.append(change)
                if changed:
                    return
                try:
                    store.save(identity, result)
                except UnstorableError as exc:   # this stream's problem: said once, the run goes on
                    if not unstorable:
                        warn_line(f"{label}: {exc.reason}")
                    unstorable.append(exc.reason)
                    return
                except (StoreFullError, StoreReadOnlyError) as exc:
                    # A store that takes no writes (full under noeviction, a user who may only
                    # read): the snapshots are still reported, as a run over files reports
                    # its files. The first refused save ended the command with nothing shown.
                    if not unstorable:
                        warn_line(f"{label}: not stored: {exc}")
                    unstorable.append(str(exc))
                    return
                stored.append(True)

        try:
            final = follow(reader, label, every_s=every, max_seconds=seconds, keep=keep,
                           on_snapshot=lambda result: reporter.snapshot(result))
        except AudioReadError as exc:  # found while decoding (float samples far beyond full scale)
            result = failed_result(label, exc)
            if store is not None and identity is not None and path != "-":
                keep_result(store, path, identity, result)   # recorded, as a run over files records it
            reporter.event("track", result)
            raise typer.Exit(EXIT_SOME_FAILED) from None
        except KeyboardInterrupt:
            kept = "what was heard is stored" if stored else \
                "nothing stored" + (" (nothing measurable was heard)" if storing else "")
            if changed:   # said "what was heard is stored" of a file whose later snapshots were not
                kept = f"{changed[0].error}; " + ("what was heard before is stored" if stored else "nothing stored")
            note("[yellow]interrupted:[/yellow]", kept)
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if store is not None:
        report_bad_entries(store)
    if changed:
        reporter.event("track", dataclasses.replace(changed[0], path=label))
        raise typer.Exit(EXIT_SOME_FAILED)
    reporter.final(final)
    if path == "-" and not storing and not quiet and not no_store:  # --no-store: the user knows
        note("", "not stored (a stream is stored with --name NAME)")
    if unstorable:
        raise typer.Exit(EXIT_SOME_FAILED)
