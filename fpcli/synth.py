"""Deterministic test signals: sines, clicks, EBU loudness test cases, music-like clips.

Used by the tests, by ``sample_audio/make_samples.py`` and by ``fpcli bench`` when no
library is given. All functions return float32 arrays of shape (frames, channels).
"""

from __future__ import annotations

import numpy as np


def sine(freq: float, seconds: float, sr: int, *, dbfs: float = -6.0, channels: int = 1) -> np.ndarray:
    """A sine of peak amplitude ``dbfs`` in every channel."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def click_track(bpm: float, seconds: float, sr: int, *, dbfs: float = -6.0) -> np.ndarray:
    """Mono clicks (5 ms decaying 2 kHz bursts) every 60/bpm s."""
    n = int(round(seconds * sr))
    x = np.zeros(n)
    length = int(0.005 * sr)
    t = np.arange(length) / sr
    burst = np.sin(2 * np.pi * 2000 * t) * np.exp(-t / 0.001)
    for start in np.arange(0, seconds, 60.0 / bpm):
        i = int(round(start * sr))
        x[i : i + length] += burst[: max(0, min(length, n - i))]
    return (10 ** (dbfs / 20) * x)[:, None].astype(np.float32)


def sine_sequence(levels_dbfs: list[float], durations_s: list[float], sr: int, *, freq: float = 1000.0,
                  channels: int = 2) -> np.ndarray:
    """Consecutive sine segments at the given peak levels (EBU Tech 3341/3342 style).

    The phase runs on across segments, so level changes are the only discontinuities.
    """
    lengths = [int(round(d * sr)) for d in durations_s]
    gains = np.concatenate([np.full(n, 10 ** (level / 20)) for level, n in zip(levels_dbfs, lengths, strict=True)])
    t = np.arange(len(gains)) / sr
    x = gains * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


# EBU Tech 3341 (2016) table 1, cases 1-5 (stereo 1 kHz sine, levels per channel),
# and Tech 3342 (2016) table 1, cases 1-4: (levels dBFS, durations s, expected).
EBU_3341_CASES = {
    1: ([-23.0], [20.0], -23.0),
    2: ([-33.0], [20.0], -33.0),
    3: ([-36.0, -23.0, -36.0], [10.0, 60.0, 10.0], -23.0),
    4: ([-72.0, -36.0, -23.0, -36.0, -72.0], [10.0, 10.0, 60.0, 10.0, 10.0], -23.0),
    5: ([-26.0, -20.0, -26.0], [20.0, 20.1, 20.0], -23.0),
}
EBU_3342_CASES = {
    1: ([-20.0, -30.0], [20.0, 20.0], 10.0),
    2: ([-20.0, -15.0], [20.0, 20.0], 5.0),
    3: ([-40.0, -20.0], [20.0, 20.0], 20.0),
    4: ([-50.0, -35.0, -20.0, -35.0, -50.0], [20.0, 20.0, 20.0, 20.0, 20.0], 15.0),
}


def ebu_3341_case6(sr: int, seconds: float = 20.0) -> np.ndarray:
    """Tech 3341 case 6: 5.0 channels L R C Ls Rs at -28, -28, -24, -30, -30 dBFS -> -23 LUFS."""
    return np.concatenate([sine(1000.0, seconds, sr, dbfs=level) for level in (-28, -28, -24, -30, -30)], axis=1)


def music_like(seconds: float, sr: int, *, bpm: float = 120.0, seed: int = 0, stereo: bool = True) -> np.ndarray:
    """A deterministic clip with music's structure: a chord progression of harmonic
    tones (I-V-vi-IV in C), a kick on every beat, hi-hats on eighths, a melody, and
    a slow level swell; stereo with the parts panned apart."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    beat = 60.0 / bpm
    chords = [(60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)]  # MIDI notes
    pad = np.zeros(n)
    for bar_start in np.arange(0, seconds, 4 * beat):
        notes = chords[int(round(bar_start / (4 * beat))) % 4]
        i0, i1 = int(bar_start * sr), min(n, int((bar_start + 4 * beat) * sr))
        tt = t[i0:i1] - bar_start
        for note in notes:
            f = 440.0 * 2 ** ((note - 69) / 12)
            pad[i0:i1] += sum(np.sin(2 * np.pi * k * f * tt) / k ** 1.5 for k in range(1, 6)) * np.exp(-tt / 3.0)
    drums = np.zeros(n)
    kick_len = int(0.15 * sr)
    tk = np.arange(kick_len) / sr
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk / 0.03)) * 0.03)) * np.exp(-tk / 0.05)
    hat_len = int(0.03 * sr)
    for start in np.arange(0, seconds, beat / 2):
        i = int(start * sr)
        if round(start / beat * 2) % 2 == 0:
            m = min(kick_len, n - i)
            drums[i : i + m] += 1.2 * kick[:m]
        m = min(hat_len, n - i)
        hat = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.005 * sr))
        drums[i : i + m] += 0.08 * np.diff(np.concatenate([[0.0], hat]))  # hats well below the kick
    melody = np.zeros(n)
    scale = [72, 74, 76, 77, 79, 81]
    for start in np.arange(0, seconds, beat):
        f = 440.0 * 2 ** ((scale[rng.integers(len(scale))] - 69) / 12)
        i0, i1 = int(start * sr), min(n, int((start + beat) * sr))
        tt = t[i0:i1] - start
        melody[i0:i1] += 0.3 * np.sin(2 * np.pi * f * tt) * np.minimum(1, tt / 0.02) * np.exp(-tt / 0.4)
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * t / max(seconds, 1e-9)) ** 2
    mix_left = swell * (0.25 * pad + 0.35 * drums + 0.25 * melody)
    mix_right = swell * (0.25 * pad + 0.35 * drums + 0.05 * melody)
    x = np.stack([mix_left, mix_right], axis=1) if stereo else ((mix_left + mix_right) / 2)[:, None]
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def drum_pattern(bpm: float, seconds: float, sr: int, *, seed: int = 0) -> np.ndarray:
    """Mono kick on every beat, snare on beats 2 and 4, hi-hat on eighths."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    x = np.zeros(n)
    beat = 60.0 / bpm
    tk = np.arange(int(0.2 * sr)) / sr
    kick = np.sin(2 * np.pi * (45 * tk + 1.8 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.07)
    snare = rng.standard_normal(int(0.15 * sr)) * np.exp(-np.arange(int(0.15 * sr)) / (0.04 * sr))
    hat = np.diff(np.concatenate([[0.0], rng.standard_normal(int(0.04 * sr))])) * np.exp(
        -np.arange(int(0.04 * sr)) / (0.008 * sr))
    for k, start in enumerate(np.arange(0, seconds, beat / 2)):
        i = int(round(start * sr))
        parts = [(0.25, hat)]
        if k % 2 == 0:
            parts.append((1.0, kick))
        if k % 4 == 2:
            parts.append((0.5, snare))
        for gain, sound in parts:
            m = min(len(sound), n - i)
            x[i : i + m] += gain * sound[:m]
    return (0.7 * x / np.abs(x).max())[:, None].astype(np.float32)


def chord_progression(seconds: float, sr: int, *, chord_seconds: float = 3.0) -> np.ndarray:
    """Stereo sustained organ-like chords C - G - Am - F, each ``chord_seconds`` long."""
    chords = [(48, 60, 64, 67), (43, 59, 62, 67), (45, 57, 60, 64), (41, 57, 60, 65)]
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = np.zeros(n)
    for k, start in enumerate(np.arange(0, seconds, chord_seconds)):
        i0, i1 = int(start * sr), min(n, int((start + chord_seconds) * sr))
        tt = t[i0:i1] - start
        envelope = np.minimum(1, tt / 0.05) * np.minimum(1, (chord_seconds - tt) / 0.05)
        for note in chords[k % 4]:
            f = 440.0 * 2 ** ((note - 69) / 12)
            x[i0:i1] += envelope * sum(np.sin(2 * np.pi * h * f * tt) / h ** 2 for h in (1, 2, 3, 4))
    x = 0.5 * x / np.abs(x).max()
    return np.stack([x, x], axis=1).astype(np.float32)


def wide_stereo(seconds: float, sr: int, *, seed: int = 0) -> np.ndarray:
    """Music-like clip whose side signal is strong: L and R are weakly correlated."""
    a = music_like(seconds, sr, seed=seed, stereo=False)[:, 0]
    # A 12 ms inter-channel delay plus independent noise decorrelates L and R.
    delay = int(0.012 * sr)
    b = np.concatenate([np.zeros(delay), a[:-delay]])
    rng = np.random.default_rng(seed)
    air = 0.08 * rng.standard_normal((len(a), 2))
    x = np.stack([a, -0.8 * b], axis=1) + air
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


METERS = {  # meter: (beats per bar, pulses per beat); the beat of 6/8 is the dotted quarter
    "4/4": (4, 2),
    "3/4": (3, 2),
    "6/8": (2, 3),
}


def metrical_clip(bpm: float, seconds: float, sr: int, *, meter: str = "4/4", swing: float = 0.0,
                  offbeat: bool = False, drums: bool = True, seed: int = 0) -> np.ndarray:
    """Mono clip with a known metrical structure, for tempo tests and benchmarks.

    ``bpm`` is the beat rate (the dotted quarter in 6/8). Bass on the first beat of
    each bar, a chord on every beat, a melody note on every pulse (eighth notes; in
    6/8 the three eighths of a dotted quarter); with ``drums`` a kick on the
    downbeat, a snare on the other beats and a hi-hat on every pulse. ``swing`` in
    [0, 1] delays the off-beat eighths of simple meters towards the triplet position
    (1 = 2/3 of the beat). ``offbeat`` adds a loud open hi-hat on every off-beat
    eighth (the second pulse of each beat), stronger than the kick: the off-beat pattern that makes tempo estimators
    double.
    """
    rng = np.random.default_rng(seed)
    beats_per_bar, pulses = METERS[meter]
    n = int(round(seconds * sr))
    x = np.zeros(n)
    beat = 60.0 / bpm
    tk = np.arange(int(0.2 * sr)) / sr
    kick = np.sin(2 * np.pi * (45 * tk + 1.8 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.07)
    snare = rng.standard_normal(int(0.15 * sr)) * np.exp(-np.arange(int(0.15 * sr)) / (0.04 * sr))
    hat = np.diff(np.concatenate([[0.0], rng.standard_normal(int(0.04 * sr))])) * np.exp(
        -np.arange(int(0.04 * sr)) / (0.008 * sr))
    open_hat = np.diff(np.concatenate([[0.0], rng.standard_normal(int(0.12 * sr))])) * np.exp(
        -np.arange(int(0.12 * sr)) / (0.04 * sr))

    def tone(midi: float, length_s: float) -> np.ndarray:
        t = np.arange(int(length_s * sr)) / sr
        f = 440.0 * 2 ** ((midi - 69) / 12)
        return sum(np.sin(2 * np.pi * k * f * t) / k ** 1.5 for k in range(1, 5)) * np.exp(-t / (0.5 * length_s))

    def add(start_s: float, sound: np.ndarray, gain: float) -> None:
        i = int(round(start_s * sr))
        m = min(len(sound), n - i)
        if m > 0:
            x[i : i + m] += gain * sound[:m]

    roots = [48, 43, 45, 41]
    scale = [72, 74, 76, 77, 79, 81, 83]
    for b, start in enumerate(np.arange(0, seconds, beat)):
        bar, in_bar = divmod(b, beats_per_bar)
        root = roots[bar % 4]
        if in_bar == 0:
            add(start, tone(root - 12, beats_per_bar * beat), 0.6)
        for note in (root + 12, root + 16, root + 19):
            add(start, tone(note, beat), 0.12)
        if drums:
            add(start, kick if in_bar == 0 else snare, 0.9 if in_bar == 0 else 0.45)
        for k in range(pulses):
            offset = k * beat / pulses
            if pulses == 2 and k == 1:
                offset += swing * beat / 6  # 1/2 -> 2/3 of the beat at full swing
            add(start + offset, tone(scale[rng.integers(len(scale))], beat / pulses), 0.12 if k else 0.18)
            if drums:
                add(start + offset, hat, 0.2)
            if offbeat and k == 1:
                add(start + offset, open_hat, 1.2)
    return (0.7 * x / np.abs(x).max())[:, None].astype(np.float32)
