"""Generate the bundled sample clips and their expected fingerprints.

    python sample_audio/make_samples.py                  # rewrites the clips and expected.json
    python sample_audio/make_samples.py --expected-only  # keeps the clips, recomputes expected.json

Every clip is synthesized by ``fpcli.synth`` (deterministic, no third-party audio).
``expected.json`` holds the batch and streaming values this version computes for
each clip; ``tests/test_samples.py`` checks the designed properties (tempo, silence,
stereo image ...) and that the values still match.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from fpcli import synth
from fpcli.analyze import Want, analyse

HERE = Path(__file__).resolve().parent

CLIPS = {
    # name: (signal factory, samplerate, format, subtype, what it is)
    "drums_120bpm.flac": (lambda sr: synth.drum_pattern(120.0, 10.0, sr), 44100, "FLAC", "PCM_16",
                          "mono drum pattern at 120 BPM: kick on beats, snare on 2 and 4, hi-hat on eighths"),
    "chords_c_g_am_f.flac": (lambda sr: synth.chord_progression(12.0, sr), 22050, "FLAC", "PCM_16",
                             "stereo (L = R) sustained chords C - G - Am - F, 3 s each"),
    "wide_stereo.ogg": (lambda sr: synth.wide_stereo(10.0, sr), 48000, "OGG", "VORBIS",
                        "music-like clip, R = delayed and inverted L plus independent noise (wide stereo image)"),
    "mono_music.mp3": (lambda sr: synth.music_like(10.0, sr, bpm=100.0, seed=2, stereo=False), 44100, "MP3",
                       "MPEG_LAYER_III", "mono music-like clip at 100 BPM (chords, drums, melody)"),
    "silent_intro.wav": (lambda sr: np.concatenate([np.zeros((3 * sr, 2), np.float32),
                                                    synth.music_like(7.0, sr, bpm=90.0, seed=3)]),
                         22050, "WAV", "PCM_16", "3 s of digital silence, then 7 s of music at 90 BPM"),
}


def main() -> int:
    expected_only = "--expected-only" in sys.argv[1:]
    expected = {}
    for name, (factory, sr, fmt, subtype, description) in CLIPS.items():
        path = HERE / name
        if not expected_only:
            sf.write(path, factory(sr), sr, format=fmt, subtype=subtype)
        result = analyse(path, Want(batch=True))
        expected[name] = {
            "description": description,
            "samplerate": sr,
            "format": f"{fmt}/{subtype}",
            "duration_s": round(result.duration_s, 3),
            "streaming": {k: _round(v) for k, v in result.streaming.values.items()},
            "batch": {k: _round(v) for k, v in result.batch.values.items()},
        }
        print(f"{name:24s} {path.stat().st_size / 1024:7.0f} KiB  {description}")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.name in CLIPS)
    print(f"total {total / 1024 / 1024:.2f} MiB")
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


if __name__ == "__main__":
    sys.exit(main())
