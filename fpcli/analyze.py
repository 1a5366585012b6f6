"""The one path from a file to a stored fingerprint.

* ``read_into``: the one read loop. Decodes a file once and feeds every block to the
  analyzers given (streaming, batch, or both), optionally stopping after N seconds
  and calling back at checkpoints.
* ``analyse``: a file -> ``TrackResult`` (never raises for bad audio).
* ``fingerprint_of(store, path, want)``: look up -> (miss) digest + decode once +
  analyse -> save merged with the stored record. Executors split it in two: the
  worker runs ``compute`` (pure: path in, identity + result out), the process that
  holds the store runs ``keep``; both halves are these functions, so the local pool,
  Dask, search and validate cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeAlias

from fpcli.audio import DEFAULT_BLOCK_FRAMES, AudioReader, checked_block_frames
from fpcli.blas import one_blas_thread
from fpcli.cue import track_of_entry
from fpcli.errors import (
    AnalysisError,
    AudioReadError,
    ParameterError,
    StoreFullError,
    StoreReadOnlyError,
    UnstorableError,
)
from fpcli.fingerprint import Fingerprint
from fpcli.memory import keep_buffers_on_heap
from fpcli.params import AnalysisParams, as_number, checked_params
from fpcli.results import TIMEOUT_ERROR_TYPE, TrackResult
from fpcli.store import FileIdentity, FingerprintStore, Lookup, Need
from fpcli.store.records import ACCESS_ERROR_TYPE, entry_identity_keys, os_reason, stat_regular

if TYPE_CHECKING:  # imported where they run: a library run's parent and a stored search never need them
    import numpy as np

    from fpcli.batch import BatchAnalyzer
    from fpcli.streaming import StreamingAnalyzer


@dataclasses.dataclass(frozen=True)
class Want:
    """What to compute for a file: analysis parameters, the batch reference too or
    not, and how much of the track (``seconds`` None: all; N: a preview of the first
    N seconds)."""

    params: AnalysisParams = dataclasses.field(default_factory=AnalysisParams)
    batch: bool = False
    seconds: float | None = None

    def __post_init__(self) -> None:
        checked_params(self.params)
        if self.seconds is not None and not (0 < self.seconds < float("inf")):
            raise ParameterError(f"seconds={self.seconds}: must be a positive number of seconds")

    def need(self) -> Need:
        return Need(self.params.key(), batch=self.batch, seconds=self.seconds)


Analyzer: TypeAlias = "StreamingAnalyzer | BatchAnalyzer"


def read_into(reader: AudioReader, analyzers: Sequence[Analyzer], *, max_seconds: float | None = None,
              checkpoints: Sequence[float] = (), on_checkpoint: Callable[[float], None] = lambda s: None) -> bool:
    """Push every block of ``reader`` into each analyzer (with one BLAS thread); returns
    True when the whole stream was read, False when it stopped at ``max_seconds``.

    ``checkpoints`` (seconds, ascending) split blocks exactly there and call
    ``on_checkpoint(seconds)`` after the audio up to that point has been pushed.

    The file-level API (``analyze_streaming``, ``analyze_batch``) runs here, so it tunes
    the process's allocator as the fpcli command does (``keep_buffers_on_heap``: each
    block's MB-sized temporaries are reused instead of mapped and faulted in again);
    measured 15 % less CPU time per file than without.
    """
    max_seconds = checked_max_seconds(max_seconds)
    keep_buffers_on_heap()
    with one_blas_thread():
        return _read_into(reader, analyzers, max_seconds, checkpoints, on_checkpoint)


def checked_max_seconds(max_seconds: float | None) -> float | None:
    """``max_seconds`` (how much of a track to read), None for no limit (None or
    infinity), or a ParameterError for zero, a negative number or NaN (a negative
    limit read a slice of the track cut from its end, zero read nothing)."""
    if max_seconds is None:
        return None
    seconds = as_number(max_seconds)
    if seconds is None or not seconds > 0:
        raise ParameterError(f"{max_seconds!r}: a positive number of seconds (or None: the whole track)",
                             "max_seconds")
    # Longer than any track is no limit: 1e308 s times a sample rate is an infinite
    # float, whose int() raised OverflowError for every file (recorded as its failure).
    return None if seconds > NO_LIMIT_S else seconds


NO_LIMIT_S = 1e12   # 31,700 years; times 768 kHz still well inside an int64 frame count


def _read_into(reader: AudioReader, analyzers: Sequence[Analyzer], max_seconds: float | None,
               checkpoints: Sequence[float], on_checkpoint: Callable[[float], None]) -> bool:
    rate = reader.info.samplerate
    limit = None if max_seconds is None else int(round(max_seconds * rate))
    marks = [int(round(min(s, NO_LIMIT_S) * rate)) for s in sorted(checkpoints)]   # 1e308 s: past any end
    pushed = 0
    blocks = iter(reader)
    for block in blocks:
        while block.size:
            stop = min([m for m in marks if m > pushed] + ([limit] if limit is not None else []), default=None)
            take = len(block) if stop is None else min(len(block), stop - pushed)
            for analyzer in analyzers:
                analyzer.push(block[:take])
            pushed += take
            reader.heard(pushed)
            block = block[take:]
            while marks and marks[0] <= pushed:
                on_checkpoint(marks.pop(0) / rate)
            if limit is not None and pushed >= limit:
                return not block.size and ended_here(reader, blocks)
    return True


def ended_here(reader: AudioReader, blocks: Iterator[np.ndarray]) -> bool:
    """Whether ``blocks`` (the reader's iteration, its last block used up) has nothing
    more: a limit reached exactly at the end of a file heard all of it (a complete
    fingerprint, not a preview). Finding out reads on, so that the reader checks the
    end as after any full read (a truncated file is still marked partial); it costs
    one block's decoding only when the limit falls on a block boundary inside the
    file. A stream (stdin) is not read on: its next block may be minutes away, and a
    stream stopped at the limit stays a preview of it."""
    if reader.stopped or reader.is_stream:
        return False
    ended = next(blocks, None) is None
    return ended and not reader.stopped


def analyse(path: str | os.PathLike[str], want: Want | None = None, *,
            block_frames: int = DEFAULT_BLOCK_FRAMES) -> TrackResult:
    """Decode ``path`` once, streaming every block into the 13D analyzer (and the 25D
    batch analyzer when ``want.batch``; a preview never computes batch values, which
    describe the whole track). Bad audio gives status ``error``, never an exception."""
    from fpcli.batch import BatchAnalyzer
    from fpcli.streaming import StreamingAnalyzer

    want = want or Want()
    path = os.fspath(path)
    started = time.perf_counter()
    try:
        reader = open_entry(path, block_frames=block_frames)
        info = reader.info
        streaming = StreamingAnalyzer(info.samplerate, info.channels, want.params,
                                      expected_frames=reader.expected_frames or None)
        analyzers: list[Analyzer] = [streaming]
        reference = BatchAnalyzer(info.samplerate, info.channels, want.params) \
            if want.batch and want.seconds is None else None
        if reference is not None:
            analyzers.append(reference)
        whole = read_into(reader, analyzers, max_seconds=want.seconds)
        fingerprint = streaming.finish() if whole else streaming.snapshot()
        batch = reference.finish() if reference is not None else None
    except (AudioReadError, AnalysisError) as exc:
        error_type, reason = _bad_input(exc)
        return TrackResult(path=path, status="error", error=reason, error_type=error_type,
                           seconds_taken=time.perf_counter() - started)
    heard_s = reader.frames_read / info.samplerate
    return TrackResult(
        path=path, status="partial" if reader.partial else "ok",
        duration_s=heard_s if whole or reader.stated_seconds is None else reader.stated_seconds,
        samplerate=info.samplerate, channels=info.channels, format=info.format, subtype=info.subtype,
        partial_reason=reader.partial_reason, streaming=fingerprint, batch=batch,
        seconds_taken=time.perf_counter() - started,
    )


def open_entry(path: str, *, block_frames: int = DEFAULT_BLOCK_FRAMES) -> AudioReader:
    """A reader of a file, or of one track of an album image (``album.flac#03``)."""
    track = track_of_entry(path)
    if track is None:
        return AudioReader(path, block_frames=block_frames)
    return AudioReader(track.image, block_frames=block_frames, start_s=track.start_s, end_s=track.end_s,
                       cd_byte_order=track.byte_order)


def preload() -> None:
    """Import what the first analysis would (the analyzers and scipy's FFT module):
    worker processes call it before they report ready."""
    import scipy.fft  # noqa: F401

    import fpcli.batch  # noqa: F401
    import fpcli.streaming  # noqa: F401


# The fewest frames the file-level analyses read at a time: a fingerprint does not
# depend on the block size, but each block costs Python work in every analyzer, and
# block_frames=1 analysed 1 s of audio in 8.3 s (16 frames: 0.74 s).
MIN_ANALYSIS_BLOCK_FRAMES = 4096


def analysis_reader(path: str | os.PathLike[str], block_frames: int) -> AudioReader:
    """The reader of a file-level analysis: ``block_frames`` checked, then at least
    MIN_ANALYSIS_BLOCK_FRAMES (a smaller block changes only the time taken)."""
    return AudioReader(path, block_frames=max(checked_block_frames(block_frames), MIN_ANALYSIS_BLOCK_FRAMES))


def analyze_streaming(path: str | os.PathLike[str], params: AnalysisParams | None = None, *,
                      block_frames: int = DEFAULT_BLOCK_FRAMES,
                      max_seconds: float | None = None) -> tuple[Fingerprint, AudioReader]:
    """Stream a file through the 13D analyzer; ``max_seconds`` (positive; infinity: no
    limit) stops early: a partial fingerprint, ``complete`` False, unless the file ends
    there. Returns the fingerprint and the reader. ``complete`` says the end of what
    could be decoded was reached; whether that was the whole file is the reader's
    ``partial`` and ``partial_reason`` (a cut file is complete here, and partial there:
    the command line stores it as partial)."""
    from fpcli.streaming import StreamingAnalyzer

    params = checked_params(params)  # before the file is opened

    reader = analysis_reader(path, block_frames)
    analyzer = StreamingAnalyzer(reader.info.samplerate, reader.info.channels, params,
                                 expected_frames=reader.expected_frames or None)
    whole = read_into(reader, [analyzer], max_seconds=max_seconds)
    return (analyzer.finish() if whole else analyzer.snapshot()), reader


def analyze_batch(path: str | os.PathLike[str], params: AnalysisParams | None = None, *,
                  block_frames: int = DEFAULT_BLOCK_FRAMES) -> tuple[Fingerprint, AudioReader]:
    """Batch-analyse a file; returns the fingerprint and the reader (partial flags, info)."""
    from fpcli.batch import BatchAnalyzer

    params = checked_params(params)  # before the file is opened

    reader = analysis_reader(path, block_frames)
    analyzer = BatchAnalyzer(reader.info.samplerate, reader.info.channels, params)
    read_into(reader, [analyzer])
    return analyzer.finish(), reader


def stream_checkpoints(path: str | os.PathLike[str], seconds: list[float], params: AnalysisParams | None = None,
                       *, block_frames: int = 8192) -> list[Fingerprint]:
    """Snapshots of the streaming fingerprint after each of ``seconds`` of one pass
    over the file; a checkpoint at or past the end gets the final fingerprint (one
    exactly at the end was an unfinished snapshot: ``validate --partial 10`` on 10 s
    tracks counted whole tracks in the unfinished confidence buckets).
    Used by ``fpcli validate --partial`` to see whether confidence predicts accuracy."""
    from fpcli.streaming import StreamingAnalyzer

    params = checked_params(params)  # before the file is opened

    reader = open_entry(os.fspath(path), block_frames=block_frames)   # a CUE track (album.flac#02) too
    analyzer = StreamingAnalyzer(reader.info.samplerate, reader.info.channels, params,
                                 expected_frames=reader.expected_frames or None)
    marks = sorted(seconds)
    snapshots: list[Fingerprint] = []
    whole = read_into(reader, [analyzer], max_seconds=marks[-1], checkpoints=marks,
                      on_checkpoint=lambda s: snapshots.append(analyzer.snapshot()))
    if whole:   # the file ended at or before the last checkpoint
        final = analyzer.finish()
        snapshots = [final if snapshot.seconds >= final.seconds else snapshot for snapshot in snapshots]
        snapshots += [final] * (len(marks) - len(snapshots))
    return snapshots


def checkpoints_or_failure(path: str | os.PathLike[str], seconds: list[float],
                           params: AnalysisParams | None = None) -> list[Fingerprint] | tuple[str, str]:
    """``stream_checkpoints``, with bad input as the (error_type, reason) a failed task
    gives, not an exception: a file deleted or emptied since the main pass was
    reported by the executors as "a fault of fpcli: please report it"."""
    try:
        return stream_checkpoints(path, seconds, params)
    except (AudioReadError, AnalysisError) as exc:
        return _bad_input(exc)


def _bad_input(exc: AudioReadError | AnalysisError) -> tuple[str, str]:
    """(error_type, reason) of a file that could not be analysed: the reason without the
    path an AudioReadError's message starts with (the result names the file)."""
    return type(exc).__name__, exc.reason if isinstance(exc, AudioReadError) else str(exc)


# -- the fingerprint path ----------------------------------------------------------------------

def compute(path: str, want: Want, identity: FileIdentity) -> tuple[FileIdentity, TrackResult]:
    """The worker's half: the file's full digest (unless known), then one decode.
    ``path`` is where this process reads the file (a Dask worker's mount); the
    identity keeps the path the store knows it by."""
    if identity.digest is None:
        try:
            identity = dataclasses.replace(identity, digest=entry_identity_keys(path, identity.size, digest=True)[1])
        except OSError as exc:
            return identity, failed(identity.path, ACCESS_ERROR_TYPE, os_reason(exc))
    result = analyse(path, want)
    return identity, changed_while_read(path, identity) or dataclasses.replace(result, path=identity.path)


def changed_while_read(path: str, identity: FileIdentity) -> TrackResult | None:
    """A "ChangedWhileRead" failure when the file at ``path`` is no longer the one
    ``identity`` saw before it was read, else None. Stored, a result would be the new
    audio's fingerprint under the old content's digest (served to every true copy of
    the old file, and no check could tell), and a failure would be the old content's,
    skipping the new one (a download that replaced a preallocated file) until it
    changed again. Neither is kept (TRANSIENT_FAILURES)."""
    change = _change_since(path, identity)
    if change is None:
        return None
    return failed(identity.path, "ChangedWhileRead", f"the file was {change} while it was analysed"
                  + (" (analyse it again when it is written)" if change == "changed" else ""))


# Failures that are not the file's: not recorded, so that they are not skipped later.
TRANSIENT_FAILURES = frozenset({"ChangedWhileRead"})


def _change_since(path: str, identity: FileIdentity) -> str | None:
    """"changed" when the file at ``path`` (a CUE track's image) no longer has the size
    and modification time it had when it was identified, or is another file (another
    inode: one of the same size and time renamed over it, whose audio was analysed
    under the first one's digest), "deleted" when it is gone, else None."""
    try:
        st = stat_regular(path)
    except OSError:
        return "deleted"
    if identity.inode is not None and st.st_ino != identity.inode:
        return "changed"
    return None if (st.st_size, st.st_mtime_ns) == (identity.size, identity.mtime_ns) else "changed"


def keep(store: FingerprintStore, path: str, identity: FileIdentity | None, result: TrackResult,
         limit_s: float | None = None, *, refused_ok: bool = True) -> TrackResult:
    """The store's half: save the result merged with the stored record, or record the
    failure (skipped on later runs until the file changes; a timeout, until a run
    allows more than ``limit_s``, the limit it outran). Returns the result under the
    caller's ``path``. A save this user may not make (``StoreReadOnlyError``) is
    counted in ``store.unsaved`` unless not ``refused_ok`` (then raised)."""
    result = dataclasses.replace(result, path=path)
    try:
        if result.failed and result.error_type in TRANSIENT_FAILURES:
            pass   # says nothing of the file as it is now: the next run tries it again
        elif result.failed:
            store.save_failure(path, identity, result.error_type or "Error", result.error or "failed",
                               limit_s if result.error_type == TIMEOUT_ERROR_TYPE else None)
        elif identity is not None:
            try:
                store.save(identity, result)
            except UnstorableError as exc:   # made from a damaged file: that file's failure, not the run's
                result = failed(path, type(exc).__name__, exc.reason)
                store.save_failure(path, identity, result.error_type or "Error", result.error or "failed")
    except (StoreReadOnlyError, StoreFullError) as exc:
        if not refused_ok:   # a Dask worker: it hands the refusal to the client (``NotStored``)
            raise
        not_stored(store, str(exc), full=isinstance(exc, StoreFullError))
    return result


def not_stored(store: FingerprintStore, reason: str, *, full: bool) -> None:
    """A save the store refused, ``reason`` in its words, as a run takes it. A user who
    may only read (a Redis ACL, a replica): counted in ``store.unsaved``, the run
    reports what it analysed and its summary that nothing new was stored (it stopped
    at the first file not in the store, its analysis thrown away). A store full under
    noeviction (``full``): a StoreFullError, unless the command's answer needs no write
    (``store.storing_optional``: search, validate), which goes on without it."""
    if full and not store.storing_optional:
        raise StoreFullError(reason)
    if not full:
        store.writable = False
    store.unsaved, store.refused = store.unsaved + 1, reason


def failed(path: str, error_type: str, reason: str, *, cached: bool = False) -> TrackResult:
    """A result for a file that could not be analysed (``reason`` does not repeat the path)."""
    return TrackResult(path=path, status="error", error=reason, error_type=error_type, cached=cached)


def look_up(store: FingerprintStore, path: str, want: Want, *, force: bool = False) -> Lookup:
    """The store's answer for ``path`` (a counted look-up), or with ``force`` only the
    file's identity so that it is recomputed."""
    if not force:
        return store.lookup(path, want.need())
    try:
        # The entry's digest names the record the new result is saved over: checked as a
        # look-up checks it (one edited or left wrong made a forced run overwrite another
        # file's record), not dropped (the file's own record then made the look-up read
        # every file whole before the first analysis, and a worker's copy on another
        # mount could no longer be held to the client's digest).
        return Lookup(store.identify(path, digest=False, params_key=want.need().params_key))
    except OSError as exc:
        return Lookup(None, error=os_reason(exc))


def look_up_all(store: FingerprintStore, paths: Sequence[str], want: Want, *,
                force: bool = False) -> Iterator[Lookup]:
    """``look_up`` of each path, in order; read ahead in batches (``lookup_many``)."""
    if force:
        return (Lookup(found) if isinstance(found, FileIdentity) else Lookup(None, error=os_reason(found))
                for found in store.identify_many(paths, want.need().params_key))
    return store.lookup_many(paths, want.need())


def answer(path: str, found: Lookup, *, retry_failed: bool = False,
           limit_s: float | None = None) -> TrackResult | None:
    """The result the store gives without analysing: a hit, a known failure (skipped
    unless ``retry_failed``, or a timeout under a shorter limit than this run's
    ``limit_s``, s; None: none) or an unreadable file; None when it must be analysed."""
    if found.failure is not None and not retry_failed and not found.failure.retried_under(limit_s):
        return failed(path, found.failure.error_type, found.failure.message, cached=True)
    if found.error is not None:
        return failed(path, ACCESS_ERROR_TYPE, found.error)
    if found.record is not None:
        return found.record.to_result(path)
    return None


def fingerprint_of(store: FingerprintStore, path: str | os.PathLike[str], want: Want | None = None, *,
                   force: bool = False, retry_failed: bool = False) -> TrackResult:
    """Look up -> (miss) decode once and analyse -> save merged. In this process."""
    want = want or Want()
    path = os.fsdecode(path)
    found = look_up(store, path, want, force=force)
    known = answer(path, found, retry_failed=retry_failed)
    if known is not None:
        return known
    assert found.identity is not None
    identity, result = compute(path, want, found.identity)
    return keep(store, path, identity, result)
