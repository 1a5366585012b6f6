"""Partial and live fingerprints: what a track sounds like before all of it was heard.

``LiveFingerprint`` is the class a player embeds: push blocks from its audio
callback, ask for a snapshot at any time, save it to the store when the track
changes. ``follow`` runs one over a reader (a file, or a stream on stdin), calling
back every N seconds of audio and saving each snapshot as a partial record, so an
interrupted stream (Ctrl-C, kill -9) keeps what was heard.

A stream has no path: it is stored under a name (``stream:NAME`` in listings). A name
holds its latest stream, as far as it was heard: each snapshot of a new stream of the
name replaces what the name held (an earlier stream is other audio).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fpcli.analyze import checked_max_seconds, ended_here
from fpcli.audio import AudioReader
from fpcli.blas import one_blas_thread
from fpcli.dsp.pipeline import block_array, checked_format
from fpcli.errors import AnalysisError, ParameterError
from fpcli.fingerprint import Fingerprint
from fpcli.params import AnalysisParams, as_number
from fpcli.results import TrackResult
from fpcli.store import FingerprintStore, Record
from fpcli.store.records import stream_identity
from fpcli.streaming import StreamingAnalyzer


class LiveFingerprint:
    """A streaming fingerprint that grows as audio arrives.

    Example (a player)::

        live = LiveFingerprint(44100, 2)
        def on_audio(block):              # float, int16 or int32 PCM, shape (frames, channels)
            live.push(block)
        live.snapshot().values["tempo_bpm"], live.snapshot().confidence["tempo_bpm"]
        with FingerprintStore.open() as store:   # when the track changes
            live.save(store, "radio-2026-11-25T18:00")

    ``expected_seconds`` (the track's length, when known; None, 0 or infinity:
    unknown) lets the confidence use the share heard, and is the duration a result
    reports before ``finish()``; a snapshot's ``complete`` is False until then.
    """

    def __init__(self, samplerate: int, channels: int, params: AnalysisParams | None = None, *,
                 expected_seconds: float | None = None) -> None:
        self.samplerate, self.channels = samplerate, channels = checked_format(samplerate, channels)
        self._analyzer = StreamingAnalyzer(samplerate, channels, params)
        self._expected_s = _known_length(expected_seconds, samplerate)
        self._analyzer.expected_frames = None if self._expected_s is None else int(self._expected_s * samplerate)
        self._final: Fingerprint | None = None

    @property
    def seconds(self) -> float:
        """Seconds of audio pushed so far."""
        return self._analyzer.pipeline.samples / self.samplerate

    @property
    def duration_s(self) -> float:
        """The track's length in seconds (``expected_seconds`` until ``finish``, see
        ``track_length_s``)."""
        return track_length_s(self.seconds, self._expected_s, finished=self._final is not None)

    def push(self, block: np.ndarray) -> None:
        """Add audio: (frames, channels), or (frames,) for mono. Samples are floats
        scaled to +-1, or signed integer PCM scaled by its full scale (int16 by 32768,
        int32 by 2**31); other integer types (unsigned, int8, int64) are refused, their
        scale being a guess."""
        samples = _float_samples(block_array(block))
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2:
            raise ParameterError(f"a block of shape {samples.shape}: expected (frames, {self.channels}), or "
                                 "(frames,) for mono", "block")
        if samples.shape[1] != self.channels:
            raise ParameterError(f"a block of {samples.shape[1]} channels pushed into a {self.channels}-channel "
                                 "fingerprint", "block")
        with one_blas_thread():
            self._analyzer.push(samples)

    def snapshot(self) -> Fingerprint:
        """The fingerprint of what has been heard (the final one after ``finish``)."""
        return self._final.copy() if self._final is not None else self._analyzer.snapshot()

    def finish(self) -> Fingerprint:
        """The end of the track: the fingerprint becomes complete."""
        if self._final is None:
            with one_blas_thread():
                self._final = self._analyzer.finish()
        return self._final.copy()

    def result(self, path: str, *, status: str = "ok", partial_reason: str | None = None,
               format: str = "STREAM", subtype: str = "") -> TrackResult:
        """The current snapshot as a ``TrackResult`` for ``path`` (or ``stream:NAME``)."""
        return TrackResult(path=path, status=status, duration_s=self.duration_s, samplerate=self.samplerate,
                           channels=self.channels, format=format, subtype=subtype, partial_reason=partial_reason,
                           streaming=self.snapshot())

    def save(self, store: FingerprintStore, name: str) -> Record:
        """Store the current snapshot under ``name`` (a partial record until ``finish``).
        An AnalysisError, and nothing stored, while there is nothing to keep: no audio
        pushed, or before ``finish`` less than one analysis frame (a record of nothing
        would stand in the store as a preview of the stream)."""
        if not isinstance(name, str):
            raise ParameterError(f"{name!r}: a stream's name is a string", "name")
        identity = stream_identity(name)
        if not self._holds_something():
            raise AnalysisError(f"{name!r}: nothing measured yet ({self.seconds:.3f} s of audio pushed, less than "
                                "one analysis frame): no record of nothing is stored")
        return store.save(identity, self.result(identity.path))

    def _holds_something(self) -> bool:
        """Whether a record of this fingerprint would say anything: audio was pushed, and
        it measured a value or was finished (a whole track too short to measure is a fact)."""
        return self.seconds > 0 and (self._final is not None or _measured(self.snapshot()))


def track_length_s(heard_s: float, length_s: float | None, *, finished: bool) -> float:
    """A track's duration in seconds, as ``analyze`` reports it: what was heard once the
    end was reached or when the length is not known (None); else ``length_s``, or what
    was heard when that is more (a stream that runs past the length its header states)."""
    if finished or length_s is None:
        return heard_s
    return max(length_s, heard_s)


def _measured(fingerprint: Fingerprint) -> bool:
    """Whether ``fingerprint`` holds any value (none before one analysis frame is heard)."""
    return any(value is not None for value in fingerprint.values.values())


# The full scale of the integer PCM types a player hands over: float = int / full scale.
PCM_FULL_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def _float_samples(samples: np.ndarray) -> np.ndarray:
    """Integer PCM (int16, int32) as float32 scaled to +-1; a ParameterError naming
    any other integer type; anything else as it is (the analyzer checks it)."""
    full_scale = PCM_FULL_SCALE.get(samples.dtype.newbyteorder("="))  # big-endian int16 is int16 too
    if full_scale is not None:
        # A power of two: the division is exact in float32 (int32's low bits round).
        return samples.astype(np.float32) / np.float32(full_scale)
    if samples.dtype.kind in "iu":
        raise ParameterError(f"samples of type {samples.dtype}: give floats scaled to +-1, or int16 or int32 "
                             "PCM (the full scale of other integer types is not known)", "block")
    return samples


def _known_length(expected_seconds: float | None, samplerate: int) -> float | None:
    """The expected length in seconds (None: unknown, for None, less than a frame, or a
    length whose frames no float can count, infinity or 1e308 s), or a ParameterError
    for a negative length, NaN or a non-number."""
    if expected_seconds is None:
        return None
    seconds = as_number(expected_seconds)
    if seconds is None or not seconds >= 0:
        raise ParameterError(f"{expected_seconds!r}: a length in seconds of at least 0 (or None: unknown)",
                             "expected_seconds")
    frames = seconds * samplerate
    return None if math.isinf(frames) or int(frames) == 0 else seconds


Snapshot = Callable[[TrackResult], None]


def follow(reader: AudioReader, path: str, *, params: AnalysisParams | None = None, every_s: float | None = None,
           max_seconds: float | None = None, on_snapshot: Snapshot = lambda result: None,
           keep: Callable[[TrackResult], None] = lambda result: None) -> TrackResult:
    """Fingerprint ``reader`` as it is read: every ``every_s`` seconds of audio call
    ``on_snapshot`` and ``keep`` (which saves a partial record) with the snapshot; stop
    after ``max_seconds`` (a preview) or at the end (complete). Returns the last result.
    A Ctrl-C stops the reading (``reader.stop()``: a pipe within a fraction of a
    second), keeps (``keep``) what was heard as a partial record when it measured
    anything, then raises KeyboardInterrupt."""
    if every_s is not None and not every_s > 0:
        raise ParameterError(f"{every_s}: a positive number of seconds", "every_s")
    max_seconds = checked_max_seconds(max_seconds)
    info = reader.info
    live = LiveFingerprint(info.samplerate, info.channels, params, expected_seconds=reader.stated_seconds)
    started = time.perf_counter()
    shown = [0.0]   # the seconds of the last snapshot shown

    def show(result: TrackResult) -> None:
        shown[0] = _heard_s(result)
        on_snapshot(result)

    try:
        with _noticing_interrupts(reader.stop) as interrupted:
            whole = _push_blocks(reader, live, path, started, every_s, max_seconds, show, keep)
        if interrupted():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Nothing measured (no audio, or less than one analysis frame): no record of
        # nothing, which would stand in the store as a preview of the stream.
        if _measured(live.snapshot()):
            last = _result(live, reader, path, started)
            keep(last)
            if every_s is not None and _heard_s(last) > shown[0]:
                on_snapshot(last)   # what was stored is shown (a snapshot held for more audio was not)
        raise
    if whole:
        live.finish()
    final = _result(live, reader, path, started)
    keep(final)
    return final


def _push_blocks(reader: AudioReader, live: LiveFingerprint, path: str, started: float, every_s: float | None,
                 max_seconds: float | None, on_snapshot: Snapshot, keep: Callable[[TrackResult], None]) -> bool:
    """Push the reader's blocks into ``live``, with a snapshot every ``every_s``
    seconds; True when the stream ended (a file also when it ended exactly at
    ``max_seconds``), False when ``max_seconds`` stopped it. A mark where the final
    result follows for the same second gives no snapshot of its own: at ``max_seconds``,
    and at the end of the audio read so far, where the stream may end: its line waits
    for more audio (a mark there printed the last second twice, as a snapshot and as
    the final result: at the length a header states, on a stream that states none,
    and on one cut short of what its header states)."""
    info = reader.info
    next_mark = every_s
    held: TrackResult | None = None   # stored, its line held back until more audio comes
    blocks = iter(reader)
    for block in blocks:
        while block.size:
            if held is not None:   # more audio came: no final result for that second
                on_snapshot(held)
                held = None
            pushed = int(round(live.seconds * info.samplerate))
            # The frame of the nearest mark (a snapshot, the end of a preview), kept a float
            # until it falls inside this block: a mark of 1e308 s is an infinite frame count.
            target = min((x * info.samplerate for x in (next_mark, max_seconds) if x is not None), default=math.inf)
            take = len(block) if target - pushed >= len(block) else max(int(round(target)) - pushed, 1)
            live.push(block[:take])
            reader.heard(pushed + min(take, len(block)))   # the snapshot's partial: what it heard
            block = block[take:]
            stopping = max_seconds is not None and live.seconds >= max_seconds - 1e-9
            if next_mark is not None and live.seconds >= next_mark - 1e-9:
                if not stopping:  # else the final result follows for the same second
                    snapshot = _result(live, reader, path, started)
                    keep(snapshot)  # stored before it is shown: a kill -9 after the line keeps what it says
                    if not block.size:   # the end of the audio read so far: the stream may end here
                        held = snapshot
                    else:
                        on_snapshot(snapshot)
                next_mark += every_s or 0.0
            if stopping:
                return not block.size and ended_here(reader, blocks)
    return True


@contextlib.contextmanager
def _noticing_interrupts(stop: Callable[[], None]) -> Iterator[Callable[[], bool]]:
    """Yield "was Ctrl-C pressed meanwhile?"; inside, a Ctrl-C only notes itself and
    calls ``stop`` (which must only set flags), and the caller raises KeyboardInterrupt
    once the reading has stopped. Raised where the main thread happens to be, the
    interrupt could land in a decoder's read callback (PyAV reading a pipe calls back
    into Python), which prints it as a traceback, swallows it and reads on to the
    stream's end. Only where Ctrl-C would raise KeyboardInterrupt (Python's default
    handler, in the main thread: only it receives signals) is the handler replaced; a
    program's own handler is left alone."""
    received = False
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if on_main_thread else None
    if previous is not signal.default_int_handler:
        yield lambda: received
        return

    def note_and_stop(signum: int, frame: Any) -> None:
        nonlocal received
        received = True
        stop()

    signal.signal(signal.SIGINT, note_and_stop)
    try:
        yield lambda: received
    finally:
        signal.signal(signal.SIGINT, previous)


def _heard_s(result: TrackResult) -> float:
    """The seconds of audio a result heard."""
    return result.streaming.seconds if result.streaming is not None else 0.0


def _result(live: LiveFingerprint, reader: AudioReader, path: str, started: float) -> TrackResult:
    info = reader.info
    result = live.result(path, status="partial" if reader.partial else "ok", partial_reason=reader.partial_reason,
                         format=info.format, subtype=info.subtype)
    duration_s = track_length_s(live.seconds, _known_length_s(reader), finished=live.snapshot().complete)
    return dataclasses.replace(result, duration_s=duration_s, seconds_taken=time.perf_counter() - started)


def _known_length_s(reader: AudioReader) -> float | None:
    """The length in seconds a result reports before the end is heard (None: unknown).
    A file's as its header gives it, stated or estimated (as ``analyze`` reports a
    preview's); a stream's only as its header states it (a WAV's data size, a FLAC's
    sample count), the length a stream is held to: on a redirected file FFmpeg also
    estimates one from the bytes there, which a search's duplicate rule must not take
    for a stated length."""
    if reader.stated_seconds is None or (reader.is_stream and not reader.length_exact):
        return None
    return reader.stated_seconds
