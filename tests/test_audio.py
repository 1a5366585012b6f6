import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import soundfile as sf

import fpcli
from fpcli import synth
from fpcli.audio import AudioReader, mixdown, open_stream, probe
from fpcli.errors import AudioReadError
from tests.conftest import pipe_carrying, write

FORMATS = [
    ("wav", "WAV", "PCM_16"), ("wav", "WAV", "PCM_24"), ("wav", "WAV", "PCM_32"), ("wav", "WAV", "FLOAT"),
    ("flac", "FLAC", "PCM_16"), ("flac", "FLAC", "PCM_24"), ("ogg", "OGG", "VORBIS"), ("opus", "OGG", "OPUS"),
    ("mp3", "MP3", "MPEG_LAYER_III"), ("aiff", "AIFF", "PCM_16"),
]


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_reads_every_format_in_float32_blocks(tmp_path, ext, fmt, subtype, channels):
    if subtype == "MPEG_LAYER_III" and channels > 2:
        channels = 2  # MP3 has at most two channels
    sr = 48000 if subtype == "OPUS" else 44100
    x = synth.sine(440, 1.5, sr, dbfs=-6, channels=channels)
    path = write(tmp_path / f"t.{ext}", x, sr, format=fmt, subtype=subtype)
    reader = AudioReader(path, block_frames=4096)
    blocks = list(reader)
    assert all(b.dtype == np.float32 and b.shape[1] == channels for b in blocks)
    assert all(len(b) <= 4096 for b in blocks)
    decoded = sum(len(b) for b in blocks)
    assert abs(decoded - len(x)) <= 0.1 * sr  # codec padding is allowed, not lost audio
    assert not reader.partial
    assert reader.frames_read == decoded


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 32000, 96000])
def test_any_rate_from_8k(tmp_path, sr):
    path = write(tmp_path / "t.flac", synth.sine(440, 1.0, sr), sr)
    reader = AudioReader(path)
    assert sum(len(b) for b in reader) == sr
    assert reader.info.samplerate == sr


def test_mixdown_is_channel_mean():
    block = np.array([[1.0, 0.0, 0.5], [0.2, 0.4, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(mixdown(block), [0.5, 0.2], rtol=1e-6)


def test_block_size_does_not_change_the_samples(tmp_path, rng):
    x = (0.1 * rng.standard_normal((10000, 2))).astype(np.float32)
    path = write(tmp_path / "t.wav", x, 44100, subtype="FLOAT")
    a = np.concatenate(list(AudioReader(path, block_frames=333)))
    b = np.concatenate(list(AudioReader(path, block_frames=65536)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, x)


def _expect_error(path, fragment):
    with pytest.raises(AudioReadError) as info:
        list(AudioReader(path))
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    _expect_error(path, "empty file")


def test_text_renamed_flac(tmp_path):
    path = tmp_path / "text.flac"
    path.write_text("This is a plain text file pretending to be FLAC.\n" * 40)
    _expect_error(path, "not a decodable audio file")


def test_bad_wav_header(tmp_path):
    good = write(tmp_path / "good.wav", synth.sine(440, 1.0, 44100), 44100)
    data = bytearray(open(good, "rb").read())
    data[12:16] = b"xxxx"
    path = tmp_path / "bad.wav"
    path.write_bytes(bytes(data))
    _expect_error(path, "not a decodable audio file")


def test_directory_and_missing_file(tmp_path):
    _expect_error(tmp_path, "is a directory")
    _expect_error(tmp_path / "missing.wav", "no such file")


def test_flac_cut_in_header(tmp_path):
    good = write(tmp_path / "good.flac", synth.sine(440, 1.0, 44100), 44100)
    path = tmp_path / "cut.flac"
    path.write_bytes(open(good, "rb").read()[:30])
    _expect_error(path, "not a decodable audio file")


def _truncate(src, dst, fraction):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: int(len(data) * fraction)])
    return str(dst)


def test_truncated_flac_keeps_decoded_audio_and_is_partial(tmp_path, rng):
    x = (0.3 * rng.standard_normal((44100 * 6, 1))).astype(np.float32)
    good = write(tmp_path / "good.flac", x, 44100)
    reader = AudioReader(_truncate(good, tmp_path / "half.flac", 0.5))
    decoded = sum(len(b) for b in reader)
    assert 0 < decoded < len(x)
    assert reader.partial
    assert reader.partial_reason


def _damaged(src, dst, fraction: float = 0.25, length: int = 3000) -> str:
    """``src`` with ``length`` random bytes written over it ``fraction`` of the way in."""
    data = bytearray(open(src, "rb").read())
    at = int(len(data) * fraction)
    data[at:at + length] = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    open(dst, "wb").write(bytes(data))
    return str(dst)


@pytest.mark.parametrize("fmt", ["FLAC", "MP3"])
def test_one_damaged_spot_is_read_past_not_the_end_of_the_track(tmp_path, fmt):
    """libsndfile stops at a damaged spot (a FLAC frame or MP3 frames overwritten): the
    three quarters of the track after it were lost ("header says 182.19 s, decoded
    43.84 s"), where FFmpeg decodes all but the damaged packets. The read goes on
    with FFmpeg past the spot; the file is still partial, saying why."""
    x = synth.music_like(20.0, 44100)
    good = write(tmp_path / f"good.{fmt.lower()}", x, 44100, format=fmt)
    reader = AudioReader(_damaged(good, tmp_path / f"bad.{fmt.lower()}"))
    blocks = list(reader)
    assert sum(len(b) for b in blocks) > 0.95 * len(x)
    assert reader.partial and "read on past it by FFmpeg" in reader.partial_reason, reader.partial_reason
    whole = np.concatenate(blocks)
    clean = np.concatenate(list(AudioReader(good)))
    # The audio after the spot is the file's own, to its end: a second of it is found in
    # the clean decoding (at its place for FLAC; FFmpeg and libsndfile trim an MP3's end
    # padding a few hundred frames apart). The damaged packets' frames are not filled in.
    second = whole[-3 * 44100:-2 * 44100, 0]
    at = len(clean) - 3 * 44100
    error = {shift: np.abs(clean[at + shift:at + shift + 44100, 0] - second).max() for shift in range(-2048, 2049)}
    assert min(error.values()) < 1e-3 and (fmt == "MP3" or error[0] == 0.0)
    # A preview (or a snapshot) that stops after the spot is partial too: it heard it.
    preview = AudioReader(tmp_path / f"bad.{fmt.lower()}")
    for _ in preview:
        if preview.frames_read > 15 * 44100:
            preview.stop()
    assert preview.partial and "read on past it by FFmpeg" in preview.partial_reason


def test_a_reader_read_past_damage_keeps_it_pickled_and_read_again(tmp_path):
    """The reader reads its source's damage as it goes: pickled in the middle of a read
    (a process pool's result) it kept the open source (not picklable), and a first read
    left unfinished, closed after a second one, put its own findings in place of the
    second's (partial False after a whole read past a damaged spot)."""
    import pickle

    good = write(tmp_path / "good.flac", synth.music_like(20.0, 44100), 44100)
    reader = AudioReader(_damaged(good, tmp_path / "bad.flac"))
    first = iter(reader)
    next(first)
    assert list(reader) and reader.partial
    first.close()
    assert reader.partial and "read on past it" in reader.partial_reason
    midway = iter(reader)
    for _ in range(3):   # blocks of 3 s: past the spot at about 5 s
        next(midway)
    copy = pickle.loads(pickle.dumps(reader))
    assert copy.partial and "read on past it" in copy.partial_reason
    midway.close()


def test_a_damaged_surround_opus_is_read_past_without_a_crash(tmp_path):
    """PyAV read the planes of an 8-channel frame past their end: a damaged 7.1 Opus
    file, read on by FFmpeg, killed the analysis process (SIGSEGV); on stdin any 7.1
    Opus did. Such frames are converted to packed ones first."""
    from tests.conftest import read_stream
    from tests.test_audio_formats import encode_av

    x = 0.1 * np.random.default_rng(2).standard_normal((4 * 48000, 8))
    good = encode_av(tmp_path / "good.opus", x, 48000, "libopus", "flt", "7.1")
    reader, streamed = read_stream(open(good, "rb").read(), "pipe")
    assert streamed.shape == (4 * 48000, 8) and not reader.partial
    bad = AudioReader(_damaged(good, tmp_path / "bad.opus", fraction=0.5))
    # FFmpeg's Ogg demuxer gives up at the damaged page, as libsndfile does: the audio
    # before it, partial, and no crash.
    assert sum(len(block) for block in bad) >= 0.45 * len(x) and bad.partial


def test_a_damaged_stream_is_read_past_its_damaged_packets(tmp_path):
    """FFmpeg (stdin, and the formats libsndfile cannot read) stopped at the first
    packet that did not decode: a damaged MP3 on stdin was read to its damaged spot
    only. Damaged packets are skipped, counted, and make the stream partial."""
    from tests.conftest import read_stream

    x = synth.music_like(20.0, 44100)
    good = write(tmp_path / "good.mp3", x, 44100, format="MP3")
    reader, samples = read_stream(open(_damaged(good, tmp_path / "bad.mp3"), "rb").read(), "pipe")
    assert len(samples) > 0.95 * len(x)
    assert reader.partial and "damaged packets skipped" in reader.partial_reason, reader.partial_reason


def test_truncated_mp3_is_partial_without_stale_blocks(tmp_path):
    x = synth.music_like(8.0, 44100)
    good = write(tmp_path / "good.mp3", x, 44100, format="MP3")
    reader = AudioReader(_truncate(good, tmp_path / "half.mp3", 0.5))
    blocks = list(reader)
    decoded = sum(len(b) for b in blocks)
    assert reader.partial
    assert decoded < 0.7 * len(x)  # sf.blocks() would pad up to the header length
    assert "header says" in reader.partial_reason


# The extensible header ("WAVEX" to libsndfile) is what writers use past 16 bits or two
# channels: its cut files were "ok" and its unfinished ones failed.
WAV_HEADERS = [("WAV", "PCM_16"), ("WAVEX", "PCM_24")]


@pytest.mark.parametrize("fmt,subtype", [*WAV_HEADERS, ("RF64", "PCM_16")])   # RF64: sizes in its ds64 chunk
def test_truncated_wav_data_chunk_is_partial(tmp_path, fmt, subtype):
    good = write(tmp_path / "good.wav", synth.sine(440, 4.0, 44100, channels=2), 44100, format=fmt, subtype=subtype)
    assert probe(good).format == fmt
    reader = AudioReader(_truncate(good, tmp_path / "cut.wav", 0.25))
    list(reader)
    assert reader.partial
    assert "header says 4.00 s" in reader.partial_reason
    streamed = open_stream(pipe_carrying(open(tmp_path / "cut.wav", "rb").read()))   # the same bytes on stdin
    list(streamed)
    assert streamed.partial and "header says 4.00 s" in streamed.partial_reason


@pytest.mark.parametrize("fmt,subtype", WAV_HEADERS)
@pytest.mark.parametrize("riff_size", ["placeholder", "file"])
def test_a_wav_whose_data_size_was_never_filled_in_is_read_to_its_end(tmp_path, riff_size, fmt, subtype):
    """A recorder that crashed leaves data size 0: the file failed ("no audio frames
    could be decoded") and was skipped for good, where the same bytes on stdin were read
    whole."""
    x = synth.sine(440, 3.0, 22050)
    data = bytearray(open(write(tmp_path / "good.wav", x, 22050, format=fmt, subtype=subtype), "rb").read())
    size_at = data.find(b"data") + 4
    data[size_at:size_at + 4] = (0).to_bytes(4, "little")
    data[4:8] = (size_at - 4 if riff_size == "placeholder" else len(data) - 8).to_bytes(4, "little")
    (tmp_path / "unfinished.wav").write_bytes(data)
    reader = AudioReader(tmp_path / "unfinished.wav")
    decoded = np.concatenate(list(reader))
    assert len(decoded) == len(x) and not reader.partial
    np.testing.assert_allclose(decoded[:, 0], x[:, 0], atol=1 / 32768)
    (tmp_path / "header_only.wav").write_bytes(data[:size_at + 4])
    with pytest.raises(AudioReadError):
        list(AudioReader(tmp_path / "header_only.wav"))


def test_nonfinite_float_samples_are_zeroed_and_counted(tmp_path):
    x = synth.sine(440, 1.0, 44100)
    x[100:110] = np.nan
    path = write(tmp_path / "nan.wav", x, 44100, subtype="FLOAT")
    reader = AudioReader(path)
    blocks = np.concatenate(list(reader))
    assert np.isfinite(blocks).all()
    assert reader.nonfinite_samples == 10
    assert reader.partial  # the record must say the audio was altered
    assert reader.partial_reason == "10 non-finite samples were replaced by silence"


def test_probe_reports_header(tmp_path):
    path = write(tmp_path / "t.flac", synth.sine(440, 2.0, 48000, channels=2), 48000, subtype="PCM_24")
    info = probe(path)
    facts = (info.samplerate, info.channels, info.frames, info.format, info.subtype)
    assert facts == (48000, 2, 96000, "FLAC", "PCM_24")
    assert info.duration_s == pytest.approx(2.0)


@pytest.fixture
def open_folder():
    """A folder anyone may enter (a child without root's capabilities must reach the
    file in it), removed afterwards."""
    folder = tempfile.mkdtemp(prefix="fpcli-unreadable-")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


def test_unreadable_file(open_folder):
    """Root reads any file, so as root the check runs in a child without the
    capabilities that override file modes (util-linux setpriv)."""
    folder = open_folder
    path = write(os.path.join(folder, "t.wav"), synth.sine(440, 0.5, 8000), 8000)
    os.chmod(path, 0)
    if os.geteuid() != 0:
        _expect_error(path, "permission denied")
        return
    code = (
        "import sys; from fpcli.audio import AudioReader; from fpcli.errors import AudioReadError\n"
        "try:\n    list(AudioReader(sys.argv[1]))\nexcept AudioReadError as e:\n    print(e)\n"
    )
    root = os.path.dirname(os.path.dirname(fpcli.__file__))
    result = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code, path],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": root},
    )
    assert f"{path}: permission denied" in result.stdout, result.stderr


@pytest.mark.parametrize("block_frames", [1000, 4096, 65536])
def test_mp3_blocks_are_bit_identical_to_one_whole_read(tmp_path, block_frames):
    """soundfile's read() seeks after every block, which corrupts MP3 audio; ours must not."""
    path = write(tmp_path / "m.mp3", synth.music_like(30.0, 44100, seed=2), 44100, format="MP3")
    whole = sf.read(path, dtype="float32", always_2d=True)[0]  # one read: no seek in between
    blocks = np.concatenate(list(AudioReader(path, block_frames=block_frames)))
    np.testing.assert_array_equal(blocks, whole)


def test_sf_blocks_is_not_used():
    import inspect

    import fpcli.audio.sndfile

    assert "sf.blocks(" not in inspect.getsource(fpcli.audio.sndfile).replace("``sf.blocks()``", "")
    assert sf.__libsndfile_version__  # the decoder under test


def test_decoder_warnings_do_not_reach_stderr(tmp_path, capfd):
    x = synth.music_like(8.0, 44100)
    good = write(tmp_path / "good.mp3", x, 44100, format="MP3")
    reader = AudioReader(_truncate(good, tmp_path / "half.mp3", 0.5))
    list(reader)
    assert reader.partial
    assert "Warning" not in capfd.readouterr().err


def test_a_file_rewritten_after_its_reader_was_made_is_an_error_not_a_wrong_rate(tmp_path):
    """The reader opens a file for its header, then again to decode it. A file rewritten
    in between (a tagger, an encoder) was decoded as if at the first header's rate: a
    440 Hz tone at 44.1 kHz, rewritten at 22.05 kHz, measured 880 Hz, complete; a
    second read of a reader whose file became mono gave (n, 1) blocks under 2 channels."""
    path = tmp_path / "t.wav"
    tone = lambda rate, channels: np.repeat(  # noqa: E731
        0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)[:, None], channels, axis=1)
    sf.write(path, tone(44100, 2), 44100)
    reader = AudioReader(path)
    assert sum(len(block) for block in reader) == 44100      # read once, as it is
    sf.write(tmp_path / "new.wav", tone(22050, 1), 22050)
    os.replace(tmp_path / "new.wav", path)
    with pytest.raises(AudioReadError, match=r"changed after it was opened \(WAV PCM_16, 44100 Hz, 2 channels"):
        list(reader)
    assert list(AudioReader(path))[0].shape[1] == 1          # a new reader reads the new file
