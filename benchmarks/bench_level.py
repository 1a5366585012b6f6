"""Playback level: the streaming fingerprint of the same music played quieter and louder.

    python benchmarks/bench_level.py --library /tmp/fpcli-library [--seconds 60] [--out level.md]

Each decodable track's first ``--seconds`` are written as float WAV copies scaled by
GAINS_DB (float: +6 dB does not clip) and analysed by the streaming analyzer. For each
dimension the table gives the largest change from the track's own level (0 dB) over
the tracks (relative for the dims whose validation tolerance is relative), and how
many tracks changed by more than a tenth of that tolerance; then how many tracks'
tempo read another metrical level (more than 4 % away) at some gain. Level-dependent
by definition, and so not counted: the silence ratio (silence is a level in dBFS).
Nothing here is committed but the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpcli import analyze_streaming  # noqa: E402
from fpcli.audio import AUDIO_EXTENSIONS  # noqa: E402
from fpcli.fingerprint import STREAMING_DIMS  # noqa: E402
from fpcli.validate import DEFAULT_TOLERANCES  # noqa: E402

GAINS_DB = (-20.0, -10.0, 6.0)
LEVEL_DIMS = tuple(d for d in STREAMING_DIMS if d != "silence_ratio")
SHARE_OF_TOLERANCE = 0.1  # a change beyond a tenth of the validation tolerance counts as moved


def tracks(library: Path) -> list[Path]:
    """Audio files under ``library`` that soundfile or the reader can decode (broken ones left out)."""
    found = []
    for path in sorted(p for p in library.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        try:
            analyze_streaming(path, max_seconds=0.5)
        except Exception:  # noqa: BLE001 - a broken file of the library is not a track here
            continue
        found.append(path)
    return found


def values_at(audio: np.ndarray, sr: int, gain_db: float, folder: str) -> dict[str, float | None]:
    copy = os.path.join(folder, "copy.wav")
    sf.write(copy, audio * np.float32(10 ** (gain_db / 20)), sr, subtype="FLOAT")
    return analyze_streaming(copy)[0].values


def decoded(path: Path, seconds: float) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of ``path`` as (frames, channels) float32, through fpcli's reader."""
    from fpcli.audio import AudioReader

    reader = AudioReader(path)
    blocks, need = [], int(seconds * reader.info.samplerate)
    for block in reader:
        blocks.append(block)
        need -= len(block)
        if need <= 0:
            break
    audio = np.concatenate(blocks)[: int(seconds * reader.info.samplerate)]
    return audio.astype(np.float32), reader.info.samplerate


def measure(files: list[Path], seconds: float) -> dict[str, dict[str, float]]:
    """Per dim: the largest |change| from 0 dB and the tracks changed beyond 1 % of the tolerance."""
    worst = {d: 0.0 for d in LEVEL_DIMS}
    moved = {d: 0 for d in LEVEL_DIMS}
    octave = 0
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            audio, sr = decoded(path, seconds)
            own = values_at(audio, sr, 0.0, folder)
            others = [values_at(audio, sr, g, folder) for g in GAINS_DB]
            for dim in LEVEL_DIMS:
                tolerance = DEFAULT_TOLERANCES[dim]
                changes = [_change(own[dim], v[dim], relative=tolerance.kind in ("relative", "tempo")) for v in others]
                worst[dim] = max(worst[dim], *changes)
                moved[dim] += max(changes) > SHARE_OF_TOLERANCE * tolerance.limit
            octave += any(_another_level(own["tempo_bpm"], v["tempo_bpm"]) for v in others)
    return {"worst": worst, "moved": moved, "octave": {"tempo_bpm": octave}}  # type: ignore[dict-item]


def _another_level(own: float | None, other: float | None) -> bool:
    """Whether a tempo read at another gain is more than 4 % from the track's own (or null on one side only)."""
    if own is None or other is None:
        return (own is None) != (other is None)
    return abs(other / own - 1) > 0.04


def _change(a: float | None, b: float | None, *, relative: bool) -> float:
    """|b - a|, relative to |a| for the dims whose tolerance is relative (Hz, onsets/s, BPM)."""
    if a is None and b is None:
        return 0.0
    if a is None or b is None:
        return float("inf")
    return abs(b - a) / abs(a) if relative and a else abs(b - a)


def table(result: dict, count: int, seconds: float, elapsed: float) -> str:
    lines = [f"Tracks: {count} (first {seconds:g} s each), gains {', '.join(f'{g:+g}' for g in GAINS_DB)} dB "
             f"against 0 dB; {elapsed:.0f} s.", "",
             "| dim | largest change | tracks changed by > 1/10 of the tolerance |", "|---|---|---|"]
    for dim in LEVEL_DIMS:
        lines.append(f"| {dim} | {result['worst'][dim]:.4g} | {result['moved'][dim]} of {count} |")
    lines.append("")
    lines.append(f"Tracks whose tempo read another level (> 4 % away) at some gain: "
                 f"{result['octave']['tempo_bpm']} of {count}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    started = time.perf_counter()
    files = tracks(args.library)
    text = table(measure(files, args.seconds), len(files), args.seconds, time.perf_counter() - started)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
