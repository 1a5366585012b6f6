"""The PyAV back end, and what makes a file partial or undecodable beyond plain reads.

Every file is generated here: AAC and ALAC through PyAV's encoders, MP3/Ogg/WAV
through libsndfile, then cut, stripped or patched with plain byte edits."""

import io
import os
import struct
import subprocess
import sys
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf

import fpcli
from fpcli import synth
from fpcli.audio import AUDIO_EXTENSIONS, AudioReader, probe
from fpcli.audio.base import DecodeFailure
from fpcli.audio.pyav import rebuffer
from fpcli.errors import AudioReadError
from tests.conftest import PipeSink, av_encoded, read_stream, write

SR = 44100


def write_av(path, x: np.ndarray, sr: int, codec: str, **options: str) -> str:
    """Encode float (n, channels) ``x`` with PyAV: ``alac`` from 16-bit samples (so the
    decoded file must equal them exactly), ``aac`` from float."""
    layout = "mono" if x.shape[1] == 1 else "stereo"
    return encode_av(path, x, sr, codec, "s16p" if codec == "alac" else "fltp", layout, **options)


def encode_av(path, x: np.ndarray, sr: int, codec: str, sample_format: str, layout: str = "stereo",
              **options: str) -> str:
    """Encode (n, channels) float ``x`` with PyAV's ``codec`` taking ``sample_format``
    (16-bit ones rounded as ``to_int16``); ``options`` go to the muxer."""
    with av.open(str(path), "w", options=options) as out:
        stream: Any = out.add_stream(codec, rate=sr, layout=layout)  # an AudioStream
        stream.format = sample_format   # else the codec's first, 8-bit for TTA
        for start in range(0, len(x), 1024):
            chunk = x[start : start + 1024]
            data = to_int16(chunk) if sample_format.startswith("s16") else chunk.astype(np.float32)
            data = data.T if sample_format.endswith("p") else data.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_format, layout=layout)
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return str(path)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def read_all(path, block_frames: int = 4096) -> tuple[AudioReader, np.ndarray]:
    reader = AudioReader(path, block_frames=block_frames)
    blocks = list(reader)
    assert all(b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == reader.info.channels for b in blocks)
    assert all(0 < len(b) <= block_frames for b in blocks)
    assert all(len(b) == block_frames for b in blocks[:-1])  # only the last block is short
    return reader, np.concatenate(blocks)


def noise(seconds: float, channels: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.25 * rng.standard_normal((int(seconds * SR), channels))).clip(-1, 1).astype(np.float32)


def cut(src: str, dst, size: int) -> str:
    with open(src, "rb") as fh:
        data = fh.read(size)
    with open(dst, "wb") as fh:
        fh.write(data)
    return str(dst)


def expect_error(path, fragment: str) -> str:
    with pytest.raises(AudioReadError) as info:
        list(AudioReader(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message, message
    return message


# -- PyAV: AAC and ALAC in MP4 --------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_alac_m4a_decodes_bit_exact(tmp_path, channels):
    x = noise(1.5, channels)
    path = write_av(tmp_path / "t.m4a", x, SR, "alac")
    reader, decoded = read_all(path)
    info = reader.info
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "MP4", "ALAC", SR, channels, len(x))
    assert reader.length_exact and not reader.partial and reader.frames_read == len(x)
    np.testing.assert_array_equal(decoded, to_int16(x).astype(np.float32) / 32768)


@pytest.mark.parametrize("channels", [1, 2])
def test_aac_m4a_matches_the_source(tmp_path, channels):
    t = np.arange(2 * SR) / SR
    tones = [0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1234 * t + 1)]
    x = np.stack(tones[:channels], axis=1).astype(np.float32)
    path = write_av(tmp_path / "t.m4a", x, SR, "aac")
    reader, decoded = read_all(path)
    assert (reader.info.format, reader.info.subtype, reader.info.channels) == ("MP4", "AAC", channels)
    assert reader.info.samplerate == SR and not reader.partial
    assert abs(len(decoded) - len(x)) <= 0.1 * SR  # encoder padding, not lost audio
    for ch in range(channels):
        a, b = x[SR // 2 : SR, ch], decoded[:, ch]
        # The encoder delay is trimmed by the MP4 edit list; allow a few samples anyway.
        lag = max(range(-64, 65), key=lambda k: float(np.dot(a, b[SR // 2 + k : SR + k])))
        aligned = b[SR // 2 + lag : SR + lag]
        assert np.corrcoef(a, aligned)[0, 1] > 0.99
        assert np.sqrt(np.mean((a - aligned) ** 2)) < 0.02


def test_aac_in_matroska(tmp_path):
    x = noise(1.0, 2)
    reader, decoded = read_all(write_av(tmp_path / "t.mka", x, SR, "aac"))
    assert (reader.info.format, reader.info.subtype) == ("MATROSKA", "AAC")
    assert abs(len(decoded) - len(x)) <= 0.1 * SR and not reader.partial


def test_block_size_does_not_change_pyav_samples(tmp_path):
    path = write_av(tmp_path / "t.m4a", noise(1.0, 2), SR, "alac")
    a = read_all(path, block_frames=333)[1]
    b = read_all(path, block_frames=65536)[1]
    np.testing.assert_array_equal(a, b)


def test_new_extensions_are_scanned():
    assert {".m4a", ".mp4", ".aac", ".wma", ".ape", ".wv", ".mka", ".mkv", ".webm", ".mpc", ".ac3"} <= AUDIO_EXTENSIONS
    assert {".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff"} <= AUDIO_EXTENSIONS


# -- Formats of archives, broadcasters and DSD libraries ----------------------------------


def write_sndfile(path, x: np.ndarray, sr: int, container: str) -> str:
    """16-bit ``x`` (float, rounded as ``to_int16``) in libsndfile's ``container``."""
    sf.write(str(path), to_int16(x), sr, format=container, subtype="PCM_16")
    return str(path)


DSD_RATE = 2_822_400   # DSD64: 1-bit samples per second; FFmpeg decodes to 1/8 of it


def sigma_delta(x: np.ndarray) -> np.ndarray:
    """(n,) float in [-1, 1] -> (n,) uint8 bits of a first-order sigma-delta modulator:
    the bit is set where the running sum of (x + 1) / 2 passes the next integer."""
    level = np.floor(np.cumsum((np.asarray(x, dtype=np.float64) + 1) / 2))
    return np.diff(level, prepend=0.0).astype(np.uint8)


def dsd_tones(seconds: float) -> np.ndarray:
    """(n, 2) 440 Hz left, 880 Hz right at half scale, at the DSD64 rate."""
    t = np.arange(int(seconds * DSD_RATE)) / DSD_RATE
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 880 * t)], axis=1)


def write_dsf(path, x: np.ndarray, block: int = 4096) -> str:
    """A DSF file (Sony's DSD stream file) of ``x`` at DSD_RATE: bytes LSB first, each
    channel's bytes in blocks of ``block``, blocks of the channels in turn."""
    n, channels = x.shape
    bits = np.stack([sigma_delta(x[:, c]) for c in range(channels)], axis=1)
    blocks = -(-n // (8 * block))
    padded = np.zeros((blocks * block * 8, channels), np.uint8)
    padded[:n] = bits
    packed = np.packbits(padded.reshape(-1, 8, channels).transpose(0, 2, 1), axis=2, bitorder="little")[:, :, 0]
    data = packed.reshape(blocks, block, channels).transpose(0, 2, 1).tobytes()
    fmt = b"fmt " + struct.pack("<QIIIIIIQII", 52, 1, 0, 2, channels, DSD_RATE, 1, n, block, 0)
    chunk = b"data" + struct.pack("<Q", 12 + len(data)) + data
    head = b"DSD " + struct.pack("<QQQ", 28, 28 + len(fmt) + len(chunk), 0)
    with open(path, "wb") as fh:
        fh.write(head + fmt + chunk)
    return str(path)


def write_dff(path, x: np.ndarray) -> str:
    """A DSDIFF file (Philips' DSD interchange format) of stereo ``x`` at DSD_RATE:
    bytes MSB first, interleaved a byte per channel."""
    n, channels = x.shape
    bits = np.stack([sigma_delta(x[:, c]) for c in range(channels)], axis=1)
    padded = np.zeros((-(-n // 8) * 8, channels), np.uint8)
    padded[:n] = bits
    data = np.packbits(padded.reshape(-1, 8, channels).transpose(0, 2, 1), axis=2, bitorder="big").tobytes()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return tag + struct.pack(">Q", len(body)) + body + b"\0" * (len(body) & 1)

    prop = b"SND " + chunk(b"FS  ", struct.pack(">I", DSD_RATE)) + \
        chunk(b"CHNL", struct.pack(">H", channels) + b"SLFTSRGT") + chunk(b"CMPR", b"DSD \x0enot compressed\0")
    body = b"DSD " + chunk(b"FVER", struct.pack(">I", 0x01050000)) + chunk(b"PROP", prop) + chunk(b"DSD ", data)
    with open(path, "wb") as fh:
        fh.write(chunk(b"FRM8", body))
    return str(path)


def loudest_hz(y: np.ndarray, rate: int) -> float:
    return float(np.fft.rfftfreq(len(y), 1 / rate)[np.abs(np.fft.rfft(y)).argmax()])


@pytest.mark.parametrize("writer", [write_dsf, write_dff])
def test_dsd_decodes_to_its_tones_and_a_cut_file_is_partial(tmp_path, writer):
    path = writer(tmp_path / f"t.{writer.__name__[-3:]}", dsd_tones(0.5))
    reader, decoded = read_all(path)
    assert (reader.info.samplerate, reader.info.channels, reader.info.frames) == (DSD_RATE // 8, 2, DSD_RATE // 16)
    assert not reader.partial and len(decoded) == DSD_RATE // 16
    assert (loudest_hz(decoded[:, 0], DSD_RATE // 8), loudest_hz(decoded[:, 1], DSD_RATE // 8)) == (440.0, 880.0)
    size = os.path.getsize(path)
    for fraction in (0.3, 0.6):   # FFmpeg's length is what the file holds: only the header tells
        cut_reader, _ = read_all(cut(path, tmp_path / f"cut{fraction}", int(size * fraction)))
        assert cut_reader.partial, fraction


@pytest.mark.parametrize("container", ["AU", "CAF", "W64"])
def test_cut_au_caf_w64_files_are_partial(tmp_path, container):
    """libsndfile clamps their length to the bytes present (or refuses a cut CAF,
    which FFmpeg then reads as far as it goes): the header's size tells."""
    x = noise(2.0, 2)
    path = write_sndfile(tmp_path / f"t.{container.lower()}", x, SR, container)
    reader, decoded = read_all(path)
    assert (reader.info.format, reader.info.frames, len(decoded), reader.partial) == (container, len(x), len(x), False)
    np.testing.assert_array_equal(decoded, to_int16(x).astype(np.float32) / 32768)
    size = os.path.getsize(path)
    for fraction in (0.3, 0.7):
        cut_reader, cut_decoded = read_all(cut(path, tmp_path / f"cut{fraction}.{container.lower()}",
                                               int(size * fraction)))
        assert cut_reader.partial and cut_reader.partial_reason.startswith("header says 2.00 s"), \
            (fraction, cut_reader.partial_reason)
        assert len(cut_decoded) < 0.8 * len(x)


def _patched(path, offset: int, data: bytes, insert: bool = False) -> str:
    raw = open(path, "rb").read()
    raw = raw[:offset] + data + raw[offset + (0 if insert else len(data)):]
    with open(path, "wb") as fh:
        fh.write(raw)
    return str(path)


W64_GUID_TAIL = bytes.fromhex("f3acd3118cd100c04f8edb8a")


def _hostile_headers(tmp_path) -> dict[str, str]:
    """Intact audio under damaged size fields: each decodes whole."""
    x = noise(1.0, 2)
    w64 = write_sndfile(tmp_path / "junk.w64", x, SR, "W64")
    data_at = open(w64, "rb").read().index(b"data" + W64_GUID_TAIL)
    huge_chunk = _patched(w64, data_at, b"junk" + W64_GUID_TAIL + struct.pack("<Q", 2**64 - 8), insert=True)
    huge_data = _patched(write_sndfile(tmp_path / "huge.w64", x, SR, "W64"), data_at + 16,
                         struct.pack("<Q", 2**64 - 1))
    dsf = write_dsf(tmp_path / "t.dsf", dsd_tones(0.25))
    huge_count = _patched(dsf, 28 + 36, struct.pack("<Q", 2**64 - 1))
    return {"W64 chunk of 2**64 - 8 bytes": huge_chunk, "W64 data of 2**64 - 1 bytes": huge_data,
            "DSF of 2**64 - 1 samples": huge_count}


def test_damaged_size_fields_neither_crash_nor_make_a_whole_file_partial(tmp_path):
    """A W64 chunk size past 2**63 raised ValueError from a seek ("a fault of fpcli");
    sizes no file has made intact files "header says 104573379102661.86 s"."""
    from fpcli.audio import headers

    for what, path in _hostile_headers(tmp_path).items():
        reader, decoded = read_all(path)
        assert not reader.partial and len(decoded) > 0, (what, reader.partial_reason)
        with open(path, "rb") as fh:
            assert headers.stated_frames(fh.read(1 << 16)) in (None, len(decoded)), what   # a stream's head
    dff = write_dff(tmp_path / "t.dff", dsd_tones(0.25))   # FFmpeg refuses it: one clear error
    huge_dsd = _patched(dff, open(dff, "rb").read().rindex(b"DSD ") + 4, struct.pack(">Q", 2**63))
    assert headers.file_stated_frames(huge_dsd) is None
    expect_error(huge_dsd, "not a decodable audio file")


def test_a_negative_caf_packet_count_states_no_length():
    from fpcli.audio import headers

    desc = struct.pack(">dIIIIII", 44100.0, int.from_bytes(b"alac", "big"), 0, 0, 4096, 2, 16)
    pakt = struct.pack(">qqii", 1, -1000, 0, 0)
    caf = b"caff\x00\x01\x00\x00" + b"desc" + struct.pack(">q", len(desc)) + desc + \
        b"pakt" + struct.pack(">q", len(pakt)) + pakt
    assert headers.caf_stated_frames(io.BytesIO(caf)) is None


@pytest.mark.parametrize(("name", "codec", "sample_format", "layout", "rate"), [
    ("t.tta", "tta", "s16", "stereo", SR),
    ("t.mp2", "mp2", "s16", "stereo", SR),
    ("t.amr", "amr_nb", "s16", "mono", 8000),
])
def test_tta_mp2_and_amr_decode_whole(tmp_path, name, codec, sample_format, layout, rate):
    x = noise(2.0, 2 if layout == "stereo" else 1)
    reader, decoded = read_all(encode_av(tmp_path / name, x, rate, codec, sample_format, layout))
    assert reader.info.samplerate == rate and not reader.partial
    assert abs(len(decoded) - len(x)) <= 0.1 * rate
    if codec == "tta":   # lossless
        np.testing.assert_array_equal(decoded, to_int16(x).astype(np.float32) / 32768)


def test_a_cut_tta_is_partial(tmp_path):
    """TTA frames are about 1.045 s: the cuts keep whole ones before them."""
    path = encode_av(tmp_path / "t.tta", noise(5.0, 2), SR, "tta", "s16")
    for fraction in (0.5, 0.8):
        reader, _ = read_all(cut(path, tmp_path / f"cut{fraction}.tta", int(os.path.getsize(path) * fraction)))
        assert reader.partial, fraction


def test_archive_and_dsd_extensions_are_scanned(tmp_path):
    from fpcli.scan import scan

    names = ["a.bwf", "b.rf64", "c.w64", "d.au", "e.caf", "f.mp2", "g.tta", "h.dsf", "i.dff", "j.amr", "k.m4r"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = scan([tmp_path])
    assert sorted(os.path.basename(f) for f in found.files) == names and not found.ignored


def test_pyav_decodes_what_libsndfile_refuses(tmp_path):
    """An MP4 misnamed .ogg: libsndfile refuses it, PyAV reads it."""
    x = noise(1.0, 1)
    path = str(tmp_path / "really-mp4.ogg")
    os.rename(write_av(tmp_path / "t.m4a", x, SR, "alac"), path)
    with pytest.raises(sf.LibsndfileError):
        sf.SoundFile(path)
    reader, decoded = read_all(path)
    assert reader.info.format == "MP4"
    np.testing.assert_array_equal(decoded, to_int16(x).astype(np.float32) / 32768)


def test_m4a_that_is_text(tmp_path):
    path = tmp_path / "text.m4a"
    path.write_text("This is a plain text file pretending to be AAC.\n" * 40)
    expect_error(path, "not a decodable audio file")
    with pytest.raises(AudioReadError):
        probe(path)


def test_m4a_cut_before_its_index_is_a_clear_error(tmp_path):
    """Encoders write the MP4 index (moov) last by default: a cut file has none."""
    good = write_av(tmp_path / "good.m4a", noise(2.0, 2), SR, "alac")
    size = os.path.getsize(good)
    for fraction in (0.1, 0.5, 0.95):
        path = cut(good, tmp_path / f"cut{fraction}.m4a", int(size * fraction))
        expect_error(path, "the MP4 has no index ('moov' box)")


@pytest.mark.parametrize("codec", ["aac", "alac"])
def test_m4a_with_index_first_cut_is_partial(tmp_path, codec):
    """With the index first (faststart), a cut file decodes up to the cut: partial."""
    x = noise(3.0, 2)
    good = write_av(tmp_path / "good.m4a", x, SR, codec, movflags="faststart")
    intact, _ = read_all(good)
    assert not intact.partial, intact.partial_reason
    size = os.path.getsize(good)
    for fraction in (0.3, 0.6, 0.9):
        reader, decoded = read_all(cut(good, tmp_path / f"cut{fraction}.m4a", int(size * fraction)))
        assert reader.partial, fraction
        assert reader.partial_reason
        assert 0 < len(decoded) < len(x) - 0.1 * SR


def test_ffmpeg_prints_nothing_for_damaged_files(tmp_path, capfd):
    good = write_av(tmp_path / "good.m4a", noise(2.0, 2), SR, "aac", movflags="faststart")
    data = bytearray(open(good, "rb").read())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.m4a"
    damaged.write_bytes(bytes(data))
    for path in (damaged, cut(good, tmp_path / "cut.m4a", middle), cut(good, tmp_path / "cut.m4a", 100)):
        try:
            list(AudioReader(path))
        except AudioReadError:
            pass
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_av_is_imported_only_for_pyav_files(tmp_path):
    flac = write(tmp_path / "t.flac", synth.sine(440, 0.5, SR), SR)
    m4a = write_av(tmp_path / "t.m4a", noise(0.5, 1), SR, "alac")
    code = (
        "import sys\nimport fpcli.audio, fpcli.library, fpcli.cli\n"
        "list(fpcli.audio.AudioReader(sys.argv[1]))\nprint('av' in sys.modules)\n"
        "list(fpcli.audio.AudioReader(sys.argv[2]))\nprint('av' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(fpcli.__file__))
    result = subprocess.run([sys.executable, "-c", code, flac, m4a], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": root})
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_rebuffer_keeps_audio_decoded_before_a_failure():
    def chunks():
        yield np.ones((700, 2), np.float32)
        yield np.ones((700, 2), np.float32)
        raise DecodeFailure("bad packet")

    out = []
    with pytest.raises(DecodeFailure):
        for block in rebuffer(chunks(), 1000):
            out.append(len(block))
    assert out == [1000, 400]


@pytest.mark.parametrize("how", ["path", "pipe"])
def test_blocks_of_many_channels_are_bounded_in_samples(tmp_path, how):
    """A block is at most MAX_BLOCK_SAMPLES samples whatever the channel count: a
    1,024-channel WAV read a full default block (512 MiB) at once."""
    from fpcli.audio import MAX_BLOCK_SAMPLES

    channels = 64
    x = np.tile(synth.music_like(1.0, SR)[:, :1], (1, channels)) * 0.5
    path = write(tmp_path / "many.wav", x, SR)
    if how == "path":
        reader = AudioReader(path)
        blocks = list(reader)
        assert max(len(b) for b in blocks) * channels <= MAX_BLOCK_SAMPLES and len(blocks) > 1
        decoded = np.concatenate(blocks)
    else:
        reader, decoded = read_stream(open(path, "rb").read(), how)
    assert len(decoded) == SR and not reader.partial
    assert reader.block_frames * channels <= MAX_BLOCK_SAMPLES


@pytest.mark.parametrize("rate", [0, 4_000_000_000])
def test_a_wav_stating_no_usable_rate_says_so(tmp_path, rate):
    """libsndfile's own words were the message: "Internal error : SF_INFO struct
    incomplete." for a WAV header whose sample rate is 0 or 4 GHz."""
    data = bytearray(open(write(tmp_path / "x.wav", synth.sine(440.0, 0.2, SR), SR), "rb").read())
    data[24:28] = struct.pack("<I", rate)   # the fmt chunk's sample rate
    (tmp_path / "bad.wav").write_bytes(data)
    with pytest.raises(AudioReadError, match="no usable sample rate") as error:
        probe(tmp_path / "bad.wav")
    assert "Internal error" not in str(error.value)


# -- MP3: only a stated length can prove damage ---------------------------------------


def _mp3_with_silent_start(path) -> str:
    """A VBR MP3 (libsndfile writes LAME with a Xing frame) that starts with silence:
    its first frames have a low bit rate, so a length estimated from them is far off."""
    x = synth.music_like(6.0, SR)
    x = np.concatenate([np.zeros((3 * SR, x.shape[1]), np.float32), x])
    return write(path, x, SR, format="MP3")


def _first_frame_length(data: bytes) -> int:
    """Bytes of the MPEG-1 layer III frame at the start of ``data``."""
    assert data[0] == 0xFF and data[1] & 0xFE == 0xFA, "expected an MPEG-1 layer III frame"
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    rate = [44100, 48000, 32000][(data[2] >> 2) & 3]
    return 144 * bitrates[data[2] >> 4] * 1000 // rate + ((data[2] >> 1) & 1)


def test_mp3_with_xing_frame_is_complete(tmp_path):
    path = _mp3_with_silent_start(tmp_path / "x.mp3")
    assert b"Xing" in open(path, "rb").read(200) or b"Info" in open(path, "rb").read(200)
    reader = AudioReader(path)
    list(reader)
    assert reader.length_exact and not reader.partial
    assert reader.frames_read == reader.expected_frames


def test_mp3_without_xing_frame_is_not_partial(tmp_path):
    good = _mp3_with_silent_start(tmp_path / "x.mp3")
    data = open(good, "rb").read()
    path = tmp_path / "no-xing.mp3"
    path.write_bytes(data[_first_frame_length(data) :])  # drop the Xing frame
    reader = AudioReader(path)
    list(reader)
    assert not reader.length_exact
    # The estimate is far off (the old check called this file partial)...
    assert abs(reader.expected_frames - reader.frames_read) > SR
    # ...but an estimate is no evidence of damage.
    assert not reader.partial and reader.partial_reason is None


def test_xing_frame_is_found_after_an_id3v2_tag(tmp_path):
    data = open(_mp3_with_silent_start(tmp_path / "x.mp3"), "rb").read()
    # A tag whose bytes hold an MPEG frame header without a Xing frame (as embedded
    # cover pictures may): only a reader that skips the tag finds the real first frame.
    fake_frame = b"\xff\xfb\x90\x64" + b"\0" * 413
    body = b"APIC" + struct.pack(">I", len(fake_frame)) + b"\0\0" + fake_frame + b"\0" * 500
    size = len(body)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    path = tmp_path / "tagged.mp3"
    path.write_bytes(b"ID3\x03\x00\x00" + synchsafe + body + data)
    reader = AudioReader(path)
    list(reader)
    assert reader.length_exact and not reader.partial


def test_truncated_mp3_with_xing_frame_is_still_partial(tmp_path):
    good = _mp3_with_silent_start(tmp_path / "x.mp3")
    reader = AudioReader(cut(good, tmp_path / "cut.mp3", os.path.getsize(good) // 2))
    list(reader)
    assert reader.partial and "header says 9.00 s" in reader.partial_reason


@pytest.mark.parametrize("how", ["pipe", "file"])
def test_a_truncated_mp3_on_stdin_is_partial_as_the_file_is(tmp_path, how):
    """The same cut MP3 was partial as a file ("header says 9.00 s") and ok on stdin,
    where FFmpeg reads no length: stored healthy under --name. A whole one stays ok,
    with the length its Xing frame states."""
    good = _mp3_with_silent_start(tmp_path / "x.mp3")
    data = open(good, "rb").read()
    whole, decoded = read_stream(data, how)
    assert not whole.partial and whole.length_exact and whole.info.frames == AudioReader(good).info.frames
    assert whole.info.subtype == "MPEG_LAYER_III"   # FFmpeg's float decoder was "MP3FLOAT" on a pipe
    assert len(decoded) == pytest.approx(whole.info.frames, abs=0.1 * whole.info.samplerate)
    cut_reader, _ = read_stream(data[: len(data) // 2], how)
    assert cut_reader.partial and "header says 9.00 s" in cut_reader.partial_reason


@pytest.mark.parametrize("how", ["path", "pipe"])
def test_mp3_files_joined_are_partial_as_a_file_and_on_stdin(tmp_path, how):
    """``cat a.mp3 b.mp3``: the first file's Xing frame states its size and count, and
    mpg123 stopped there: the file was "ok" with half its audio (partial on stdin). An
    ID3v1 tag after the audio still reads whole and ok."""
    good = _mp3_with_silent_start(tmp_path / "x.mp3")
    data = open(good, "rb").read()

    def read(content: bytes, name: str) -> AudioReader:
        if how == "pipe":
            return read_stream(content, how)[0]
        (tmp_path / name).write_bytes(content)
        reader = AudioReader(tmp_path / name)
        list(reader)
        return reader

    joined = read(data + data, "joined.mp3")
    assert joined.partial, joined.partial_reason
    id3 = b"ID3\x03\x00\x00\x00\x00\x10\x00" + b"\0" * 2048   # the second file's own ID3v2 tag (2 KiB)
    assert read(data + id3 + data, "joined-tagged.mp3").partial
    # What may follow the audio of a whole file is no more audio: it stays ok (a
    # first version read these by FFmpeg, which stopped at them: "partial"). On a
    # pipe FFmpeg reads every MP3, and stops at padding as it always did.
    rng = np.random.default_rng(5)
    tails = [("id3v1", b"TAG" + b"\0" * 125)] + ([] if how == "pipe" else [
        ("padding", b"\0" * 30000), ("cover", b"APETAGEX" + rng.integers(0, 256, 60000, dtype=np.uint8).tobytes())])
    for name, tail in tails:
        whole = read(data + tail, f"{name}.mp3")
        assert not whole.partial and whole.length_exact, (name, whole.partial_reason)


@pytest.mark.parametrize("how", ["pipe", "file"])
def test_a_cut_aiff_on_stdin_is_partial_as_the_file_is(tmp_path, how):
    """A cut AIFF was partial as a file and ok on stdin, where FFmpeg states no length:
    its COMM chunk's frame count is read as a WAV's data size is."""
    good = write(tmp_path / "x.aiff", synth.music_like(3.0, SR), SR, format="AIFF")
    data = open(good, "rb").read()
    whole, _ = read_stream(data, how)
    assert not whole.partial and whole.length_exact and whole.info.frames == 3 * SR
    cut_reader, _ = read_stream(data[: len(data) // 2], how)
    assert cut_reader.partial and "header says 3.00 s" in cut_reader.partial_reason


def test_an_mp3_ffmpeg_encoded_at_8_khz_read_by_ffmpeg_is_whole(tmp_path):
    """FFmpeg writes its own encoder tag ("Lavc") where LAME writes "LAME", with the
    same encoder delay and padding, which its decoder trims: read as the Xing count
    without them, an 8 kHz file named .m4a was "header says 20.16 s, decoded 20.00 s"."""
    pcm = (synth.music_like(3.0, 8000) * 20000).astype(np.int16)
    data = av_encoded(pcm, 8000, "mp3", "libmp3lame", io.BytesIO())
    (tmp_path / "x.m4a").write_bytes(data)
    reader = AudioReader(tmp_path / "x.m4a")
    list(reader)
    assert reader.length_exact and not reader.partial, reader.partial_reason


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW", "PCM_24"])
def test_a_cut_aifc_of_a_frame_counted_type_is_partial(tmp_path, subtype):
    """libsndfile's AIFF path took the COMM count of PCM and float AIFF-C only: a cut
    u-law or A-law AIFF-C was "ok" (libsndfile clamps its own count)."""
    good = write(tmp_path / "x.aiff", synth.music_like(3.0, SR), SR, format="AIFF", subtype=subtype)
    reader = AudioReader(cut(good, tmp_path / "cut.aiff", os.path.getsize(good) * 2 // 3))
    list(reader)
    assert reader.partial and "header says 3.00 s" in reader.partial_reason


@pytest.mark.parametrize("kind", ["mp3", "aiff"])
def test_a_cut_file_misnamed_m4a_is_partial_as_under_its_own_name(tmp_path, kind):
    """An MP3 or AIFF named .m4a goes to FFmpeg, which states no length for them: cut,
    it was stored "ok" (and then answered its correctly named copy, by content)."""
    if kind == "mp3":
        good = _mp3_with_silent_start(tmp_path / "x.mp3")
    else:
        good = write(tmp_path / "x.aiff", synth.music_like(3.0, SR), SR, format="AIFF")
    size = os.path.getsize(good)
    whole = AudioReader(cut(good, tmp_path / "whole.m4a", size))
    list(whole)
    assert not whole.partial and whole.length_exact
    for name in (f"cut.{kind}", "cut.m4a"):
        reader = AudioReader(cut(good, tmp_path / name, size // 2))
        list(reader)
        assert reader.partial and "header says" in reader.partial_reason, name


# -- Ogg: a cut file lacks its end-of-stream page -------------------------------------


@pytest.mark.parametrize("subtype,sr,ext", [("VORBIS", 44100, "ogg"), ("OPUS", 48000, "opus")])
def test_cut_ogg_is_partial(tmp_path, subtype, sr, ext):
    good = write(tmp_path / f"good.{ext}", synth.music_like(4.0, sr), sr, format="OGG", subtype=subtype)
    reader, _ = read_all(good)
    assert not reader.partial, reader.partial_reason
    data = open(good, "rb").read()
    last_page = data.rfind(b"OggS")
    for size in (len(data) - 1, last_page + 30, last_page, int(len(data) * 0.8), int(len(data) * 0.5)):
        reader, decoded = read_all(cut(good, tmp_path / f"cut{size}.{ext}", size))
        assert reader.partial, size
        assert reader.partial_reason.startswith("Ogg stream ends without its end-of-stream page: truncated after")
        assert f"truncated after {len(decoded) / sr:.2f} s" in reader.partial_reason


# -- Ogg: a chained file is Ogg files one after another --------------------------------


def _chain(tmp_path, *links: tuple[str, int, int]) -> str:
    """Ogg files of (subtype, rate, channels), 1.5 s each, concatenated into one (as
    internet-radio recorders write a new link at each track)."""
    parts = []
    for number, (subtype, rate, channels) in enumerate(links):
        x = synth.sine(330.0 * (number + 1), 1.5, rate, channels=channels)
        parts.append(open(write(tmp_path / f"link{number}.ogg", x, rate, format="OGG", subtype=subtype), "rb").read())
    path = tmp_path / "chained.ogg"
    path.write_bytes(b"".join(parts))
    return str(path)


# FFmpeg does not trim the last Vorbis block of a link that is not the file's last to
# its stated length: each link may give up to this much more than was encoded.
_UNTRIMMED_S = 0.05


@pytest.mark.parametrize("subtype,rate", [("VORBIS", 44100), ("OPUS", 48000)])
def test_a_chained_ogg_is_read_to_its_end(tmp_path, subtype, rate):
    """libsndfile read the first link only and called it complete: 5 s of a 10 s file."""
    path = _chain(tmp_path, (subtype, rate, 1), (subtype, rate, 1), (subtype, rate, 1))
    reader, decoded = read_all(path)
    assert not reader.partial, reader.partial_reason
    assert 4.5 - 0.01 <= len(decoded) / rate <= 4.5 + _UNTRIMMED_S * 3
    assert (reader.info.format, reader.info.subtype, reader.info.samplerate) == ("OGG", subtype, rate)


@pytest.mark.parametrize("second,changed", [
    (("VORBIS", 48000, 1), "Vorbis, 48000 Hz, 1 channel after Vorbis, 44100 Hz, 1 channel"),
    (("VORBIS", 44100, 2), "Vorbis, 44100 Hz, 2 channels after Vorbis, 44100 Hz, 1 channel"),
])
def test_a_chained_ogg_whose_link_changes_format_is_partial_and_says_why(tmp_path, second, changed):
    path = _chain(tmp_path, ("VORBIS", 44100, 1), ("VORBIS", 44100, 1), second)
    reader, decoded = read_all(path)
    assert 3.0 - 0.01 <= len(decoded) / SR <= 3.0 + _UNTRIMMED_S * 2   # the links before the change
    assert reader.partial
    assert f"link 3 of this chained Ogg is {changed}" in reader.partial_reason
    assert reader.partial_reason.endswith("so link 3 was not read")


def test_a_chained_ogg_libsndfile_reads_alone_is_partial(tmp_path, monkeypatch):
    """Where FFmpeg cannot open the file, libsndfile's first link is kept, as partial."""
    import fpcli.audio
    from fpcli.audio.pyav import NotAv

    def refuse(path, **kwargs):
        raise NotAv("refused")

    monkeypatch.setattr(fpcli.audio, "AvSource", refuse)
    reader, decoded = read_all(_chain(tmp_path, ("VORBIS", SR, 1), ("VORBIS", SR, 1)))
    assert len(decoded) == int(1.5 * SR)
    assert reader.partial and reader.partial_reason == "a chained Ogg of 2 links: only the first (1.50 s) was read"


def test_streams_side_by_side_in_one_ogg_are_one_link(tmp_path):
    """Multiplexed streams begin together (their first pages all at the start): not a chain."""
    from fpcli.audio import headers

    path = str(tmp_path / "two-streams.ogg")
    with av.open(path, "w", format="ogg") as out:
        streams: list[Any] = [out.add_stream("opus", rate=48000, layout="mono") for _ in range(2)]
        for start in range(0, 48000, 960):
            for stream in streams:
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
                frame.sample_rate, frame.pts = 48000, start
                for packet in stream.encode(frame):
                    out.mux(packet)
        for stream in streams:
            for packet in stream.encode(None):
                out.mux(packet)
    assert [link.codec for link in headers.ogg_links(path)] == ["Opus"]
    assert len(headers.ogg_links(_chain(tmp_path, ("OPUS", 48000, 1), ("OPUS", 48000, 2)))) == 2


# -- files the analyzers cannot work with ---------------------------------------------


def _wav_with_rate(tmp_path, rate: int) -> str:
    """A valid 8 kHz WAV whose fmt chunk then claims ``rate`` Hz."""
    path = write(tmp_path / f"r{rate}.wav", synth.sine(440, 0.5, 8000), 8000)
    data = bytearray(open(path, "rb").read())
    fmt = data.find(b"fmt ")
    block_align = struct.unpack("<H", data[fmt + 20 : fmt + 22])[0]
    data[fmt + 12 : fmt + 20] = struct.pack("<II", rate, rate * block_align)  # rate, byte rate
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    return path


@pytest.mark.parametrize("rate", [1, 7, 3000, 7999])
def test_rates_below_8k_are_refused(tmp_path, rate):
    path = _wav_with_rate(tmp_path, rate)
    assert sf.info(path).samplerate == rate  # libsndfile decodes it: the check is ours
    expect_error(path, f"sample rate {rate} Hz is below the 8 kHz minimum")
    with pytest.raises(AudioReadError):
        probe(path)


def test_absurd_rates_are_refused(tmp_path):
    path = _wav_with_rate(tmp_path, 2_000_000)
    expect_error(path, "sample rate 2000000 Hz is above the 768 kHz maximum")


def test_rates_at_the_limits_are_read(tmp_path):
    for rate in (8000, 768000):
        reader, decoded = read_all(_wav_with_rate(tmp_path, rate))
        assert reader.info.samplerate == rate and len(decoded) == 4000


def test_float_wav_not_scaled_to_audio_is_refused(tmp_path):
    x = synth.sine(440, 1.0, SR)
    x[30000] = 3e18
    path = write(tmp_path / "huge.wav", x, SR, subtype="FLOAT")
    expect_error(path, "float samples up to 3e+18: not audio scaled to ±1")


def test_loud_but_finite_float_wav_is_read(tmp_path):
    """Overshoot well above full scale is still audio (the limit is 1e6)."""
    x = 8.0 * synth.sine(440, 1.0, SR, dbfs=0)
    reader, decoded = read_all(write(tmp_path / "loud.wav", x, SR, subtype="FLOAT"))
    assert not reader.partial and float(np.abs(decoded).max()) == pytest.approx(float(np.abs(x).max()))


def test_infinite_samples_are_silenced_and_reported(tmp_path):
    x = synth.sine(440, 1.0, SR, channels=2)
    x[5000, 0], x[6000, 1], x[7000:7003, 0] = np.inf, -np.inf, np.nan
    reader, decoded = read_all(write(tmp_path / "inf.wav", x, SR, subtype="FLOAT"))
    assert np.isfinite(decoded).all() and decoded[5000, 0] == 0 and decoded[6000, 1] == 0
    assert reader.nonfinite_samples == 5
    assert reader.partial and reader.partial_reason == "5 non-finite samples were replaced by silence"


def test_a_plain_ogg_is_not_read_twice_to_find_links(tmp_path, monkeypatch):
    """Every Ogg file was scanned whole for chained links before its decoding: a second
    read of the file. Its last page's serial number says whether there is more than one
    link; only a chained file (or one whose streams are multiplexed) is scanned whole."""
    from fpcli.audio import headers

    limits = []
    real = headers._bos_candidates
    monkeypatch.setattr(headers, "_bos_candidates", lambda fh, limit=None: limits.append(limit) or real(fh, limit))
    (tmp_path / "plain").mkdir()
    (tmp_path / "chained").mkdir()
    plain = _chain(tmp_path / "plain", ("VORBIS", 44100, 1))
    chained = _chain(tmp_path / "chained", ("VORBIS", 44100, 1), ("VORBIS", 44100, 1))
    assert len(headers.ogg_links(plain)) == 1 and len(headers.ogg_links(chained)) == 2
    assert limits == [headers._SCAN_BYTES, None]


# -- Streams on stdin: the length a header states, and how a pipe ends -----------------


def encoded_to_pipe(x: np.ndarray, sr: int, container: str, codec: str) -> bytes:
    """``x`` (n, 2) as FFmpeg writes it to a pipe: it cannot fill in the sizes it only
    knows at the end (a WAV's data size, a FLAC's total samples)."""
    return av_encoded(to_int16(x), sr, container, codec, PipeSink())


def written(x: np.ndarray, sr: int, fmt: str, subtype: str = "PCM_16") -> bytes:
    """``x`` as libsndfile writes a file of ``fmt``: every size in its header filled in."""
    buffer = io.BytesIO()
    sf.write(buffer, x, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("how", ["pipe", "seekable"])
@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_stream_is_held_to_the_length_its_header_states(fmt, how):
    """A WAV or FLAC stream cut short was "ok" (and a search could not leave the
    query's own recording out): FFmpeg reports no WAV length from a pipe, and neither
    length was taken as stated. Now both are, as for a file."""
    x = synth.music_like(4.0, SR, seed=4)
    data = written(x, SR, fmt)
    reader, decoded = read_stream(data, how)
    assert reader.length_exact and reader.expected_frames == len(x) == len(decoded)
    assert not reader.partial, reader.partial_reason
    reader, decoded = read_stream(data[: frame_start_after(data, len(data) * 3 // 5)], how)
    assert reader.partial and reader.info.frames == len(x)
    assert reader.partial_reason == f"header says 4.00 s, decoded {len(decoded) / SR:.2f} s"


def frame_start_after(data: bytes, offset: int) -> int:
    """Where the first packet at or after ``offset`` starts: a cut there leaves whole
    frames (a cut inside a FLAC frame is a decoding failure, partial for that reason)."""
    with av.open(io.BytesIO(data)) as container:
        return next(p.pos for p in container.demux(container.streams.audio[0]) if p.pos >= offset)


@pytest.mark.parametrize("container,codec", [("wav", "pcm_s16le"), ("flac", "flac")])
def test_a_stream_from_a_streaming_encoder_states_no_length(container, codec):
    """Written to a pipe, a WAV's data size is a placeholder (0xFFFFFFFF) and a FLAC's
    total samples 0 ("unknown"): neither is taken as a length, so its end is no damage."""
    x = synth.music_like(3.0, SR, seed=5)
    reader, decoded = read_stream(encoded_to_pipe(x, SR, container, codec), "pipe")
    assert len(decoded) == len(x) and not reader.length_exact and not reader.partial


@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF, 0x7FFFF000])
def test_a_wav_data_size_meaning_until_the_end_is_no_length(data_size):
    """Writers that cannot seek back put 0, 0xFFFFFFFF (FFmpeg) or 0x7FFFF000 (SoX)
    where the data size goes: the stream is read to its end and not called cut."""
    data = bytearray(written(synth.music_like(3.0, SR, seed=6), SR, "WAV"))
    size_at = data.index(b"data") + 4
    data[size_at : size_at + 4] = struct.pack("<I", data_size)
    data[4:8] = struct.pack("<I", 0xFFFFFFFF if data_size == 0xFFFFFFFF else data_size + 36 if data_size else 0)
    reader, decoded = read_stream(bytes(data[: len(data) // 2]), "pipe")
    assert not reader.length_exact and not reader.partial and len(decoded) > SR


@pytest.mark.parametrize("how", ["pipe", "seekable"])
def test_an_ogg_stream_without_its_end_page_is_partial(how):
    """A cut Ogg file is partial (no end-of-stream page); the same bytes on stdin were
    "ok". The stream's last bytes are kept as it is read, and judged as a file's."""
    data = written(synth.music_like(4.0, SR, seed=7), SR, "OGG", "VORBIS")
    reader, _ = read_stream(data, how)
    assert not reader.partial, reader.partial_reason
    reader, decoded = read_stream(data[: len(data) * 4 // 5], how)
    assert reader.partial
    assert reader.partial_reason == ("Ogg stream ends without its end-of-stream page: "
                                     f"truncated after {len(decoded) / SR:.2f} s")


def test_rebuffer_hands_on_what_it_holds_when_no_more_input_is_waiting():
    """Blocks fill up while input is waiting; once none is, what is held goes on at
    once, so a live source never keeps decoded audio back for a full block."""
    waiting = iter([True, True, False, True, True, True, True])
    chunks = (np.full((300, 1), i, np.float32) for i in range(7))
    blocks = list(rebuffer(chunks, 1000, more_waiting=lambda: next(waiting)))
    assert [len(b) for b in blocks] == [900, 1000, 200]
    assert np.array_equal(np.concatenate(blocks)[:, 0], np.repeat(np.arange(7), 300))


def test_a_recorded_stream_keeps_its_true_head_and_tail_across_seeks(monkeypatch):
    """FFmpeg seeks a redirected file (an Ogg's length is read at its end, then it goes
    back): the bytes kept are still the stream's first and last ones."""
    from fpcli.audio.pyav import RecordedStream

    monkeypatch.setattr(RecordedStream, "HEAD_BYTES", 100)
    monkeypatch.setattr(RecordedStream, "TAIL_BYTES", 70)
    data = bytes(np.random.default_rng(3).integers(0, 256, 1000, dtype=np.uint8))
    recorded = RecordedStream(io.BytesIO(data))
    recorded.read(60)
    recorded.seek(-1, os.SEEK_END)
    recorded.read(30)                 # the last byte, then the end: not where the reading goes on from
    recorded.seek(20)
    recorded.read(10)                 # read again
    recorded.seek(60)
    while recorded.read(33):
        pass
    recorded.seek(-1, os.SEEK_END)   # FFmpeg's look at the size, at the end of an Ogg stream
    recorded.seek(0, os.SEEK_END)
    assert recorded.read(33) == b"" and recorded.ended
    assert bytes(recorded.head) == data[:100]
    assert bytes(recorded.tail) == data[-len(recorded.tail):] and len(recorded.tail) >= 70


def test_a_matroska_file_with_a_large_attachment_opens(tmp_path):
    """A 40 MB attachment (cover art) at a Matroska file's start is read while FFmpeg
    opens the file: a bound on the bytes read while opening refused it as not audio."""
    x = noise(2.0, 2)
    path = tmp_path / "attached.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        stream: Any = out.add_stream("pcm_s16le", rate=SR, layout="stereo")
        out.add_attachment("cover.jpg", "image/jpeg", b"\xff" * (40 << 20))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(to_int16(x).T), format="s16p", layout="stereo")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    reader, decoded = read_all(str(path))
    assert len(decoded) == len(x) and not reader.partial


def test_a_header_of_endless_empty_chunks_is_walked_a_bounded_number_of_times():
    """A 50 MB CAF of zero-size chunks was walked to its end for a length (1.6 s)."""
    from fpcli.audio import headers

    class Counted(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            Counted.reads += 1
            return super().read(size)

    caf = b"caff\x00\x01\x00\x00" + (b"free" + struct.pack(">q", 0)) * (2 * headers.MAX_HEADER_CHUNKS)
    assert headers.caf_stated_frames(Counted(caf)) is None
    assert Counted.reads <= headers.MAX_HEADER_CHUNKS + 2


def test_an_aiff_written_to_a_pipe_by_sox_states_no_length():
    """SoX cannot seek back on a pipe: its AIFF states a FORM size of 0x7F0000xx and
    0x7F000000 bytes of frames. Taken as a length, a complete stream was "partial:
    header says 12078.83 s", and search no longer knew the query's own recording."""
    data = bytearray(written(synth.music_like(3.0, SR, seed=6), SR, "AIFF"))
    frames_at = data.index(b"COMM") + 10
    data[frames_at : frames_at + 4] = struct.pack(">I", 0x7F000000 // 4)   # 16-bit stereo
    # A comment chunk as SoX writes the input's tags (lyrics: 5 KB) goes before COMM.
    comment = b"COMT" + struct.pack(">I", 5110) + struct.pack(">H", 1) + b"\0" * 8 + b"x" * 5100
    data = data[:12] + comment + data[12:]
    data[4:8] = struct.pack(">I", 0x7F000000 + 46 + len(comment))
    reader, decoded = read_stream(bytes(data), "pipe")
    assert len(decoded) == 3 * SR and not reader.length_exact and not reader.partial, reader.partial_reason


def test_an_aiff_of_2_gb_or_more_outside_sox_s_placeholder_keeps_its_length():
    """Only SoX's placeholder count states no length: a real AIFF of 2.2 GB is still
    held to the count its COMM chunk states."""
    from fpcli.audio.headers import stated_frames

    data = bytearray(written(synth.music_like(1.0, SR, seed=6), SR, "AIFF"))
    for form_size in (0x83000000, 0x7F000050):   # SoX's size, but a count that is no placeholder
        data[4:8] = struct.pack(">I", form_size)
        assert stated_frames(bytes(data)) == SR


@pytest.mark.parametrize("how", ["pipe", "seekable"])
def test_an_mp3_on_stdin_is_as_long_as_the_file_its_lame_tag_states(tmp_path, how):
    """FFmpeg trims an encoder's end padding only where it can seek: on stdin a 10.0 s
    MP3 decoded 10.006 s (the file 10.0 s), and the padding was analysed as audio."""
    x = synth.music_like(4.0, 44100, seed=8)
    path = write(tmp_path / "x.mp3", x, 44100, format="MP3")
    file_reader = AudioReader(path)
    from_file = np.concatenate(list(file_reader))
    reader, decoded = read_stream(open(path, "rb").read(), how)
    assert reader.length_exact and len(from_file) == reader.expected_frames
    assert len(decoded) == len(from_file) and reader.frames_read == len(from_file) and not reader.partial


def test_an_mp3_joined_on_a_pipe_at_a_low_rate_is_still_partial(tmp_path):
    """Held back up to 4,095 frames as padding, 0.2 s of a second MP3 joined on at 8 kHz
    (1,600 frames) was dropped, and the stream read as complete; it was partial before."""
    first = write(tmp_path / "a.mp3", synth.music_like(3.0, 8000, seed=8), 8000, format="MP3")
    second = write(tmp_path / "b.mp3", synth.music_like(0.2, 8000, seed=9), 8000, format="MP3")
    reader, _ = read_stream(open(first, "rb").read() + open(second, "rb").read(), "pipe")
    assert reader.length_exact and reader.partial, reader.frames_read


@pytest.mark.parametrize("column", [1, 3, 4])   # R, LFE, Ls
def test_surround_opus_channels_come_in_wav_order(tmp_path, column):
    """libsndfile gives Ogg Opus/Vorbis channels in Vorbis order (L C R Ls Rs LFE): a
    5.1 file's LFE was measured as a surround, a surround left out, and the stereo
    width taken from L and C. The reader hands on WAV order, as FFmpeg does."""
    tone = np.zeros((3 * 48000, 6))
    tone[:, column] = 0.5 * np.sin(2 * np.pi * 997 * np.arange(len(tone)) / 48000)
    path = encode_av(tmp_path / "t.opus", tone, 48000, "libopus", "flt", "5.1")   # FFmpeg's layout: WAV order
    reader = AudioReader(path)
    assert reader.info.format == "OGG" and reader.info.channels == 6   # read by libsndfile, not FFmpeg
    power = sum((block.astype(np.float64) ** 2).sum(axis=0) for block in reader)
    assert int(np.argmax(power)) == column and power[column] > 100 * np.delete(power, column).max()
