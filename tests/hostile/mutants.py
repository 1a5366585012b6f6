"""A seeded generator of hostile audio libraries: small generated files and mutants of
them (truncations, byte flips, zeroed blocks, lying headers, wrong extensions, values
the analyzers reject), special files (FIFOs, folders and symlink loops named like
audio, unreadable files) and odd names (not UTF-8, a newline, Rich markup, very long).

Every case states what a run must report for it: ``ok``, ``partial``, ``error`` or a
set of acceptable statuses (a random byte flip may or may not hit the audio). Nothing
is committed: every file is generated from the seed.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

ANY = frozenset({"ok", "partial", "error"})
OK = frozenset({"ok"})
PARTIAL = frozenset({"partial"})
ERROR = frozenset({"error"})
SOUND = frozenset({"ok", "partial"})

# (extension, soundfile format, subtype)
BASES = (
    (".wav", "WAV", "PCM_16"),
    (".wav", "WAV", "FLOAT"),
    (".flac", "FLAC", "PCM_16"),
    (".ogg", "OGG", "VORBIS"),
    (".mp3", "MP3", "MPEG_LAYER_III"),
    (".aiff", "AIFF", "PCM_16"),
)
# Names a file system accepts that have broken CLIs before.
ODD_NAMES = (
    b"x[/bold]y.wav", b"markup[x]y.wav", b"[red]red[/red].wav", b"not-utf8-\xff\xfe.wav",
    b"new\nline.wav", b"tab\there.wav", b"-starts-with-dash.wav", b" spaces .wav",
    b"caf\xc3\xa9-nfc.wav", b"cafe\xcc\x81-nfd.wav", b"%s%n{0}.wav", b"\x1b[31mansi.wav",
    b"L" * 240 + b".wav",
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One entry of a hostile library: where it is, what it is, what a run must say."""

    path: bytes                 # the exact name on disk
    kind: str                   # e.g. "truncate 0.30 of ogg/VORBIS"
    expect: frozenset[str]      # acceptable statuses
    reason: str = ""            # text the error must contain (when it must fail)
    scan_problem: bool = False  # reported by the scan (a special file), never decoded

    @property
    def name(self) -> str:
        return os.fsdecode(self.path)


def signal(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """Music-ish: two notes, clicks and a little noise, peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(110, 880) * t) + 0.1 * np.sin(2 * np.pi * rng.uniform(1000, 3000) * t)
    x[:: max(1, rate // 4)] += 0.5
    x += 0.02 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def write_base(path: Path, fmt: str, subtype: str, *, seconds: float = 1.0, rate: int = 16000,
               channels: int = 1, seed: int = 0) -> bytes:
    sf.write(str(path), signal(seconds, rate, channels, seed), rate, format=fmt, subtype=subtype)
    return path.read_bytes()


def wav_bytes(samples: np.ndarray, rate: int, *, float32: bool = False) -> bytes:
    """A canonical WAV (PCM 16 or IEEE float 32) written by hand, so its header can lie."""
    samples = np.atleast_2d(samples.T).T
    channels = samples.shape[1]
    if float32:
        data, fmt_tag, bits = samples.astype("<f4").tobytes(), 3, 32
    else:
        data, fmt_tag, bits = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes(), 1, 16
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def lie(wav: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(wav)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# Byte offsets in a canonical WAV header.
RIFF_SIZE, CHANNELS, RATE, BYTE_RATE, BITS, DATA_SIZE = 4, 22, 24, 28, 34, 40


class Library:
    """Builds a hostile library under ``root`` from ``seed``; ``cases`` lists it."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = Path(root)
        self.rng = np.random.default_rng(seed)
        self.cases: list[Case] = []
        self._n = 0
        self.root.mkdir(parents=True, exist_ok=True)

    def _name(self, stem: str, ext: str) -> bytes:
        self._n += 1
        return os.fsencode(self.root) + b"/" + f"{self._n:04d}-{stem}{ext}".encode()

    def add(self, data: bytes, stem: str, ext: str, kind: str, expect: frozenset[str], reason: str = "",
            name: bytes | None = None) -> Case:
        path = name or self._name(stem, ext)
        os.makedirs(os.path.dirname(path), exist_ok=True)  # "x[/bold]y.wav" is y.wav in a folder "x["
        with open(path, "wb") as fh:
            fh.write(data)
        case = Case(path, kind, expect, reason)
        self.cases.append(case)
        return case

    # -- the generators ----------------------------------------------------------------------

    def bases(self) -> dict[str, bytes]:
        """One small clean file per format (each is also a case: ``ok``)."""
        out = {}
        tmp = self.root / ".base"
        tmp.mkdir(exist_ok=True)
        for i, (ext, fmt, subtype) in enumerate(BASES):
            data = write_base(tmp / f"b{i}{ext}", fmt, subtype, seed=i, channels=1 + i % 2)
            out[f"{fmt}/{subtype}{ext}"] = data
            self.add(data, f"clean-{fmt}-{subtype}", ext, f"clean {fmt}/{subtype}", OK)
        for child in tmp.iterdir():
            child.unlink()
        tmp.rmdir()
        return out

    def mutants(self, bases: dict[str, bytes], count: int) -> None:
        """``count`` random mutants of the bases: truncations, byte flips, zeroed blocks,
        wrong extensions, random bytes."""
        keys = sorted(bases)
        ops: list[Callable[[str, bytes], None]] = [self._truncate, self._flip, self._zero, self._rename,
                                                    self._header_flip]
        for _ in range(count):
            key = keys[self.rng.integers(len(keys))]
            ops[self.rng.integers(len(ops))](key, bases[key])

    def _ext(self, key: str) -> str:
        return "." + key.rsplit(".", 1)[1]

    def _truncate(self, key: str, data: bytes) -> None:
        fraction = float(self.rng.choice([0.0, 0.001, 0.02, 0.3, 0.6, 0.9, 0.99]))
        cut = int(len(data) * fraction)
        exact = key.split("/")[0] in ("WAV", "OGG", "FLAC", "AIFF")
        if cut < 12:  # not even a header
            expect, reason = ERROR, ""
        elif exact:
            # WAV and AIFF state their data size, FLAC its frame count, Ogg ends with an
            # end-of-stream page: a cut file is never "ok"
            # (0.99 of a 1 s file misses 10 ms: within the 0.1 s tolerance, so "ok" too)
            expect = PARTIAL if 0.3 <= fraction <= 0.9 else SOUND if fraction > 0.9 else frozenset({"partial", "error"})
            if key.startswith("OGG") and fraction <= 0.6:
                # a 1 s Vorbis file is 9 KiB, 3.7 of them setup headers, and its first audio
                # page ends past 60 %: cut before it, no audio decodes ("error" is right)
                expect = frozenset({"partial", "error"})
            reason = ""
        else:
            expect, reason = ANY, ""
        self.add(data[:cut], "trunc", self._ext(key), f"truncate {fraction:.3f} of {key}", expect, reason)

    def _flip(self, key: str, data: bytes) -> None:
        out = bytearray(data)
        flips = int(self.rng.integers(1, 64))
        for _ in range(flips):
            i = int(self.rng.integers(len(out)))
            out[i] ^= 1 << int(self.rng.integers(8))
        self.add(bytes(out), "flip", self._ext(key), f"{flips} bit flips in {key}", ANY)

    def _header_flip(self, key: str, data: bytes) -> None:
        out = bytearray(data)
        for _ in range(int(self.rng.integers(1, 6))):
            out[int(self.rng.integers(min(64, len(out))))] = int(self.rng.integers(256))
        self.add(bytes(out), "hdrflip", self._ext(key), f"header bytes randomised in {key}", ANY)

    def _zero(self, key: str, data: bytes) -> None:
        size = int(self.rng.choice([16, 512, 4096, 8192]))
        start = int(self.rng.integers(0, max(1, len(data) - size)))
        out = bytearray(data)
        out[start:start + size] = bytes(min(size, len(data) - start))
        self.add(bytes(out), "zero", self._ext(key), f"{size} zero bytes at {start} in {key}", ANY)

    def _rename(self, key: str, data: bytes) -> None:
        ext = str(self.rng.choice([".wav", ".flac", ".ogg", ".mp3", ".aiff", ".m4a", ".opus", ".wma"]))
        # libsndfile sniffs content, FFmpeg probes it: a wrong extension may still decode
        self.add(data, "wrongext", ext, f"{key} named {ext}", ANY)

    def lying_headers(self) -> None:
        """Hand-written WAVs whose header claims what the data is not."""
        clean = wav_bytes(signal(1.0, 16000, 1, 7)[:, 0], 16000)
        for value in (0, 1, 7, 3000, 7999):
            self.add(lie(clean, RATE, "<I", value), f"rate{value}", ".wav", f"WAV header claims {value} Hz",
                     ERROR, "Hz" if value else "")
        for value in (800000, 0xFFFFFFFF):
            self.add(lie(clean, RATE, "<I", value), f"rate{value}", ".wav", f"WAV header claims {value} Hz",
                     ERROR)
        self.add(lie(clean, CHANNELS, "<H", 0), "ch0", ".wav", "WAV header claims 0 channels", ERROR)
        self.add(lie(clean, CHANNELS, "<H", 65535), "ch65535", ".wav", "WAV header claims 65535 channels", ERROR)
        for bits in (0, 3, 64):
            self.add(lie(clean, BITS, "<H", bits), f"bits{bits}", ".wav", f"WAV header claims {bits} bits", ANY)
        self.add(lie(clean, DATA_SIZE, "<I", 0xFFFFFFFF), "datahuge", ".wav", "WAV data size 4 GiB", SOUND)
        self.add(lie(clean, DATA_SIZE, "<I", 0), "data0", ".wav", "WAV data size 0", ANY)
        self.add(lie(clean, RIFF_SIZE, "<I", 0), "riff0", ".wav", "RIFF size 0", ANY)
        self.add(lie(clean, BYTE_RATE, "<I", 1), "byterate1", ".wav", "WAV byte rate 1", ANY)

    def rejected_values(self) -> None:
        """Decodable files the analyzers must refuse, or repair, with a reason."""
        x = signal(1.0, 16000, 1, 8)[:, 0]
        self.add(wav_bytes(x * 1e18, 16000, float32=True), "float1e18", ".wav", "float WAV with samples of 1e18",
                 ERROR, "not audio scaled")
        for bad in ("nan", "inf"):
            y = x.copy()
            y[100:5000] = float(bad)
            self.add(wav_bytes(y, 16000, float32=True), f"float-{bad}", ".wav", f"float WAV with {bad} samples",
                     PARTIAL)
        self.add(wav_bytes(np.full(16000, np.nan, dtype=np.float32), 16000, float32=True), "all-nan", ".wav",
                 "float WAV of NaN only", SOUND)
        low = wav_bytes(signal(1.0, 3000, 1, 9)[:, 0], 3000)
        self.add(low, "rate3000-real", ".wav", "a real 3000 Hz WAV", ERROR, "Hz")
        self.add(wav_bytes(x[:1], 16000), "one-frame", ".wav", "a 1-frame WAV", SOUND)
        self.add(wav_bytes(x[:0], 16000), "zero-frames", ".wav", "a WAV with no frames", ERROR)
        ogg = write_base(self.root / "long.ogg", "OGG", "VORBIS", seconds=6.0, seed=10)
        os.unlink(self.root / "long.ogg")
        self.add(ogg[: len(ogg) * 6 // 10], "long-ogg-cut", ".ogg", "a 6 s Ogg Vorbis cut at 60 %", PARTIAL)
        self.add(b"", "empty", ".flac", "an empty file", ERROR)
        self.add(self.rng.bytes(20000), "random", ".mp3", "random bytes named .mp3", ANY)
        self.add(b"not audio at all\n" * 100, "text", ".ogg", "text named .ogg", ERROR)
        self.add(b"RIFF\x00\x00\x00\x00WAVE", "riffonly", ".wav", "a bare RIFF header", ERROR)
        self.add(b"fLaC" + self.rng.bytes(200), "flacmagic", ".flac", "FLAC magic then garbage", ERROR)
        self.add(b"OggS" + self.rng.bytes(300), "oggmagic", ".ogg", "Ogg magic then garbage", ERROR)
        self.add(b"ID3\x04\x00\x00\x00\x00\x00\x00" + self.rng.bytes(300), "id3only", ".mp3",
                 "an ID3 tag then garbage", ANY)

    def special_files(self) -> None:
        """Things named like audio that are not regular files (reported by the scan)."""
        def special(stem: str, ext: str, kind: str, make: Callable[[bytes], None], reason: str = "") -> None:
            path = self._name(stem, ext)
            make(path)
            self.cases.append(Case(path, kind, ERROR, reason, scan_problem=True))

        special("fifo", ".wav", "a FIFO named .wav", os.mkfifo, "FIFO")
        special("loop", ".flac", "a symlink loop named .flac", lambda p: os.symlink(p, p), "symlink loop")
        special("dangling", ".mp3", "a dangling symlink", lambda p: os.symlink(p + b".missing", p),
                "no such file")
        # a folder named like audio is walked into, not reported: it holds one clean file
        folder = self._name("folder", ".wav")
        os.mkdir(folder)
        inner = folder + b"/inside.wav"
        with open(inner, "wb") as fh:
            fh.write(wav_bytes(signal(0.5, 16000, 1, 11)[:, 0], 16000))
        self.cases.append(Case(inner, "a file inside a folder named .wav", OK))

    def unreadable(self) -> Case:
        """A file without read permission (only applies to a process without root's override)."""
        case = self.add(wav_bytes(signal(0.5, 16000, 1, 12)[:, 0], 16000), "unreadable", ".wav",
                        "a file without read permission", ERROR, "permission denied")
        os.chmod(case.path, 0)
        return case

    def odd_names(self) -> None:
        clean = wav_bytes(signal(0.5, 16000, 1, 13)[:, 0], 16000)
        for raw in ODD_NAMES:
            self._n += 1
            self.add(clean + bytes([self._n % 256]) * 2, "", "", f"odd name {raw[:40]!r}", OK,
                     name=os.fsencode(self.root) + b"/" + raw)


def build(root: Path, seed: int, mutants: int, *, unreadable: bool = False) -> list[Case]:
    """The whole hostile library: clean bases, ``mutants`` random mutants, lying
    headers, rejected values, special files and odd names."""
    library = Library(root, seed)
    bases = library.bases()
    library.mutants(bases, mutants)
    library.lying_headers()
    library.rejected_values()
    library.special_files()
    library.odd_names()
    if unreadable:
        library.unreadable()
    return library.cases


def is_special(path: bytes) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True
