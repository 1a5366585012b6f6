"""Build the labelled music-similarity / tempo corpus outside the repository.

    python benchmarks/quality/make_corpus.py --out /tmp/fpcli-quality

Three parts, all cut to 30 s stereo 44.1 kHz FLAC under OUT, described by OUT/manifest.json:

1. Real albums from Debian game-soundtrack packages (nexuiz-music, ufoai-music,
   planetblupi-music-ogg), one album per composer, labelled album and a coarse style.
2. The Planet Blupi MIDI files (planetblupi-music-midi) rendered with FluidSynth: the
   same pieces as the OGG album, rendered another way, so each OGG/MIDI pair shares a
   duplicate group.
3. Generated MIDI clips with ground truth (tempo, meter, swing, instrument family,
   drums), written by the tiny Standard MIDI File writer below and rendered with
   FluidSynth and the FluidR3 General MIDI soundfont.

Idempotent: a clip that already exists is not rebuilt (delete OUT to start over).
Needs the command-line tools ``sox`` (with Ogg support) and ``fluidsynth``.

``--openmsx`` builds a separate tempo set instead (give it its own OUT): 30 s windows of
the OpenMSX MIDI compositions (Debian package openttd-openmsx), each inside a stretch of
constant notated tempo and time signature, rendered like the Planet Blupi MIDI files and
labelled with the notated tempo of the beat the meter implies. Read it with
``evaluate.py --tempo-only``. ``--simutrans`` builds the same kind of set from the
Simutrans MIDI music (Debian package simutrans-data): other composers, kept out of
every choice of fpcli's tempo estimator, so a held-out check of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CLIP_S = 30.0
RATE = 44100
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
NEXUIZ_PK3 = Path("/usr/share/games/nexuiz/data/music.pk3")
UFOAI_PK3 = Path("/usr/share/games/ufoai/base/0music.pk3")
BLUPI_DIR = Path("/usr/share/planetblupi/music")
OPENMSX_DIR = Path("/usr/share/games/openttd/baseset/openmsx")
SIMUTRANS_DIR = Path("/usr/share/games/simutrans/music")

# Album -> (package, archive or folder, member names, composer, style). Composers come from
# the files' Vorbis comments and /usr/share/doc/PACKAGE/copyright; styles are assigned per
# package (see README.md for the rationale).
ELYSIS = ["brainsukker", "breakdown-easy", "calling-bogus", "chaos-fog", "infight", "neuronal-diving",
          "subcities", "thru-the-mirror"]
BLKRBT = ["brokenlight", "desert3", "ninesix", "sixtyfour_", "sixtyfour_revisited", "stairs"]
CRYSTAN = [f"Crystan-Battlescape0{i}" for i in range(1, 7)] + [
    "Crystan-Credits", "Crystan-Geosphere02", "Crystan-Geosphere03", "Crystan-Geosphere04", "Crystan-IntroSad",
    "Crystan-LooseGame", "Crystan-Tutorial", "Crystan-WinGame"]
PSYMONG = [f"PsymongN{i}" for i in range(1, 6)] + [f"PsymongO{i}" for i in range(1, 7)] + [
    f"PsymongR{i}" for i in range(1, 6)]
MARINE = ["Marine01", "Marine02", "MarineAlienRaid", "MarineBacktheAttack", "MarineFireFight", "MarineIndustrial",
          "MarineStrikingIntoTheUnknown", "MarineUrbanWarfare"]
VANETHIAN = ["van_geoscape", "van_mission", "van_mission2", "van_mission3", "van_mission4", "van_theme"]
DAVID = [f"David0{i}" for i in range(1, 6)]

ALBUMS: dict[str, dict[str, Any]] = {
    "nexuiz-elysis": {"package": "nexuiz-music", "prefix": "sound/cdtracks/", "names": ELYSIS,
                      "composer": "Gerd 'elysis' Raudenbusch", "style": "electronic"},
    "nexuiz-blkrbt": {"package": "nexuiz-music", "prefix": "sound/cdtracks/", "names": BLKRBT,
                      "composer": "blkrbt", "style": "electronic"},
    "ufoai-crystan": {"package": "ufoai-music", "prefix": "music/", "names": CRYSTAN,
                      "composer": "Christian 'Crystan' Hoffmann", "style": "cinematic-score"},
    "ufoai-psymong": {"package": "ufoai-music", "prefix": "music/", "names": PSYMONG,
                      "composer": "Psymong", "style": "cinematic-score"},
    "ufoai-marine": {"package": "ufoai-music", "prefix": "music/", "names": MARINE,
                     "composer": "'Marine' Baklund", "style": "cinematic-score"},
    "ufoai-vanethian": {"package": "ufoai-music", "prefix": "music/", "names": VANETHIAN,
                        "composer": "Manuel 'Vanethian' Marino", "style": "cinematic-score"},
    "ufoai-david": {"package": "ufoai-music", "prefix": "music/", "names": DAVID,
                    "composer": "David Reeves", "style": "cinematic-score"},
}
PK3 = {"nexuiz-music": NEXUIZ_PK3, "ufoai-music": UFOAI_PK3}

# Instrument family -> two General MIDI programs (0-based), alternated between clips.
FAMILIES: dict[str, tuple[int, int]] = {
    "piano": (0, 1), "strings": (48, 49), "brass": (61, 56), "guitar": (24, 25),
    "synth_lead": (80, 81), "organ": (16, 19),
}
# Nominal tempi. 6/8 tempi count dotted quarters (the felt beat); the eighth pulse is 3x that.
T44 = [60, 70, 80, 90, 100, 110, 120, 128, 140, 150, 160, 180]
T34 = [72, 90, 108, 120, 144, 168]
T68 = [50, 60, 70, 80, 90, 100]
PPQ = 480
ZIP_LOCK = threading.Lock()


# --------------------------------------------------------------------------- tools

def run(cmd: list[str]) -> None:
    """Run a tool quietly; raise with its stderr when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()[-400:]}")


def duration_s(path: Path) -> float:
    """Length of an audio file in seconds (sox's soxi)."""
    return float(subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout)


def cut(src: Path, dst: Path, start: float, length: float = CLIP_S) -> None:
    """Cut ``length`` seconds from ``start`` to 44.1 kHz stereo FLAC (written atomically)."""
    tmp = dst.with_suffix(".part.flac")
    run(["sox", str(src), "-r", str(RATE), "-c", "2", "-b", "16", str(tmp), "trim", f"{start:.3f}", f"{length:.3f}"])
    tmp.replace(dst)


def clip_start(total: float) -> float:
    """Skip intros: start 30 s in, or centre the clip in a shorter track."""
    return max(0.0, min(30.0, (total - CLIP_S) / 2))


def render_midi(mid: Path, wav: Path, gain: float = 0.5) -> None:
    """Render a MIDI file with FluidSynth and the FluidR3 GM soundfont (no audio driver)."""
    run(["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(RATE), "-F", str(wav), str(SOUNDFONT), str(mid)])


# --------------------------------------------------------------------------- real albums

def real_entries(out: Path, work: Path) -> list[tuple[dict[str, Any], Any]]:
    """Manifest entries plus a build job for each real album track."""
    jobs = []
    archives = {pkg: zipfile.ZipFile(path) for pkg, path in PK3.items()}
    for album, spec in ALBUMS.items():
        for name in spec["names"]:
            rel = f"real/{album}/{name}.flac"
            entry = {"id": f"{album}/{name}", "path": rel, "kind": "real", "source": spec["package"],
                     "album": album, "composer": spec["composer"], "style": spec["style"]}
            member = f"{spec['prefix']}{name}.ogg"
            jobs.append((entry, _extract_and_cut(archives[spec["package"]], member, work, out / rel, entry)))
    for i in range(10):
        name = f"music{i:03d}"
        base = {"album": "planetblupi", "composer": "Daniel Roux / EPSITEC", "style": "gm-midi",
                "dup_group": f"blupi-{name}"}
        ogg = {"id": f"planetblupi/{name}", "path": f"real/planetblupi/{name}.flac", "kind": "real",
               "source": "planetblupi-music-ogg", **base}
        jobs.append((ogg, _cut_file(BLUPI_DIR / f"{name}.ogg", out / ogg["path"], ogg)))
        mid = {"id": f"planetblupi-midi/{name}", "path": f"real/planetblupi-midi/{name}.flac", "kind": "real",
               "source": "planetblupi-music-midi", **base}
        for entry in (ogg, mid):        # the OGG is a render of the same MIDI (same length), so same notated tempo
            entry.update(notated_tempo(BLUPI_DIR / f"{name}.mid"))
        jobs.append((mid, _render_and_cut(BLUPI_DIR / f"{name}.mid", work, out / mid["path"], mid)))
    return jobs


def _extract_and_cut(archive: zipfile.ZipFile, member: str, work: Path, dst: Path, entry: dict[str, Any]):
    def job() -> None:
        if dst.exists():
            return False
        src = work / Path(member).name
        with ZIP_LOCK, archive.open(member) as fin, open(src, "wb") as fout:   # one shared ZipFile per archive
            shutil.copyfileobj(fin, fout)
        _cut_into(src, dst, entry)
        src.unlink()
        return True
    return job


def _cut_file(src: Path, dst: Path, entry: dict[str, Any]):
    def job() -> None:
        if dst.exists():
            return False
        _cut_into(src, dst, entry)
        return True
    return job


def _render_and_cut(mid: Path, work: Path, dst: Path, entry: dict[str, Any]):
    def job() -> None:
        if dst.exists():
            return False
        wav = work / f"{mid.stem}-midi.wav"
        render_midi(mid, wav)
        _cut_into(wav, dst, entry)
        wav.unlink()
        return True
    return job


def _cut_into(src: Path, dst: Path, entry: dict[str, Any]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    total = duration_s(src)
    start = clip_start(total)
    cut(src, dst, start)
    entry["source_duration_s"] = round(total, 2)
    entry["start_s"] = round(start, 2)


# --------------------------------------------------------------------------- MIDI writer

def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


@dataclasses.dataclass
class Song:
    """Timed MIDI events (absolute tick, order, bytes) for a format-0 Standard MIDI File."""

    events: list[tuple[int, int, bytes]] = dataclasses.field(default_factory=list)

    def meta(self, tick: int, kind: int, data: bytes) -> None:
        self.events.append((tick, 0, bytes([0xFF, kind]) + vlq(len(data)) + data))

    def program(self, channel: int, program: int) -> None:
        self.events.append((0, 1, bytes([0xC0 | channel, program])))

    def note(self, tick: int, length: int, channel: int, pitch: int, velocity: int) -> None:
        # Note-offs sort before note-ons at the same tick so repeated notes re-strike.
        self.events.append((tick, 3, bytes([0x90 | channel, pitch, max(1, min(127, velocity))])))
        self.events.append((tick + max(1, length), 2, bytes([0x80 | channel, pitch, 0])))

    def to_bytes(self) -> bytes:
        body, last = bytearray(), 0
        for tick, _, data in sorted(self.events, key=lambda e: (e[0], e[1])):
            body += vlq(tick - last) + data
            last = tick
        body += vlq(0) + b"\xff\x2f\x00"
        return b"MThd" + struct.pack(">IHHH", 6, 0, 1, PPQ) + b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def midi_meta(data: bytes) -> tuple[list[float], list[str]]:
    """Every set-tempo (as quarter-note BPM) and time-signature meta event of a Standard
    MIDI File, in the order of their ticks (``midi_timeline`` parses it)."""
    timeline = midi_timeline(data)
    return [60e6 / us for _, us in timeline.tempi], [f"{num}/{den}" for _, num, den in timeline.meters]


def _read_vlq(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    while True:
        value = (value << 7) | (data[i] & 0x7F)
        i += 1
        if not data[i - 1] & 0x80:
            return value, i


def notated_tempo(mid: Path) -> dict[str, Any]:
    """The notated tempo and meter of a MIDI file when it has one tempo throughout, else nothing."""
    tempi, meters = midi_meta(mid.read_bytes())
    distinct = {round(t, 2) for t in tempi}
    if len(distinct) != 1:
        return {}
    out: dict[str, Any] = {"tempo_bpm": round(tempi[0], 2), "tempo_beat": "quarter (notated)"}
    if len(set(meters)) == 1:
        out["meter"] = meters[0]
    return out


# --------------------------------------------------------------------------- generated clips

MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
PROGRESSIONS = {"major": [0, 5, 3, 4], "minor": [0, 5, 2, 6]}   # I-vi-IV-V / i-VI-III-VII (scale degrees)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Ground truth of one generated clip."""

    name: str
    family: str
    program: int
    meter: str
    tempo_bpm: float     # felt beat: quarter in 4/4 and 3/4, dotted quarter in 6/8
    drums: bool
    swing: bool
    seed: int


def clip_specs() -> list[ClipSpec]:
    """72 clips: 6 families x (6 in 4/4, 3 in 3/4, 3 in 6/8); tempi spread so that each
    family covers slow to fast, drums alternate, and half the 4/4 clips swing."""
    specs = []
    for f, (family, programs) in enumerate(FAMILIES.items()):
        for j in range(12):
            if j < 6:
                meter, tempo = "4/4", T44[(2 * j + f) % 12]
            elif j < 9:
                meter, tempo = "3/4", T34[(2 * (j - 6) + f) % 6]
            else:
                meter, tempo = "6/8", T68[(2 * (j - 9) + f) % 6]
            drums = (j + f) % 2 == 0
            swing = meter == "4/4" and (j // 2 + f) % 2 == 1
            specs.append(ClipSpec(f"{family}-{j:02d}", family, programs[j % 2], meter, float(tempo), drums, swing,
                                  seed=1000 + 17 * f + j))
    return specs


def compose(spec: ClipSpec, seconds: float = CLIP_S + 3) -> bytes:
    """A short piece: bass, chords on the beat, a scale melody and optional drums."""
    rng = random.Random(spec.seed)
    compound = spec.meter == "6/8"
    quarter_bpm = spec.tempo_bpm * 1.5 if compound else spec.tempo_bpm
    beat = PPQ * 3 // 2 if compound else PPQ               # ticks per felt beat
    beats_per_bar = 2 if compound else int(spec.meter[0])
    bar = beat * beats_per_bar
    n_bars = int(seconds / (60.0 / quarter_bpm * bar / PPQ)) + 1
    mode = rng.choice(["major", "minor"])
    scale = MAJOR if mode == "major" else MINOR
    root = 48 + rng.randrange(12)
    eighth = PPQ // 2

    song = Song()
    song.meta(0, 0x51, struct.pack(">I", round(60e6 / quarter_bpm))[1:])
    num, den = (6, 3) if compound else (beats_per_bar, 2)
    song.meta(0, 0x58, bytes([num, den, 24, 8]))
    for ch in (0, 1, 2):
        song.program(ch, spec.program)

    def pitch(degree: int, octave: int = 0) -> int:
        return root + 12 * (octave + degree // 7) + scale[degree % 7]

    def swung(offset: int) -> int:
        # Swing delays every off-beat eighth to the last third of its beat.
        if spec.swing and offset % PPQ == eighth:
            return offset - eighth + 2 * PPQ // 3
        return offset

    melody_degree = 7
    for b in range(n_bars):
        t0 = b * bar
        chord = PROGRESSIONS[mode][b % 4]
        song.note(t0, bar - 20, 0, pitch(chord, -1), 90)                       # bass: root held
        for k in range(beats_per_bar):                                          # chords on each felt beat
            accent = 100 if k == 0 else 75
            if compound:                                                        # 6/8: arpeggiated eighths
                for e in range(3):
                    song.note(t0 + k * beat + e * eighth, eighth - 10, 1, pitch(chord + 2 * e), accent - 10 * e)
            elif spec.meter == "3/4" and k == 0:
                song.note(t0, beat - 30, 1, pitch(chord, 0), accent)
            else:
                for d in (0, 2, 4):
                    song.note(t0 + k * beat, beat - 40, 1, pitch(chord + d), accent)
        t = 0
        while t < bar:                                                          # melody: eighths and quarters
            length = rng.choice([eighth, eighth, PPQ]) if not compound else rng.choice([eighth, eighth, 2 * eighth])
            length = min(length, bar - t)
            melody_degree = max(4, min(14, melody_degree + rng.choice([-2, -1, -1, 0, 1, 1, 2])))
            start = swung(t)
            song.note(t0 + start, max(30, length - 40 - (start - t)), 2, pitch(melody_degree, 1),
                      95 if t % beat == 0 else 75)
            t += length
        if spec.drums:
            _drums(song, t0, bar, beat, spec.meter, swung)
    return song.to_bytes()


def _drums(song: Song, t0: int, bar: int, beat: int, meter: str, swung) -> None:
    """Kick on the downbeats, snare on the back beats, closed hi-hat on every eighth."""
    kick, snare, hat = 36, 38, 42
    eighth = PPQ // 2
    for e in range(bar // eighth):
        song.note(t0 + swung(e * eighth), 60, 9, hat, 70 if (e * eighth) % beat == 0 else 50)
    if meter == "4/4":
        hits = [(0, kick), (2 * beat, kick), (beat, snare), (3 * beat, snare)]
    elif meter == "3/4":
        hits = [(0, kick), (beat, snare), (2 * beat, snare)]
    else:
        hits = [(0, kick), (beat, snare)]
    for off, drum in hits:
        song.note(t0 + off, 100, 9, drum, 110 if drum == kick else 95)


def generated_entries(out: Path, work: Path) -> list[tuple[dict[str, Any], Any]]:
    """Manifest entries plus a build job for each generated clip."""
    jobs = []
    for spec in clip_specs():
        rel = f"rendered/{spec.name}.flac"
        entry = {"id": f"rendered/{spec.name}", "path": rel, "kind": "rendered", "source": "generated",
                 "family": spec.family, "program": spec.program, "meter": spec.meter, "tempo_bpm": spec.tempo_bpm,
                 "tempo_beat": "dotted quarter" if spec.meter == "6/8" else "quarter",
                 "drums": spec.drums, "swing": spec.swing, "start_s": 0.0}
        jobs.append((entry, _generated_job(spec, work, out / rel, out / "midi" / f"{spec.name}.mid")))
    return jobs


def _generated_job(spec: ClipSpec, work: Path, dst: Path, mid: Path):
    def job() -> None:
        if dst.exists():
            return False
        mid.parent.mkdir(parents=True, exist_ok=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        mid.write_bytes(compose(spec))
        wav = work / f"{spec.name}.wav"
        render_midi(mid, wav)
        cut(wav, dst, 0.0)
        wav.unlink()
        return True
    return job


# --------------------------------------------------------------------------- OpenMSX tempo set (--openmsx)

# Composers from the package's readme.txt ("5 Credits"): the 'Ezy Street' tracks (*_redfarn)
# and The Hobo by Jim Redfarn, the 'Modern' (new_*) tracks by Tistou Blomberg, the rest as
# credited one by one. Titles come from openmsx.obm's [names].
OPENMSX_COMPOSERS: dict[str, str] = {
    **dict.fromkeys(["ttsong_iv_imuh3", "ttsong_iii_imuh3", "train_filled_with_cash", "flying_scotsman",
                     "chuggachugga"], "imuh3"),
    **dict.fromkeys(["busy_schedule", "the_fast_route"], "mimm"),
    "modern_motion": "Kyle Timmerman (Mr.Ksoft)",
    "keep_on_rolling": "Trolley Trev",
    "tttheme2": "-lucas-",
    **dict.fromkeys(["ultimate_run", "midnight_snow_run", "run_for_your_life", "coconut_run2", "harp_harmony",
                     "mighty_giant_run", "wood_whistles", "linns_basket", "relax_song", "chemistry_lab"],
                    "Tistou Blomberg"),
}
WINDOW_GAP_S = 30.0          # a second window starts this long after the first one ends ...
OUTRO_S = 10.0               # ... and must end this long before the last note (skip endings)
MIN_NOTES = 20               # a window with fewer note-ons (or a silent stretch of MAX_GAP_S) is skipped
MAX_GAP_S = 4.0


@dataclasses.dataclass
class Timeline:
    """What the tempo labels need from a Standard MIDI File: set-tempo events (tick,
    microseconds per quarter), time signatures (tick, numerator, denominator) and note-ons
    (tick, channel), every track merged, ticks per quarter ``ppq``."""

    ppq: int
    tempi: list[tuple[int, int]]
    meters: list[tuple[int, int, int]]
    notes: list[tuple[int, int]]

    def seconds(self, tick: int) -> float:
        """Time of ``tick`` under the tempo map (120 BPM until the first set-tempo, as the standard says)."""
        s, last, us = 0.0, 0, 500_000
        for t, u in self.tempi:
            if t >= tick:
                break
            s, last, us = s + (t - last) * us / self.ppq / 1e6, t, u
        return s + (tick - last) * us / self.ppq / 1e6


def midi_timeline(data: bytes) -> Timeline:
    """Parse a Standard MIDI File (formats 0 and 1, metrical time division) into a Timeline."""
    ppq = struct.unpack(">H", data[12:14])[0]
    if ppq & 0x8000:
        raise ValueError("SMPTE time division is not supported")
    tempi: list[tuple[int, int]] = []
    meters: list[tuple[int, int, int]] = []
    notes: list[tuple[int, int]] = []
    pos = 8 + struct.unpack(">I", data[4:8])[0]
    while pos + 8 <= len(data):
        size = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if data[pos:pos + 4] == b"MTrk":
            track, i, tick, status = data[pos + 8:pos + 8 + size], 0, 0, 0
            while i < len(track):
                delta, i = _read_vlq(track, i)
                tick += delta
                if i >= len(track):
                    break
                if track[i] & 0x80:
                    status = track[i]
                    i += 1
                if status == 0xFF:
                    kind = track[i]
                    length, i = _read_vlq(track, i + 1)
                    body = track[i:i + length]
                    i += length
                    if kind == 0x51:
                        tempi.append((tick, int.from_bytes(body, "big")))
                    elif kind == 0x58:
                        meters.append((tick, body[0], 2 ** body[1]))
                    elif kind == 0x2F:
                        break
                    status = 0
                elif status in (0xF0, 0xF7):
                    length, i = _read_vlq(track, i)
                    i += length
                    status = 0
                elif status & 0xF0 in (0xC0, 0xD0):
                    i += 1
                else:
                    if status & 0xF0 == 0x90 and track[i + 1] > 0:
                        notes.append((tick, status & 0x0F))
                    i += 2
        pos += 8 + size
    return Timeline(ppq, sorted(tempi), sorted(meters), sorted(notes))


def beat_label(quarter_bpm: float, num: int, den: int) -> dict[str, Any]:
    """The label of a meter's beat: the quarter in x/4, the dotted quarter in 6/8, 9/8 and
    12/8 (the eighth pulse is 3x that), the half note in x/2 (cut time is counted in halves;
    the quarter-note tempo is kept as ``tempo_alt_bpm``)."""
    if den == 4:
        out: dict[str, Any] = {"tempo_bpm": round(quarter_bpm, 2), "tempo_beat": "quarter"}
        if num in (6, 9, 12):        # compound reading of x/4: the dotted half
            out["tempo_alt_bpm"], out["tempo_alt_beat"] = round(quarter_bpm / 3, 2), "dotted half"
        return out
    if den == 8 and num in (6, 9, 12):
        return {"tempo_bpm": round(quarter_bpm / 1.5, 2), "tempo_beat": "dotted quarter",
                "tempo_alt_bpm": round(quarter_bpm * 2, 2), "tempo_alt_beat": "eighth"}
    if den == 2:
        return {"tempo_bpm": round(quarter_bpm / 2, 2), "tempo_beat": "half",
                "tempo_alt_bpm": round(quarter_bpm, 2), "tempo_alt_beat": "quarter"}
    return {}


def _in_force(events: list, tick: int, default: Any) -> Any:
    value = default
    for event in events:
        if event[0] > tick:
            break
        value = event[1:]
    return value


def _offbeats(tl: Timeline, first: int, last: int) -> dict[str, float]:
    """Shares of the window's note-ons on the quarter beat, its eighth off-beat (1/2) and its
    triplet off-beats (1/3, 2/3): swung eighths put the off-beat at 2/3."""
    fractions = [(t % tl.ppq) / tl.ppq for t, _ in tl.notes if first <= t < last]
    if not fractions:
        return {}
    def share(centre: float) -> float:
        return round(sum(min(abs(f - centre), 1 - abs(f - centre)) < 0.04 for f in fractions) / len(fractions), 3)
    return {"on": share(0.0), "1/2": share(0.5), "1/3": share(1 / 3), "2/3": share(2 / 3)}


def openmsx_windows(tl: Timeline) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The piece's 30 s windows and the skipped candidates (with the reason).

    Candidates: the first window where make_corpus cuts real tracks (30 s in, centred in a
    piece shorter than 90 s), a second one WINDOW_GAP_S after it when it ends OUTRO_S before
    the last note. A candidate is skipped when a set-tempo or time-signature event inside it
    changes the value (an accelerando, ritardando or rubato-like map), when its meter has no
    labelled beat, or when it has fewer than MIN_NOTES note-ons or a silent stretch of
    MAX_GAP_S. When every candidate is skipped, the first valid window starting 1 s after a
    tempo or meter change (and after the first candidate) is taken instead (``shifted``)."""
    onsets = sorted({tl.seconds(t) for t, _ in tl.notes})
    total = onsets[-1] if onsets else 0.0
    first = clip_start(total)
    candidates = [first]
    if first + CLIP_S + WINDOW_GAP_S + CLIP_S <= total - OUTRO_S:
        candidates.append(first + CLIP_S + WINDOW_GAP_S)
    tempo_s = [(tl.seconds(t), 60e6 / u) for t, u in tl.tempi]
    meter_s = [(tl.seconds(t), n, d) for t, n, d in tl.meters]

    def check(start: float) -> tuple[dict[str, Any] | None, str]:
        end = start + CLIP_S
        if end > total + 0.5:
            return None, "past the last note"
        (bpm,) = _in_force(tempo_s, start, (120.0,))
        num, den = _in_force(meter_s, start, (4, 4))
        changes = sorted({round(b, 2) for s, b in tempo_s if start < s < end and abs(b - bpm) > 0.01})
        if changes:
            return None, f"tempo changes inside ({bpm:g} -> {', '.join(f'{c:g}' for c in changes[:4])}" + \
                (f" ... {len(changes)} values)" if len(changes) > 4 else ")")
        meters = sorted({f"{n}/{d}" for s, n, d in meter_s if start < s < end and (n, d) != (num, den)})
        if meters:
            return None, f"time signature changes inside ({num}/{den} -> {', '.join(meters)})"
        inside = [t for t in onsets if start <= t < end]
        edges = [start, *inside, end]
        gaps = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        if len(inside) < MIN_NOTES or max(gaps) >= MAX_GAP_S:
            return None, f"too few notes ({len(inside)} onsets, longest silence {max(gaps):.1f} s)"
        label = beat_label(bpm, num, den)
        if not label:
            return None, f"no labelled beat for {num}/{den}"
        return {"start_s": round(start, 2), "meter": f"{num}/{den}",
                "meter_source": "time signature" if meter_s else "none in the file: 4/4 (the standard's default)",
                "notated_quarter_bpm": round(bpm, 2),
                "tempo_source": "set-tempo" if tempo_s else "none in the file: 120 (the standard's default)",
                **label}, ""

    windows, skipped = [], []
    for start in candidates:
        window, why = check(start)
        if window:
            windows.append(window)
        else:
            skipped.append({"start_s": round(start, 2), "reason": why})
    if not windows:
        for change in sorted({s for s, _ in tempo_s} | {s for s, _, _ in meter_s}):
            if change + 1.0 >= first:
                window, _ = check(change + 1.0)
                if window:
                    windows.append({**window, "shifted": True})
                    break
    for window in windows:
        start_tick = _tick_at(tl, window["start_s"])
        end_tick = _tick_at(tl, window["start_s"] + CLIP_S)
        shares = _offbeats(tl, start_tick, end_tick)
        window["offbeat_shares"] = shares
        window["swing"] = bool(shares) and shares["2/3"] >= 0.15 and shares["2/3"] > 2 * shares["1/2"]
        window["drums"] = any(start_tick <= t < end_tick and ch == 9 for t, ch in tl.notes)
    return windows, skipped


def _tick_at(tl: Timeline, seconds: float) -> int:
    """The first tick at or after ``seconds`` (bisection on the monotone tempo map)."""
    lo, hi = 0, max([t for t, _ in tl.notes] + [0]) + 100 * tl.ppq
    while lo < hi:
        mid = (lo + hi) // 2
        if tl.seconds(mid) < seconds:
            lo = mid + 1
        else:
            hi = mid
    return lo


def openmsx_titles(folder: Path) -> dict[str, str]:
    """File stem -> title from openmsx.obm's [names] section."""
    obm = folder / "openmsx.obm"
    titles, inside = {}, False
    if obm.exists():
        for line in obm.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("["):
                inside = line.strip() == "[names]"
            elif inside and "=" in line:
                name, title = line.split("=", 1)
                titles[Path(name.strip()).stem] = title.strip()
    return titles


def openmsx_composer(mid: Path) -> str:
    return OPENMSX_COMPOSERS.get(mid.stem, "Jim Redfarn" if mid.stem.endswith("_redfarn") else "?")


def simutrans_titles(folder: Path) -> dict[str, str]:
    """File stem -> title from music.tab (a file name line, then its title line)."""
    tab = folder / "music.tab"
    lines = [line.strip() for line in tab.read_text(encoding="latin-1").splitlines()
             if line.strip() and not line.startswith("#")] if tab.exists() else []
    return {Path(lines[i]).stem: lines[i + 1] for i in range(len(lines) - 1) if lines[i].endswith(".mid")}


# The credits the Simutrans MIDI files carry in their copyright and text events.
SIMUTRANS_CREDITS = (("shunter", "shunter"), ("RykSeb", "RykSeb"), ("Gobanboshi", "Gobanboshi"),
                     ("Marcos Antonio", "Marcos Antonio"), ("NoteWorthy", "? (NoteWorthy export)"))


def simutrans_composer(mid: Path) -> str:
    text = mid.read_bytes().decode("latin-1")
    return next((name for mark, name in SIMUTRANS_CREDITS if mark in text), "?")


@dataclasses.dataclass(frozen=True)
class CompositionSet:
    """A Debian package's MIDI compositions, cut and labelled as one tempo set."""

    name: str            # the manifest's "set", the entries' "kind" and their ids' prefix
    package: str
    titles: Any          # (folder) -> {file stem: title}
    composer: Any        # (.mid path) -> composer


OPENMSX = CompositionSet("openmsx", "openttd-openmsx", openmsx_titles, openmsx_composer)
SIMUTRANS = CompositionSet("simutrans", "simutrans-data", simutrans_titles, simutrans_composer)


def openmsx_entries(folder: Path, out: Path, work: Path, kind: CompositionSet = OPENMSX
                    ) -> tuple[list[tuple[dict[str, Any], Any]], list[dict]]:
    """Manifest entries plus one build job per piece (render once, cut every window), and the skipped windows."""
    titles = kind.titles(folder)
    jobs, skipped = [], []
    for mid in sorted(folder.glob("*.mid")):
        tl = midi_timeline(mid.read_bytes())
        windows, skips = openmsx_windows(tl)
        skipped += [{"piece": mid.stem, **s} for s in skips]
        if not windows:
            skipped.append({"piece": mid.stem, "start_s": None, "reason": "no valid window in the piece"})
        composer = kind.composer(mid)
        entries = []
        for w in windows:
            rel = f"{kind.name}/{mid.stem}-{w['start_s']:05.1f}s.flac"
            entries.append({"id": f"{kind.name}/{mid.stem}@{w['start_s']:.1f}s", "path": rel, "kind": kind.name,
                            "source": kind.package, "piece": mid.stem, "title": titles.get(mid.stem, mid.stem),
                            "composer": composer, **w})
        if entries:
            job = _openmsx_job(mid, work, out, entries)
            jobs += [(e, job if k == 0 else (lambda: False)) for k, e in enumerate(entries)]
    return jobs, skipped


def _openmsx_job(mid: Path, work: Path, out: Path, entries: list[dict[str, Any]]):
    def job() -> bool:
        todo = [e for e in entries if not (out / e["path"]).exists()]
        if not todo:
            return False
        wav = work / f"{mid.stem}-openmsx.wav"
        render_midi(mid, wav)
        total = duration_s(wav)
        for entry in todo:
            dst = out / entry["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            cut(wav, dst, entry["start_s"])
            entry["source_duration_s"] = round(total, 2)
        wav.unlink()
        return True
    return job


def openmsx_main(out: Path, folder: Path, workers: int, kind: CompositionSet = OPENMSX) -> int:
    """Build the tempo set of ``kind`` (OpenMSX, Simutrans) in ``out`` (its own manifest.json)."""
    missing = [f"command {t!r}" for t in ("sox", "soxi", "fluidsynth") if shutil.which(t) is None]
    if not SOUNDFONT.exists():
        missing.append(f"{SOUNDFONT} (Debian package fluid-soundfont-gm)")
    if not any(folder.glob("*.mid")):
        missing.append(f"{folder}/*.mid (Debian package {kind.package})")
    if missing:
        print("missing:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fpcli-openmsx-") as tmp:
        jobs, skipped = openmsx_entries(folder, out, Path(tmp), kind)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            built = sum(bool(fut.result()) for fut in [pool.submit(job) for _, job in jobs])
    entries = [entry for entry, _ in jobs]
    old = _old_manifest(out)
    for entry in entries:
        if "source_duration_s" not in entry and "source_duration_s" in old.get(entry["id"], {}):
            entry["source_duration_s"] = old[entry["id"]]["source_duration_s"]
    seconds = round(time.monotonic() - t0, 1)
    manifest = {"set": kind.name, "clip_seconds": CLIP_S, "sample_rate": RATE, "pieces_built_last_run": built,
                "last_run_seconds": seconds, "entries": entries, "skipped": skipped}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    pieces = len({e["piece"] for e in entries})
    print(f"{len(entries)} {kind.name} windows of {CLIP_S:.0f} s from {pieces} pieces in {out} ({built} pieces "
          f"rendered in {seconds} s), {len(skipped)} candidate windows skipped; manifest: {out / 'manifest.json'}")
    return 0


# --------------------------------------------------------------------------- main

def check_tools() -> list[str]:
    """Missing inputs, as messages (empty when everything is there)."""
    missing = [f"command {t!r}" for t in ("sox", "soxi", "fluidsynth") if shutil.which(t) is None]
    for path, pkg in ((SOUNDFONT, "fluid-soundfont-gm"), (NEXUIZ_PK3, "nexuiz-music"), (UFOAI_PK3, "ufoai-music"),
                      (BLUPI_DIR / "music000.ogg", "planetblupi-music-ogg"),
                      (BLUPI_DIR / "music000.mid", "planetblupi-music-midi")):
        if not path.exists():
            missing.append(f"{path} (Debian package {pkg})")
    return missing


def build(out: Path, workers: int) -> dict[str, Any]:
    """Build every clip that is missing and write the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fpcli-quality-") as tmp:
        work = Path(tmp)
        jobs = real_entries(out, work) + generated_entries(out, work)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            built = sum(bool(fut.result()) for fut in [pool.submit(job) for _, job in jobs])
    entries = [entry for entry, _ in jobs]
    old = _old_manifest(out)
    for entry in entries:               # keep source timing measured by an earlier (skipped) build
        for key in ("source_duration_s", "start_s"):
            if key not in entry and key in old.get(entry["id"], {}):
                entry[key] = old[entry["id"]][key]
    seconds = round(time.monotonic() - t0, 1)
    manifest = {"clip_seconds": CLIP_S, "sample_rate": RATE, "clips_built_last_run": built,
                "last_run_seconds": seconds, "entries": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _old_manifest(out: Path) -> dict[str, dict[str, Any]]:
    path = out / "manifest.json"
    if not path.exists():
        return {}
    return {e["id"]: e for e in json.loads(path.read_text())["entries"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/fpcli-quality")))
    parser.add_argument("--workers", type=int, default=2, help="parallel sox/fluidsynth processes")
    parser.add_argument("--openmsx", action="store_true",
                        help="build the OpenMSX tempo set instead (its own corpus: give it another --out)")
    parser.add_argument("--openmsx-dir", type=Path, default=OPENMSX_DIR,
                        help="folder of the OpenMSX .mid files (e.g. extracted from the package's .deb)")
    parser.add_argument("--simutrans", action="store_true",
                        help="build the Simutrans tempo set instead (a held-out check: give it another --out)")
    parser.add_argument("--simutrans-dir", type=Path, default=SIMUTRANS_DIR,
                        help="folder of the Simutrans .mid files and music.tab")
    args = parser.parse_args(argv)
    if args.openmsx:
        return openmsx_main(args.out, args.openmsx_dir, args.workers)
    if args.simutrans:
        return openmsx_main(args.out, args.simutrans_dir, args.workers, SIMUTRANS)
    missing = check_tools()
    if missing:
        print("missing:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    manifest = build(args.out, args.workers)
    n = len(manifest["entries"])
    print(f"{n} clips of {CLIP_S:.0f} s in {args.out} ({manifest['clips_built_last_run']} built in "
          f"{manifest['last_run_seconds']} s); manifest: {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
