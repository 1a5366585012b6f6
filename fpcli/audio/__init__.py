"""Decode audio files in float32 blocks with a read loop that trusts no header.

Two back ends sit behind ``AudioReader``: libsndfile (``sndfile.py``: WAV, FLAC, Ogg
Vorbis/Opus, MP3, AIFF), tried first wherever it can open a file, and FFmpeg through
PyAV (``pyav.py``: AAC/ALAC in MP4, WMA, APE, WavPack, Musepack, Matroska...), used for
extensions libsndfile never reads, for files libsndfile refuses, and for those it would
read short of their end (a chained Ogg, a FLAC whose header understates its length).

A file is ``partial`` only on evidence of damage: a decoding error after some audio
(the audio before it is kept, and a damaged spot is read past: FFmpeg skips damaged
packets, and goes on where libsndfile stopped), a decoded length that differs by more than 0.1 s from
a length the file states exactly (WAV/FLAC/AIFF frame counts, an MP3 Xing/Info or
VBRI frame count, an MP4/Matroska/APE/WavPack duration; never a bit-rate estimate;
on stdin and from FFmpeg (an MP3 or AIFF named .m4a) the same counts, read from the
header itself unless a streaming writer left its placeholder), an Ogg stream without
its end-of-stream page, or NaN/Inf samples (replaced by silence). Files the analyzers
cannot work with raise ``AudioReadError``: sample rates outside 8-768 kHz, float
samples beyond ±1e6 (not audio scaled to ±1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO, cast

import numpy as np

from fpcli.audio import headers
from fpcli.audio.base import PARTIAL_TOLERANCE_S, AudioInfo, DecodeFailure, Source, StoppablePipe, check_info
from fpcli.audio.pyav import AvMissing, AvSource, NotAv, is_av_path
from fpcli.audio.raw import RAW_FORMATS, CdImageSource, RawSource
from fpcli.audio.sndfile import RIFF_WAVE_FORMATS, NotSndfile, SndfileSource, check_readable
from fpcli.errors import AudioReadError, ParameterError
from fpcli.extensions import AUDIO_EXTENSIONS
from fpcli.params import as_number

__all__ = [
    "AUDIO_EXTENSIONS", "DEFAULT_BLOCK_FRAMES", "MAX_FLOAT_PEAK", "PARTIAL_TOLERANCE_S",
    "AudioInfo", "AudioReadError", "AudioReader", "RAW_FORMATS", "mixdown", "open_stream", "probe",
]

DEFAULT_BLOCK_FRAMES = 131072
# The most end padding an MP3 encoder tag can state (LAME: 12 bits of frames).
MAX_MP3_PADDING = 4095
# Float files hold any value; music scaled to ±1 peaks near 1 (a few units after a
# lossy codec's overshoot). Far beyond, the file is not audio-scaled and the
# analyzers' squares and sums would overflow float32 (1e18 squared is inf).
MAX_FLOAT_PEAK = 1e6
EMPTY_STREAM = "the stream was empty: no bytes came on stdin"


def open_stream(stream: BinaryIO, *, raw_format: str | None = None, samplerate: int = 0, channels: int = 0,
                block_frames: int = DEFAULT_BLOCK_FRAMES) -> AudioReader:
    """A reader of a pipe (stdin): raw PCM when ``raw_format`` is given, else any
    container FFmpeg can read from a pipe (WAV, FLAC, Ogg, MP3, ...). Its ``stop()``
    ends the stream within a fraction of a second, even while the pipe is silent; a
    Ctrl-C while the header is awaited raises KeyboardInterrupt."""
    pipe = StoppablePipe(stream)
    readable = cast(BinaryIO, pipe)  # it reads, and says it seeks or not, as the stream would
    source: Source
    if raw_format is not None:
        try:
            source = RawSource(readable, raw_format=raw_format, samplerate=samplerate, channels=channels)
        except ValueError as exc:
            raise AudioReadError("-", str(exc)) from None
    else:
        try:
            source = AvSource("-", stream=readable, has_input=pipe.has_input)
        except NotAv as exc:
            if pipe.interrupted:  # the Ctrl-C ended the header, not bad bytes
                raise KeyboardInterrupt from None
            if not pipe.bytes_read:  # FFmpeg calls that "invalid data"
                raise AudioReadError("-", EMPTY_STREAM) from None
            raise AudioReadError("-", f"not a decodable audio stream ({exc})") from None
        check_info(source.info)
    return AudioReader.from_stream(source, block_frames=block_frames, pipe=pipe)


def probe(path: str | os.PathLike) -> AudioInfo:
    """Header facts of ``path``; raises ``AudioReadError`` if it is not decodable."""
    source = open_source(path)
    source.close()
    return source.info


def open_source(path: str | os.PathLike, *, cd_byte_order: str | None = None) -> Source:
    """The back end that can decode ``path``, opened; ``AudioReadError`` if none can, or
    if the header's rate or channel count is beyond what the analyzers handle.
    ``cd_byte_order`` ("<" or ">"): ``path`` is raw CD audio (a BIN/CUE image)."""
    path = os.fspath(path)
    check_readable(path)
    source: Source
    if cd_byte_order is not None:
        source = CdImageSource(path, cd_byte_order)
    elif is_av_path(path):
        try:
            source = AvSource(path)
        except AvMissing as exc:
            raise AudioReadError(path, str(exc)) from None
        except NotAv as exc:
            raise AudioReadError(path, f"not a decodable audio file ({exc})") from None
    else:
        try:
            source = _all_audio(SndfileSource(path))
        except NotSndfile as sndfile_refusal:
            try:
                source = AvSource(path)
            except NotAv:
                # libsndfile's reason: the extension says it should have read the file.
                raise AudioReadError(path, f"not a decodable audio file ({sndfile_refusal})") from None
    try:
        check_info(source.info)
    except AudioReadError:
        source.close()
        raise
    return source


def _all_audio(source: SndfileSource) -> Source:
    """FFmpeg where libsndfile would stop short of the audio the file holds and call it
    complete: a chained Ogg file (Ogg files one after another), of which it reads the
    first only, a FLAC whose STREAMINFO states fewer samples than its frames hold,
    which it reads no further than that count, and likewise an MP3 whose Xing frame
    states fewer bytes than it holds (MP3 files joined) (a stream, read by FFmpeg, was partial
    with all its audio where the file was "ok" with the stated part), and a WAV whose
    data size is 0, the placeholder of a writer that never came back to fill it in (a
    recorder that crashed): libsndfile reads no frame of it, FFmpeg reads the data to
    the file's end, as it does on stdin. ``source`` for any other file, or if FFmpeg
    cannot open it (its ``truncation`` then names a chain)."""
    lengths = source.flac_lengths
    understated = lengths is not None and lengths.stated is not None and (lengths.held or 0) > lengths.stated
    understated |= source.info.subtype.startswith("MPEG_LAYER") and source.length_exact and \
        headers.mp3_holds_more_than_stated(source.path)
    unfinished_wav = source.info.format in RIFF_WAVE_FORMATS and source.info.frames == 0
    if not (understated or unfinished_wav) and (source.info.format != "OGG"
                                                or len(headers.ogg_links(source.path)) < 2):
        return source
    try:
        chained = AvSource(source.path)
    except NotAv:
        return source
    source.close()
    return chained


# A block is held in memory, decoded (float32, every channel): 2**24 frames are 128 MiB
# of stereo; 10**12 asked for 3.6 TiB (a MemoryError, not an answer).
MAX_BLOCK_FRAMES = 2**24
# ... and of every channel: a block is at most this many samples (4 MiB of float32), so
# a file of 1,024 channels reads 1,024 frames at a time. A full default block of them
# was 512 MiB, and a reading process peaked at 1.16 GB on a 3 s file.
MAX_BLOCK_SAMPLES = 2**20


def checked_block_frames(block_frames: int) -> int:
    """``block_frames`` (frames a block holds), or a ParameterError outside 1..MAX_BLOCK_FRAMES."""
    if not 0 < (as_number(block_frames, int) or 0) <= MAX_BLOCK_FRAMES:
        raise ParameterError(f"{block_frames!r}: a whole number of frames from 1 to {MAX_BLOCK_FRAMES}",
                             "block_frames")
    return int(block_frames)


def _block_frames_for(block_frames: int, channels: int) -> int:
    """The frames of a block as asked, fewer where the channels would make it more
    than MAX_BLOCK_SAMPLES samples."""
    return max(1, min(block_frames, MAX_BLOCK_SAMPLES // max(channels, 1)))


# The longest length a header may state and be believed as a track's duration: 31
# years, the store's bound on any duration (store.limits.VALUE_LIMIT). Past it the
# header is damaged; a full read still finds the file partial against it.
MAX_STATED_S = 1e9


class AudioReader:
    """Iterate a file as float32 blocks of shape (frames, channels).

    ``frames_read``, ``partial`` and ``partial_reason`` describe what was decoded (see
    the module docstring for what makes a file partial): NaN/Inf samples as soon as a
    block holding them is handed on (so a preview or a snapshot says so; one that stops
    inside such a block counts all of it), the rest after iteration; a file that yields
    no audio at all raises ``AudioReadError``. ``expected_frames`` is the length
    the header claims and ``length_exact`` whether that claim is a stated count.

    Example::

        reader = AudioReader("track.flac")
        for block in reader:          # block: float32 (n, channels), n <= block_frames
            ...
        reader.partial, reader.frames_read
    """

    def __init__(self, path: str | os.PathLike, *, block_frames: int = DEFAULT_BLOCK_FRAMES,
                 start_s: float = 0.0, end_s: float | None = None, cd_byte_order: str | None = None):
        """``start_s`` / ``end_s``: read only that window of the file, in seconds (a
        track of an album image); ``end_s`` None reads to the end. ``cd_byte_order``
        ("<" little-endian, ">" big-endian): the file is raw CD audio, 16-bit stereo
        at 44.1 kHz without a header (the image of a BIN/CUE pair)."""
        checked_block_frames(block_frames)
        if not isinstance(path, (str, bytes, os.PathLike)):   # None, 5: a TypeError from os.fspath
            raise ParameterError(f"{path!r}: a path (str or os.PathLike)", "path")
        self.path = os.fsdecode(path)   # bytes too (an error's path, the info's, are str)
        self._cd_byte_order = cd_byte_order
        source = open_source(self.path, cd_byte_order=cd_byte_order)
        source.close()
        self.info: AudioInfo = source.info
        self.block_frames = _block_frames_for(block_frames, self.info.channels)
        rate = self.info.samplerate
        self._start = max(int(round(start_s * rate)), 0)
        self._end = None if end_s is None else max(int(round(end_s * rate)), self._start)
        whole = source.expected_frames
        # A length the file does not state (0) leaves a window's unknown too: the last CUE
        # track of such a FLAC was "expected_frames: -264600" (a fault of fpcli).
        self.expected_frames: int = (self._end if self._end is not None else whole) - self._start \
            if whole > 0 or self._end is not None else 0
        if whole > 0 and self._end is not None and self._end > whole:
            self.expected_frames = max(whole - self._start, 0)
        self.length_exact: bool = source.length_exact
        self._opened: Source | None = None  # set by from_stream: a pipe read once
        self._pipe: StoppablePipe | None = None
        self._opened_used = False   # whether the stream of from_stream was read
        self._restart()

    def _restart(self) -> None:
        """What a read of the file finds starts afresh (a second pass counted its frames
        on top of the first's and called an intact file partial)."""
        self.stopped = False
        self.frames_read = 0
        self._damage: list[str] = []  # why the file is partial, NaN/Inf samples apart
        self._reading: Source | None = None   # the source being read (its damage is read live)
        self._source_damage: list[str] = []   # what the last source read found (kept: a reader is pickled)
        self.nonfinite_samples = 0
        self._reset_heard()

    @classmethod
    def from_stream(cls, source: Source, *, block_frames: int = DEFAULT_BLOCK_FRAMES,
                    pipe: StoppablePipe | None = None) -> AudioReader:
        """A reader of an already opened source that cannot be opened twice (a pipe:
        stdin), reading ``pipe`` when given. It can be iterated once."""
        reader = cls.__new__(cls)
        reader.path, reader.info = source.info.path, source.info
        reader.block_frames = _block_frames_for(block_frames, source.info.channels)
        reader._start, reader._end, reader._cd_byte_order = 0, None, None
        reader.expected_frames, reader.length_exact = source.expected_frames, source.length_exact
        reader.frames_read, reader._damage, reader.nonfinite_samples = 0, [], 0
        reader._reading, reader._source_damage = None, []
        reader._reset_heard()
        reader._opened, reader._pipe, reader.stopped = source, pipe, False
        reader._opened_used = False
        return reader

    @property
    def stated_seconds(self) -> float | None:
        """The length the header states, in seconds; None when it states none, or one no
        file holds (beyond MAX_STATED_S: a RF64 header claiming 2**61 bytes). Such a
        length as a preview's duration made a record the store could not read back."""
        if self.expected_frames <= 0:
            return None
        seconds = self.expected_frames / self.info.samplerate
        return seconds if seconds <= MAX_STATED_S else None

    def _reset_heard(self) -> None:
        self._heard: int | None = None      # frames the consumer used (``heard``); None: all decoded
        self._last_start = 0                # the first frame of the last block handed on
        self._nonfinite_before = 0          # non-finite samples in the blocks before it
        self._last_nonfinite: np.ndarray | None = None  # (frames,) running count within it; None: none

    def heard(self, frames: int) -> None:
        """The consumer used the first ``frames`` frames decoded (a preview or a snapshot
        that ends inside the last block handed on): ``partial`` counts the non-finite
        samples among those only. A 0.5 s preview was partial for a NaN at 3.1 s, in
        the same decoded block."""
        self._heard = frames

    def _nonfinite_heard(self) -> int:
        """The non-finite samples replaced among the frames heard."""
        if self._heard is None or self._last_nonfinite is None or self._heard >= self.frames_read:
            return self.nonfinite_samples
        inside = self._heard - self._last_start
        return self._nonfinite_before + (int(self._last_nonfinite[inside - 1]) if inside > 0 else 0)

    @property
    def partial(self) -> bool:
        """Whether what was decoded (and heard) so far shows damage."""
        return bool(self._damages() or self._nonfinite_heard() or self._overrun())

    @property
    def partial_reason(self) -> str | None:
        """Why the file is partial (reasons joined by "; "), None when it is not."""
        replaced = self._nonfinite_heard()
        overrun = self._overrun()
        return "; ".join(self._damages() + ([f"{replaced} non-finite samples were replaced by silence"]
                                            if replaced else []) + ([overrun] if overrun else [])) or None

    def __getstate__(self) -> dict[str, object]:
        """A reader pickled in the middle of a read (a process pool's result) keeps what
        its source found so far, not the open source."""
        state = self.__dict__.copy()
        state["_source_damage"], state["_reading"] = self._source_reasons(), None
        return state

    def _damages(self) -> list[str]:
        """The reasons found so far, the source's own as it reads (a damaged spot read
        past, packets skipped): a preview or a snapshot that stops after one is partial."""
        return self._damage + self._source_reasons()

    def _source_reasons(self) -> list[str]:
        """The damage the source being read has found so far, or the last one found."""
        if self._reading is None:
            return self._source_damage
        return list(getattr(self._reading, "damage", ()))

    def _overrun(self) -> str | None:
        """Why more audio was heard than the header states, before the end of the read
        says so (``_check_complete``): snapshots of two files joined on a pipe said
        "ok" past the first one's stated length."""
        expected, heard = self.expected_frames, self.frames_read if self._heard is None else self._heard
        if self._damages() or not self.length_exact or expected <= 0 or self._end is not None or \
                heard - expected <= PARTIAL_TOLERANCE_S * self.info.samplerate:
            return None
        return f"header says {expected / self.info.samplerate:.2f} s, decoded {heard / self.info.samplerate:.2f} s"

    @property
    def is_stream(self) -> bool:
        """Whether this reader reads a stream opened once (stdin: ``from_stream``),
        which cannot be read again or read ahead of without waiting for it."""
        return self._opened is not None

    def stop(self) -> None:
        """End the iteration early (safe in a signal handler: it only sets flags). A
        pipe ends within a fraction of a second, its audio already read still decoded;
        a file after the block in hand. What was read is then neither checked for
        completeness nor marked partial for its length: its end was not reached (NaN/Inf
        samples in it still make it partial)."""
        self.stopped = True
        if self._pipe is not None:
            self._pipe.stop()

    def __iter__(self) -> Iterator[np.ndarray]:
        """The blocks; a KeyboardInterrupt that ended a pipe inside the decoder (which
        would take it for the stream's end) is raised again after the last one. A file
        can be read again, from its start; a stream (``from_stream``) once only."""
        if self._opened is None:
            self._restart()
        elif self._opened_used:
            raise ParameterError("a stream can be read once: this reader has read it (open a new one)", "reader")
        self._opened_used = True
        source = self._opened or open_source(self.path, cd_byte_order=self._cd_byte_order)
        self._reading = source
        try:
            if self._opened is None:
                self._check_unchanged(source.info)
            try:
                for block in self._without_end_padding(self._window(source)):
                    block = self._sanitized(block)
                    self.frames_read += len(block)
                    yield block
                    if self.stopped and self._pipe is None:
                        return
            except DecodeFailure as exc:
                if not self.stopped:  # a pipe cut by a stop may end mid-frame: no damage
                    if self.frames_read == 0:
                        raise AudioReadError(self.path, f"decoding failed: {exc}") from None
                    self._mark_partial(f"decoding failed after {self._seconds_read():.2f} s: {exc}")
            if self._pipe is not None and self._pipe.interrupted:
                raise KeyboardInterrupt
            if self.stopped:
                return
            if self.frames_read == 0:
                empty = self._pipe is not None and not self._pipe.bytes_read
                raise AudioReadError(self.path, EMPTY_STREAM if empty else "no audio frames could be decoded")
            self._check_complete(source)
        finally:
            if self._reading is source:   # not a read begun since and left unfinished (its close comes later)
                self._source_damage, self._reading = self._source_reasons(), None
            source.close()

    def _check_unchanged(self, now: AudioInfo) -> None:
        """AudioReadError unless the file, opened again to be read, states what it stated
        when the reader was made. A file rewritten in between (by a tagger or an encoder)
        was decoded as if at the first header's rate and channels: a 440 Hz tone was
        measured at 880 Hz, and the result called complete."""
        def facts(info: AudioInfo) -> str:
            return f"{info.format} {info.subtype}, {info.samplerate} Hz, {info.channels} channels, {info.frames} frames"

        if facts(now) != facts(self.info):
            raise AudioReadError(self.path, f"the file changed after it was opened ({facts(self.info)} then, "
                                 f"{facts(now)} now): open it again")

    def _without_end_padding(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """``blocks``, less an MP3 stream's end padding. FFmpeg trims the padding its
        encoder tag states only where it can seek: on stdin a 10.0 s MP3 decoded
        10.006 s, the padding analysed as audio (the file read 10.0 s). Past the count
        its tag states, a stream's blocks are held back until it ends (padding,
        dropped) or more than MAX_MP3_PADDING frames, or than the partial tolerance,
        came (more audio than stated: kept, and judged as before)."""
        if not (self.is_stream and self.length_exact and self.expected_frames > 0 and self._start == 0
                and self._end is None and self.info.subtype.startswith("MPEG_LAYER")):
            yield from blocks
            return
        left = self.expected_frames
        # Within the tolerance a longer stream was never partial: at 8 kHz 4,095 frames
        # are 0.5 s, and an MP3 joined on after the first would have passed for padding.
        most = min(MAX_MP3_PADDING, int(PARTIAL_TOLERANCE_S * self.info.samplerate))
        held: list[np.ndarray] | None = []
        for block in blocks:
            if held is None:
                yield block
                continue
            stated, block = block[:left], block[left:]
            left -= len(stated)
            if len(stated):
                yield stated
            if len(block):
                held.append(block)
                if sum(len(b) for b in held) > most:
                    yield from held
                    held = None

    def _window(self, source: Source) -> Iterator[np.ndarray]:
        """The source's blocks from ``_start`` to ``_end``: seeking where the decoder
        seeks exactly, else decoding and dropping what comes before."""
        skip = self._start
        seek = getattr(source, "seek", None)
        if skip and seek is not None and seek(skip):
            skip = 0
        left = None if self._end is None else self._end - self._start
        for block in source.blocks(self.block_frames):
            if skip:
                dropped = min(skip, len(block))
                block, skip = block[dropped:], skip - dropped
                if not len(block):
                    continue
            if left is not None:
                block = block[:left]
                left -= len(block)
            if len(block):
                yield block
            if left == 0:
                return

    def _sanitized(self, block: np.ndarray) -> np.ndarray:
        """``block`` (n, channels) float32 with NaN/Inf replaced by 0 and counted at once
        (``partial`` says so from this block on: a preview or a snapshot of it heard
        them); ``AudioReadError`` if its samples are far beyond audio scale."""
        if block.size == 0:
            return block
        self._last_start, self._nonfinite_before, self._last_nonfinite = \
            self.frames_read, self.nonfinite_samples, None
        low, high = float(block.min()), float(block.max())  # NaN if any sample is NaN
        if not (np.isfinite(low) and np.isfinite(high)):
            per_frame = np.count_nonzero(~np.isfinite(block.reshape(len(block), -1)), axis=1)
            self._last_nonfinite = np.cumsum(per_frame)
            self.nonfinite_samples += int(self._last_nonfinite[-1])
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
            low, high = float(block.min()), float(block.max())
        peak = max(high, -low)
        if peak > MAX_FLOAT_PEAK:
            raise AudioReadError(self.path, f"float samples up to {peak:.0e}: not audio scaled to ±1")
        return block

    def _seconds_read(self) -> float:
        return self.frames_read / self.info.samplerate

    def _check_complete(self, source: Source) -> None:
        """After a full read: mark the file partial on any evidence of damage (a
        decoding failure already did; NaN/Inf samples as they were replaced)."""
        expected = self.expected_frames
        if not self._damages() and self.length_exact and expected > 0:
            if abs(expected - self.frames_read) > PARTIAL_TOLERANCE_S * self.info.samplerate:
                self._mark_partial(
                    f"header says {expected / self.info.samplerate:.2f} s, "
                    f"decoded {self._seconds_read():.2f} s"
                )
        if not self._damages() and self._end is None:  # the file's end was read
            reason = source.truncation(self._seconds_read())
            if reason:
                self._mark_partial(reason)

    def _mark_partial(self, reason: str) -> None:
        self._damage.append(reason)


def mixdown(block: np.ndarray) -> np.ndarray:
    """Mono = mean of all channels. (frames, channels) -> (frames,) float32.

    The channels are added one column at a time, then scaled: each frame's value is
    the same whatever the block's length. A matrix product (numpy's reduction over a
    length-2 axis is ~40x slower than either) took another BLAS path for a block of
    one frame, 1 ulp apart at 3 channels or more, which moved spectral_flatness by up
    to 10 % on some frames. For stereo, (L + R) / 2 is the product's value exactly.
    Three channels or more are added in float64: in float32 the rounding of the running
    sum is noise, and mono music copied into 64 channels had a spectral flatness of
    3.1e-05 for its 1.7e-05 (a tonal frame's flatness lives in its near-empty bins)."""
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    if channels == 2:
        total = block[:, 0] + block[:, 1]
        total *= np.float32(0.5)
        return total
    wide = block[:, 0].astype(np.float64)
    for channel in range(1, channels):
        wide += block[:, channel]
    wide *= 1.0 / channels
    return wide.astype(np.float32)
