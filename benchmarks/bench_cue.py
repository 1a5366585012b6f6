"""Cold analysis of an album image split by a CUE sheet into many short tracks.

    python benchmarks/bench_cue.py --tracks 300 999 [--seconds 1.0]

Writes a generated 22.05 kHz mono FLAC image and a sheet of ``--tracks`` tracks of
``--seconds`` each into a temporary folder, then times ``fpcli analyze`` of the folder
into a new store (a fresh process, as a user runs it). Each track of an image is
opened on its own; this measures what the sheet and the image cost per track.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

SR = 22050


def make_album(folder: str, tracks: int, seconds: float) -> None:
    """album.flac (noise, ``tracks`` x ``seconds``) and album.cue splitting it."""
    noise = np.random.default_rng(1).standard_normal(int(SR * seconds * tracks)).astype(np.float32) * 0.1
    sf.write(os.path.join(folder, "album.flac"), noise, SR)
    lines = ['FILE "album.flac" WAVE']
    for i in range(tracks):
        minutes, rest = divmod(i * seconds, 60)
        lines += [f"  TRACK {i + 1:02d} AUDIO",
                  f"    INDEX 01 {int(minutes):02d}:{int(rest):02d}:{round((rest % 1) * 75):02d}"]
    with open(os.path.join(folder, "album.cue"), "w") as out:
        out.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, nargs="+", default=[300, 999])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    print("| tracks | audio s | analyze, cold (s) |")
    print("|---|---|---|")
    for tracks in args.tracks:
        with tempfile.TemporaryDirectory() as work:
            album = os.path.join(work, "album")
            os.mkdir(album)
            make_album(album, tracks, args.seconds)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fpcli", "--store", os.path.join(work, "store"), "analyze",
                            "--quiet", album], check=False, capture_output=True)
            print(f"| {tracks} | {tracks * args.seconds:g} | {time.perf_counter() - started:.1f} |")


if __name__ == "__main__":
    main()
