"""The onset envelope's own cost, checkout against checkout (a change of the envelope
is a small share of the analysis, below the noise of a whole-file timing).

    python benchmarks/bench_onset_envelope.py CHECKOUT [CHECKOUT ...]

For each checkout (a folder holding the ``fpcli`` package), in a process of its own:
the best of 7 passes of 16,000 frames of 64 mel bands (about 3 minutes of audio at
86 frames per second) through ``OnsetEnvelope.push``, in blocks of 700 frames.
"""

from __future__ import annotations

import subprocess
import sys

PASS = """
import sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
from fpcli.dsp.onset import OnsetEnvelope
mel = (np.random.default_rng(0).random((16000, 64)) ** 4).astype(np.float32) * 1e3
best = []
for _ in range(7):
    envelope = OnsetEnvelope(1e3 * 256, np.geomspace(30, 16000, 64))
    started = time.perf_counter()
    for i in range(0, len(mel), 700):
        envelope.push(mel[i:i + 700])
    best.append(time.perf_counter() - started)
print(f"{min(best) * 1000:.1f} ms per 16,000 frames")
"""


def main() -> int:
    for checkout in sys.argv[1:] or ["."]:
        out = subprocess.run([sys.executable, "-c", PASS, checkout], capture_output=True, text=True, check=True)
        print(f"{checkout}: {out.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
