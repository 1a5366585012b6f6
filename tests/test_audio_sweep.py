"""Three ways the reading of audio gave a wrong result without a word: WAV files joined
on stdin (the next file's header and samples read as audio), NaN/Inf samples inside a
preview or a snapshot ("ok"), and a FLAC file whose STREAMINFO understates its length
(the rest dropped, where the same bytes on stdin were read whole and called partial)."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from fpcli import synth
from fpcli.analyze import Want, analyse
from fpcli.audio import AudioReader, headers, open_source, open_stream
from fpcli.audio.pyav import WavLinks
from fpcli.audio.sndfile import SndfileSource
from tests.conftest import PipeSink, av_encoded, pipe_carrying, read_stream, write

SR = 44100


def encoded(x: np.ndarray, sr: int, container: str, codec: str, sink: Any) -> bytes:
    """``x`` (n, 2) encoded by FFmpeg into ``sink``: a pipe leaves a WAV's sizes as
    placeholders (0xFFFFFFFF), a seekable sink gets them filled in."""
    return av_encoded(as_int16(x), sr, container, codec, sink)


def as_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)


def pipe_wav(x: np.ndarray, sr: int) -> bytes:
    return encoded(x, sr, "wav", "pcm_s16le", PipeSink())


def music(seconds: float, sr: int = SR, seed: int = 1) -> np.ndarray:
    return synth.music_like(seconds, sr, seed=seed)


# -- WAV files joined on stdin -----------------------------------------------------------


@pytest.mark.parametrize("how", ["pipe", "seekable"])
def test_wavs_joined_on_stdin_at_another_rate_are_partial_and_say_why(how):
    """``cat a44.wav b22.wav |`` (sizes left as a pipe's placeholders) read as 1.5 s at
    44.1 kHz, "ok": the second file's header and its 22.05 kHz samples were audio of the
    first. Now the first file is read, and the change stops the reading as in FLAC."""
    first = music(1.0)
    reader, decoded = read_stream(pipe_wav(first, SR) + pipe_wav(music(1.0, 22050, seed=2), 22050), how)
    assert reader.partial_reason == "decoding failed after 1.00 s: the stream changes to 22050 Hz, 2 channels"
    np.testing.assert_array_equal(decoded, as_int16(first) / np.float32(32768))


@pytest.mark.parametrize("how", ["pipe", "seekable"])
def test_wavs_joined_on_stdin_in_one_format_are_read_file_by_file(how):
    """Two copies of one pipe-written WAV read 19 frames too many (the second RIFF
    header as audio); three in a row now read as exactly their samples, "ok"."""
    x = music(0.5)
    reader, decoded = read_stream(pipe_wav(x, SR) * 3, how)
    assert not reader.partial, reader.partial_reason
    np.testing.assert_array_equal(decoded, np.tile(as_int16(x), (3, 1)) / np.float32(32768))


@pytest.mark.parametrize("how", ["pipe", "seekable"])
def test_sized_wavs_joined_on_stdin_are_held_to_the_first_files_length(how):
    """After a sized WAV's data FFmpeg skipped the rest of the stream: the second file
    went unheard and the first was "ok". Now both are read, and the length the first
    header states is held to, as for joined FLAC streams."""
    x = music(1.0)
    reader, decoded = read_stream(encoded(x, SR, "wav", "pcm_s16le", io.BytesIO()) * 2, how)
    assert reader.partial_reason == "header says 1.00 s, decoded 2.00 s"
    np.testing.assert_array_equal(decoded, np.tile(as_int16(x), (2, 1)) / np.float32(32768))


@pytest.mark.parametrize("how", ["pipe", "seekable"])
def test_a_sized_wav_whose_samples_hold_riff_wave_is_read_whole(how):
    """The bytes "RIFF....WAVE" inside a sized file's samples were taken for the next
    file's header: 4 s on stdin read 2 s, "partial" (by path 4 s, "ok"). Within the
    length its header states, a file's bytes are its own."""
    wav = bytearray(encoded(music(4.0), SR, "wav", "pcm_s16le", io.BytesIO()))
    middle = len(wav) // 2 & ~1
    wav[middle : middle + 12] = b"RIFF" + struct.pack("<I", 36) + b"WAVE"
    reader, decoded = read_stream(bytes(wav), how)
    assert not reader.partial, reader.partial_reason
    assert len(decoded) == 4 * SR
    # two such files joined: each read whole, and the join still seen (held to the first's length)
    reader, decoded = read_stream(bytes(wav) * 2, how)
    assert reader.partial_reason == "header says 4.00 s, decoded 8.00 s" and len(decoded) == 8 * SR


class _Trickle:
    """A pipe that hands on at most ``step`` bytes a read: a header falls anywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._at = data, step, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._data[self._at : self._at + min(self._step, size if size > 0 else self._step)]
        self._at += len(chunk)
        return chunk

    def seekable(self) -> bool:
        return False


def links_read(links: WavLinks, size: int) -> bytes:
    out = bytearray()
    while chunk := links.read(size):
        assert len(chunk) <= size
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("step", [1, 5, 11, 12, 13, 4096])
@pytest.mark.parametrize("size", [7, 100, 32768])
def test_the_next_wav_header_is_found_wherever_the_reads_cut_it(step, size):
    x = music(0.05)
    first, second = pipe_wav(x, SR), pipe_wav(x[:1000], 22050)
    cut_header = b"RIFF\xff\xff\xff\xffWAV"  # at the stream's end: bytes of the file before, no next file
    links = WavLinks(_Trickle(first + second + cut_header, step))
    assert links_read(links, size) == first
    assert links.next_link() and links.tell() == 0
    assert links_read(links, size) == second + cut_header
    assert not links.next_link()


def test_a_stream_that_is_no_wav_passes_as_it_is():
    data = write_flac(music(0.2))
    links = WavLinks(_Trickle(data + data, 1000))
    assert links_read(links, 4096) == data + data and not links.next_link()


# -- NaN/Inf samples in a preview or a snapshot ------------------------------------------


def test_a_preview_that_heard_nan_samples_is_partial(tmp_path):
    """A preview of a float file with NaN samples (or only NaN) was "ok", the all-NaN one
    stored as a silent track: the replacement was noted only after a full read."""
    x = music(2.0)
    x[::5000] = np.nan
    for name, audio in (("nan", x), ("allnan", np.full_like(x, np.nan))):
        result = analyse(write(tmp_path / f"{name}.wav", audio, SR, subtype="FLOAT"), Want(seconds=1.0))
        assert result.status == "partial" and result.streaming is not None and not result.streaming.complete, name
        assert (result.partial_reason or "").endswith("non-finite samples were replaced by silence"), name


def test_nan_samples_past_a_previews_end_are_not_heard(tmp_path):
    """A NaN at 3.1 s made a 0.5 s preview partial: it lay in the same decoded block
    (several seconds long). Only the samples a preview or a snapshot heard count, and
    the count is of those."""
    from fpcli.live import follow

    x = music(8.0)
    x[int(3.1 * SR)] = np.nan
    x[int(0.2 * SR), 0] = np.nan
    path = write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    early = analyse(path, Want(seconds=0.1))
    assert early.status == "ok" and early.partial_reason is None
    heard = analyse(path, Want(seconds=0.5))
    assert heard.status == "partial" and heard.partial_reason == "1 non-finite samples were replaced by silence"
    whole = analyse(path, Want())
    assert whole.partial_reason == "3 non-finite samples were replaced by silence"   # the stereo frame's two
    snapshots = []
    follow(AudioReader(path, block_frames=8 * SR), "nan.wav", every_s=3.0, on_snapshot=snapshots.append)
    assert [(s.streaming.seconds, s.status) for s in snapshots][:2] == [(3.0, "partial"), (6.0, "partial")]
    assert [s.partial_reason for s in snapshots][:2] == ["1 non-finite samples were replaced by silence",
                                                         "3 non-finite samples were replaced by silence"]


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_nan_samples_make_the_reader_partial_when_their_block_is_handed_on(tmp_path, how):
    """A snapshot (read between blocks) says so from the block that held them on, not
    before; a preview that stopped before them stays "ok"."""
    x = music(1.0)
    x[10000, :] = np.nan
    path = write(tmp_path / "late.wav", x, SR, subtype="FLOAT")
    reader = AudioReader(path, block_frames=4096) if how == "file" else \
        open_stream(pipe_carrying(open(path, "rb").read()), block_frames=4096)
    states = []
    for _ in reader:
        states.append((reader.frames_read >= 10001, reader.partial, reader.partial_reason))
    assert all(heard == partial for heard, partial, _ in states), states
    assert states[-1][2] == "2 non-finite samples were replaced by silence"


def test_a_cut_float_file_with_nan_samples_is_partial_for_both(tmp_path):
    """NaN noted as it comes does not hide the length check that follows a full read."""
    x = music(2.0)
    x[100, 0] = np.inf
    data = open(write(tmp_path / "whole.wav", x, SR, subtype="FLOAT"), "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    reader = AudioReader(cut)
    decoded = sum(len(block) for block in reader)
    assert reader.partial_reason == (f"header says 2.00 s, decoded {decoded / SR:.2f} s; "
                                     "1 non-finite samples were replaced by silence")


# -- a FLAC whose STREAMINFO understates its length --------------------------------------


def write_flac(x: np.ndarray, encoder: str = "libsndfile") -> bytes:
    if encoder == "ffmpeg":
        return encoded(x, SR, "flac", "flac", io.BytesIO())
    buffer = io.BytesIO()
    sf.write(buffer, x, SR, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def with_total(flac: bytes, total: int) -> bytes:
    """``flac`` with STREAMINFO's total samples (36 bits, 21.5 bytes in) set to ``total``."""
    data = bytearray(flac)
    at = 4 + 4 + 13  # "fLaC", the block header, then rate, channels, bits and the total's top 4 bits
    data[at] = data[at] & 0xF0 | total >> 32
    data[at + 1 : at + 5] = struct.pack(">I", total & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("encoder", ["libsndfile", "ffmpeg"])
def test_a_flac_whose_header_understates_its_length_reads_as_its_stream(tmp_path, encoder):
    """Patched to say 1 s of 3 s: as a file "ok", 1.00 s (libsndfile reads no further
    than STREAMINFO's total); on stdin partial with all 3 s. Now the same bytes give the
    same samples and the same reason."""
    x = music(3.0)
    data = with_total(write_flac(x, encoder), SR)
    path = tmp_path / "short.flac"
    path.write_bytes(data)
    reader = AudioReader(path, block_frames=4096)
    decoded = np.concatenate(list(reader))
    streamed, from_stdin = read_stream(data, "pipe")
    assert len(decoded) == len(x) and reader.partial_reason == "header says 1.00 s, decoded 3.00 s"
    assert reader.partial_reason == streamed.partial_reason and reader.expected_frames == streamed.expected_frames
    np.testing.assert_array_equal(decoded, from_stdin)


def test_a_flac_file_that_states_no_length_is_read_whole_and_not_partial(tmp_path):
    """Total 0 is STREAMINFO's "unknown" (an encoder writing to a pipe): libsndfile gives
    it as 2**63 - 1 frames, and the file was partial, "header says 209146758205323.72 s"."""
    path = tmp_path / "unknown.flac"
    path.write_bytes(with_total(write_flac(music(1.0)), 0))
    reader = AudioReader(path)
    assert sum(len(block) for block in reader) == SR
    assert not reader.partial and not reader.length_exact and reader.info.frames == 0, reader.partial_reason


def test_a_flac_that_states_no_length_cut_mid_frame_is_partial_as_a_file_and_on_stdin(tmp_path):
    """A recording killed midway (an encoder writing to a pipe states no length): as a
    file it was "ok" with the frames before the cut, on stdin partial; the read had
    stopped on libFLAC's lost sync and no one asked why."""
    data = with_total(write_flac(music(3.0)), 0)
    cut = data[: len(data) // 2]
    path = tmp_path / "cut.flac"
    path.write_bytes(cut)
    reader = AudioReader(path)
    frames = sum(len(block) for block in reader)
    streamed, from_stdin = read_stream(cut, "pipe")
    assert 0 < frames < 3 * SR and reader.partial and reader.partial_reason.startswith("decoding failed after")
    assert streamed.partial and frames == len(from_stdin)
    # Whole, with bytes after its last frame (an ID3v1 tag): every frame read, not partial.
    tagged = tmp_path / "tagged.flac"
    tagged.write_bytes(data + b"TAG" + b"x" * 125)
    whole = AudioReader(tagged)
    assert sum(len(block) for block in whole) == 3 * SR and not whole.partial, whole.partial_reason
    # A tag after the frames larger than the tail first read (an APE tag with cover art).
    covered = tmp_path / "covered.flac"
    covered.write_bytes(data + b"APETAGEX" + bytes(300_000))
    art = AudioReader(covered)
    assert sum(len(block) for block in art) == 3 * SR and not art.partial, art.partial_reason
    # A window from the middle (a CUE sheet's last track) reads to the same end: not partial,
    # and its length unknown as the file's (it was -1.5 s: "a fault of fpcli").
    window = AudioReader(tagged, start_s=1.5)
    assert window.expected_frames == 0
    assert sum(len(block) for block in window) == 3 * SR - int(1.5 * SR) and not window.partial
    # Two such files joined: the second's frames number from 0 again, so its last frame
    # says less than what was read. libsndfile stops after the first; FFmpeg reads on
    # past the second's header: both files' frames, and partial (the join is no track).
    joined = tmp_path / "joined.flac"
    joined.write_bytes(data + with_total(write_flac(music(1.0, seed=9)), 0))
    both = AudioReader(joined)
    assert sum(len(block) for block in both) == 4 * SR and both.partial
    assert "read on past it by FFmpeg" in both.partial_reason


def test_an_intact_flac_is_still_read_by_libsndfile(tmp_path):
    """Only a FLAC whose frames hold more than it states goes to FFmpeg: every other
    keeps the faster decoder, the cost being a look at the file's last frames."""
    path = write(tmp_path / "t.flac", music(2.0), SR)
    source = open_source(path)
    source.close()
    assert isinstance(source, SndfileSource)
    assert headers.flac_file_lengths(path) == headers.FlacLengths(2 * SR, 2 * SR)


def test_a_live_matroska_cut_mid_block_is_partial_as_a_file_and_on_stdin(tmp_path):
    """A live WebM or Matroska recording (written to a pipe: no Duration, Clusters of
    unknown size) cut off mid-block was "ok" as a file and on stdin: FFmpeg reads to
    the cut without a word. The last Cluster running past the end says so; an intact
    recording stays ok."""
    data = av_encoded(as_int16(music(4.0)), SR, "matroska", "pcm_s16le", PipeSink())
    whole = tmp_path / "whole.mka"
    whole.write_bytes(data)
    intact = AudioReader(whole)
    assert sum(len(block) for block in intact) == 4 * SR and not intact.partial, intact.partial_reason
    for share in (0.3, 0.77, 0.999):
        cut = data[: int(len(data) * share)]
        path = tmp_path / f"cut{share}.mka"
        path.write_bytes(cut)
        reader = AudioReader(path)
        frames = sum(len(block) for block in reader)
        streamed, _ = read_stream(cut, "pipe")
        assert 0 < frames < 4 * SR and reader.partial, share
        assert "the last Matroska cluster runs past the end" in reader.partial_reason
        assert streamed.partial and streamed.partial_reason == reader.partial_reason


def test_a_live_matroska_of_large_clusters_cut_off_is_partial(tmp_path):
    """A recorder that writes Clusters of 5 s of PCM (about 1 MB each): its last Cluster
    started before the 130 KB of the file's end that were read, and a cut file passed
    for whole, as a file and on stdin."""
    import av

    pcm = as_int16(music(10.0))
    sink = PipeSink()
    with av.open(sink, "w", format="matroska",
                 options={"cluster_size_limit": "4000000", "cluster_time_limit": "5000"}) as out:
        stream: Any = out.add_stream("pcm_s16le", rate=SR, layout="stereo")
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[start:start + 1024].reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate, frame.pts = SR, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytes(sink.data)
    cut = data[: int(len(data) * 0.8)]
    path = tmp_path / "cut.mka"
    path.write_bytes(cut)
    reader = AudioReader(path)
    frames = sum(len(block) for block in reader)
    streamed, _ = read_stream(cut, "pipe")
    assert 0 < frames < 10 * SR and reader.partial and streamed.partial, reader.partial_reason
    whole = tmp_path / "whole.mka"
    whole.write_bytes(data)
    intact = AudioReader(whole)
    assert sum(len(block) for block in intact) == 10 * SR and not intact.partial


def _rf64_stating(tmp_path, data_bytes: int):
    """A 6 s 8 kHz RF64 file whose ds64 chunk states ``data_bytes`` of audio."""
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 8000), 8000, format="RF64",
             subtype="PCM_U8")
    data = bytearray(buffer.getvalue())
    struct.pack_into("<QQ", data, 20, data_bytes + 100, data_bytes)   # RIFF and data sizes of the ds64 chunk
    path = tmp_path / "lie.wav"
    path.write_bytes(bytes(data))
    return path


def test_a_header_stating_a_length_no_file_holds_is_no_duration(tmp_path):
    """A RF64 header claiming 2**61 bytes gave a preview the duration 2.9e14 s: the
    record could not be read back, and the run stopped as a usage error (exit 2) on
    every re-run. The stated length is no duration now; a full read is still partial
    against it."""
    from fpcli.store import FingerprintStore

    path = _rf64_stating(tmp_path, 2**61)
    reader = AudioReader(path)
    assert reader.expected_frames > 0 and reader.stated_seconds is None
    preview = analyse(str(path), Want(seconds=3.0))
    assert preview.status == "ok" and preview.duration_s <= 6.0   # what was decoded, not 2.9e14 s
    whole = analyse(str(path), Want())
    assert whole.status == "partial" and "header says" in (whole.partial_reason or "")
    with FingerprintStore.open(tmp_path / "store") as store:
        from fpcli.analyze import keep

        for result in (preview, whole):
            assert keep(store, str(path), store.identify(str(path)), result).status != "error"


def test_a_stream_changing_to_one_channel_says_one_channel():
    """"the stream changes to 44100 Hz, 1 channels" (a stereo WAV, then a mono one)."""
    mono = io.BytesIO()
    sf.write(mono, music(1.0, seed=3)[:, 0], SR, format="WAV", subtype="PCM_16")
    reader, _ = read_stream(pipe_wav(music(1.0), SR) + mono.getvalue(), "pipe")
    assert reader.partial_reason.endswith(f"the stream changes to {SR} Hz, 1 channel"), reader.partial_reason
