"""Tempo from the metrical structure of the onset autocorrelation (#11, #12).

Input: the normalised autocorrelation of four onset envelopes (``OnsetAutocorrelation``
with 4 channels: all mel bands, then low / mid / high bands), lags 0..4 slowest beats.

Method (in the spirit of Klapuri et al. 2006, "Analysis of the meter of acoustic
musical signals", and Percival & Tzanetakis 2014, "Streamlined tempo estimation"):

1. Periodicity ``A(l)``: per band, the positive autocorrelation; the bands are
   averaged with equal weight (each band is normalised by its own energy), so a quiet
   kick drum counts as much as loud off-beat hi-hats.
2. Every beat period L in the 40-220 BPM range is scored by the whole metrical
   hierarchy it implies: its own periodicity A(L), the best supported subdivision
   A(L/2) or A(L/3) (the tatum), and the best supported grouping A(2L), A(3L) or
   A(4L) (the bar). A level that is a beat has both; an eighth-note pulse lacks the
   subdivision, a bar lacks the grouping. The score is a weighted sum of the logs,
   plus a broad log-normal prior on the beat rate (Moelants 2002: preferred tempi
   cluster around 100-120 BPM), so the prior only settles octave ties.
3. The chosen lag is refined by a parabola through the band-averaged periodicity.
4. Level checks (version 6): a level 3/2 faster or 4/3 slower that the scores put
   nearly level with the choice (a dotted-quarter pulse against the quarter beat, a
   figure of three sixteenths against the beat) is decided by beat tracking over
   the last ``RECENT_S`` seconds of the onset envelopes (``fpcli.dsp.beats``): the
   faster level is taken when its beats collect nearly as much onset strength per
   beat, the slower one when they collect more.

The beat of compound meters (6/8, 12/8) is the dotted quarter: the subdivision in
threes is as well supported as the binary one, and the prior (centred below the
eighth-note rate) prefers it.

Confidence: how much the winner's score beats the best candidate that is not the
same tempo (within 4 %), mapped through a logistic; plus how periodic the signal is.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fpcli.dsp.beats import beat_strength, tracking_per_beat
from fpcli.params import AnalysisParams

COMB_BEATS = 4            # the autocorrelation reaches 4 periods of the slowest beat
SUBDIVISIONS = (2, 3)     # tatum candidates: beat / 2 (simple), beat / 3 (compound)
GROUPINGS = (2, 3, 4)     # bar candidates: 2, 3 or 4 beats
FLOOR = 0.1               # mass floor inside the logs: "no evidence" costs log(0.1)
WEIGHT_BEAT = 1.0
WEIGHT_SUBDIVISION = 0.0
WEIGHT_GROUPING = 0.5
WEIGHT_PRIOR = 1.0
WEIGHT_FASTER = 0.1       # per octave: of two equally supported levels, take the faster
PEAK_MASS_LAGS = 5        # lags summed into one peak's mass
SAME_TEMPO = 0.04         # candidates within 4 % are the same tempo (the benchmarks' "exact")
# The level checks: (period of the other level / the chosen one, the most its score may
# trail, the least log ratio of its tracking per beat to the chosen level's). Chosen on
# the labelled clips (benchmarks/quality/results-openmsx.md): the 3:2 check took three
# dotted-pulse clips to their beat and moved no clip that was right, for every gap
# from 0.15 to 0.5 and least ratio from -0.20 to -0.35; on the score gap alone it lost
# eight 6/8 and dotted clips that are right. The 4:3 check took three clips to their
# beat and moved none that was right for gaps 0.10 to 0.20.
LEVEL_CHECKS = ((2 / 3, 0.15, -0.25), (4 / 3, 0.10, 0.0))
REPEAT_FLOOR = 0.0   # the autocorrelation at twice the beat period must exceed it (_repeats)
NEAR_LAG = 0.03           # a level's score: the best within 3 % of its period
RECENT_S = 60.0           # seconds of onset envelope the checks track beats over
MIN_TRACKED_BEATS = 8     # fewer beats of the slower level heard: no check


@dataclasses.dataclass(frozen=True)
class TempoEstimate:
    bpm: float          # NaN when there is no periodicity
    stability: float    # normalised onset autocorrelation at the chosen lag (all bands), [0, 1]
    margin: float = math.nan  # score of the winner minus the best other tempo (log units, >= 0)


def autocorrelation_lags(frame_rate: float, params: AnalysisParams) -> int:
    """Largest autocorrelation lag needed (frames): COMB_BEATS periods of the slowest beat."""
    return math.ceil(COMB_BEATS * 60 * frame_rate / params.tempo_min_bpm) + 2


def tempo_lag_range(frame_rate: float, params: AnalysisParams) -> tuple[int, int]:
    """Beat periods considered, in frames (inclusive)."""
    return (max(1, math.floor(60 * frame_rate / params.tempo_max_bpm)),
            math.ceil(60 * frame_rate / params.tempo_min_bpm))


def level_evidence(acf: np.ndarray) -> np.ndarray:
    """(lags,) or (lags, 1 + bands) normalised ACF -> (lags,) log evidence per lag.

    Per band, the peak mass: the positive ACF summed over the lag and its neighbours
    (+-2), because a period that is not a whole number of frames splits its peak
    between lags. The bands then vote by the mean of log(FLOOR + mass / 5): a
    geometric mean, so a period must be present in every band that has rhythm (the
    kick and bass mark beats, off-beat hi-hats only the high band). Column 0 (all
    bands mixed) is left out when band columns exist.
    """
    bands = _bands(np.maximum(np.asarray(acf, dtype=np.float64), 0.0))
    kernel = np.ones(PEAK_MASS_LAGS) / PEAK_MASS_LAGS
    mass = np.stack([np.convolve(bands[:, b], kernel, mode="same") for b in range(bands.shape[1])], axis=1)
    return np.log(FLOOR + mass).mean(axis=1)


def _bands(acf: np.ndarray) -> np.ndarray:
    """The band columns of a (lags, 1 + bands) ACF; a (lags,) ACF as one column."""
    if acf.ndim == 1:
        return acf[:, None]
    return acf[:, 1:] if acf.shape[1] > 1 else acf


def _peak_near(values: np.ndarray, positions: np.ndarray, radius: float) -> np.ndarray:
    """Max of ``values`` (n,) within +-radius of each fractional position (m,) -> (m,);
    values.min() where the window lies outside."""
    lo = np.floor(positions - radius).astype(int)
    hi = np.ceil(positions + radius).astype(int)
    width = int((hi - lo).max()) + 1 if len(positions) else 1
    index = lo[:, None] + np.arange(width)[None, :]
    inside = (index <= hi[:, None]) & (index >= 0) & (index < len(values))
    picked = np.where(inside, values[np.clip(index, 0, len(values) - 1)], -np.inf)
    out = picked.max(axis=1)
    return np.where(np.isfinite(out), out, values.min())


def metrical_scores(evidence: np.ndarray, lags: np.ndarray, frame_rate: float,
                    params: AnalysisParams) -> np.ndarray:
    """Score of each beat period in ``lags`` (frames) from the log evidence (lags,)."""
    lags = lags.astype(np.float64)
    beat = _peak_near(evidence, lags, 0.5)
    sub = np.max([_peak_near(evidence, lags / s, 0.5) for s in SUBDIVISIONS], axis=0)
    # Tempo drift and lag rounding grow with the multiple: widen the window with it.
    group = np.max([_peak_near(evidence, lags * g, 0.5 + 0.25 * g) for g in GROUPINGS], axis=0)
    bpm = 60 * frame_rate / lags
    log_prior = -0.5 * (np.log2(bpm / params.tempo_prior_bpm) / params.tempo_prior_octaves) ** 2
    return (WEIGHT_BEAT * beat + WEIGHT_SUBDIVISION * sub + WEIGHT_GROUPING * group
            + WEIGHT_PRIOR * log_prior + WEIGHT_FASTER * np.log2(bpm))


def estimate_tempo(acf: np.ndarray, frame_rate: float, params: AnalysisParams,
                   recent: np.ndarray | None = None) -> TempoEstimate:
    """Tempo (BPM) of the normalised onset autocorrelation ``acf``: (lags,) or (lags, 4).
    ``recent``: the tempo bands' onset envelopes of the last frames heard (frames,
    bands), for the level checks; without it, the autocorrelation's level."""
    acf = np.asarray(acf, dtype=np.float64)
    overall = acf if acf.ndim == 1 else acf[:, 0]
    low, high = tempo_lag_range(frame_rate, params)
    high = min(high, len(overall) - 2)
    if high <= low or not np.any(overall[low : high + 1] > 0):
        return TempoEstimate(math.nan, math.nan)
    evidence = level_evidence(acf)
    # The lag is refined on the raw band-mean ACF: the peak masses are flat-topped.
    p = _bands(np.maximum(acf, 0.0)).mean(axis=1)
    lags = np.arange(low, high + 1)
    scores = metrical_scores(evidence, lags, frame_rate, params)
    best, lag = _best_in_range(p, lags, scores, frame_rate, params)
    strength = beat_strength(recent) if recent is not None else None
    if strength is not None:
        best, lag = _checked_level((best, lag), strength, lags, scores, p, frame_rate, params)
    # Rhythm stability (#12) stays the all-band autocorrelation height at the beat.
    top = max((best - 1, best, best + 1), key=lambda i: overall[i] if 1 <= i < len(overall) - 1 else -np.inf)
    stability = float(np.clip(parabolic_peak(overall, top)[1], 0.0, 1.0))
    if stability == 0.0 or not _repeats(overall, lag):
        # No periodicity at the best lag: a steady tone's onset envelope is flat, and its
        # rounding noise picked a lag (172.27 BPM, one of 30 hops at 44.1 kHz) that was
        # reported as a tempo. No beat, no tempo; the stability 0 says so.
        return TempoEstimate(math.nan, 0.0)
    tempo = float(np.clip(60 * frame_rate / lag, params.tempo_min_bpm, params.tempo_max_bpm))
    others = np.abs(lags / lag - 1) > SAME_TEMPO
    margin = float(scores.max() - scores[others].max()) if others.any() else math.inf
    return TempoEstimate(tempo, stability, max(margin, 0.0))


def _repeats(overall: np.ndarray, lag: float) -> bool:
    """Whether the onsets that make the period ``lag`` (frames) repeat: the all-band
    autocorrelation is above REPEAT_FLOOR somewhere within a frame of twice the lag.
    One sound alone (a 0.5 s tone in a minute of silence) has two onsets, its start and
    its end, and nothing at twice their distance: it was given 126 BPM at confidence
    1.0. Lags beyond the frames heard are 0 (``OnsetAutocorrelation.normalized``): less
    than two periods heard (two clicks 1 s apart) is no tempo either. (The lags held
    reach four of the slowest periods; the first check only guards the index.)"""
    twice = int(round(2 * lag))
    if twice + 1 >= len(overall):
        return True
    return bool(overall[twice - 1:twice + 2].max() > REPEAT_FLOOR)


def _in_range(lag: float, frame_rate: float, params: AnalysisParams) -> bool:
    """Whether the beat period ``lag`` (frames) is a tempo within the range asked for."""
    return params.tempo_min_bpm <= 60 * frame_rate / lag <= params.tempo_max_bpm


def _best_in_range(p: np.ndarray, lags: np.ndarray, scores: np.ndarray, frame_rate: float,
                   params: AnalysisParams) -> tuple[int, float]:
    """The refined peak of the best-scoring lag whose peak lies within the tempo range.
    A pulse faster than the range peaks past its end, where the edge lag scored best:
    refined, it read 237.9 BPM, clipped to 220.0 at confidence 1 (the next level, its
    half, is the beat within the range). After the first, a lag must be a peak of its
    own (not on the slope of one left out). The first peak when none lies within it
    (clipped, as before)."""
    allowed = np.ones(len(lags), dtype=bool)
    first: tuple[int, float] | None = None
    while allowed.any():
        i = int(np.argmax(np.where(allowed, scores, -np.inf)))
        peak = _refined(p, float(lags[i]))
        if _in_range(peak[1], frame_rate, params) and (first is None or _is_peak(p, peak[0])):
            return peak
        first = first or peak
        allowed[max(i - 1, 0) : i + 2] = False
    assert first is not None
    return first


def _is_peak(p: np.ndarray, i: int) -> bool:
    """Whether ``p`` has a strict local maximum above 0 at ``i`` (a flat stretch is none)."""
    return 1 <= i < len(p) - 1 and p[i] > max(p[i - 1], p[i + 1], 0.0)


def _refined(p: np.ndarray, lag: float) -> tuple[int, float]:
    """The peak of the band-mean periodicity ``p`` nearest ``lag`` (frames): the best
    of the three whole lags around it, and its position refined by a parabola."""
    near = int(round(lag))
    near = max((near - 1, near, near + 1), key=lambda i: p[i] if 1 <= i < len(p) - 1 else -np.inf)
    return near, parabolic_peak(p, near)[0]


def _score_near(lags: np.ndarray, scores: np.ndarray, lag: float) -> float:
    """The best score within NEAR_LAG of ``lag`` (-inf when none is)."""
    near = np.abs(lags / lag - 1) <= NEAR_LAG
    return float(scores[near].max()) if near.any() else -math.inf


def _checked_level(level: tuple[int, float], strength: np.ndarray, lags: np.ndarray, scores: np.ndarray,
                   p: np.ndarray, frame_rate: float, params: AnalysisParams) -> tuple[int, float]:
    """The beat period after the level checks (LEVEL_CHECKS), as ``_refined`` gives
    one: ``level``, or a level 3/2 faster or 4/3 slower whose tracked beats say it is
    the beat (of two that pass, the one tracked better). ``strength``: the beat
    strength per frame."""
    lag = level[1]
    own_score = _score_near(lags, scores, lag)
    if not math.isfinite(own_score):
        return level   # refined past the range's end: no score to compare (-inf would pass any gap)
    own_tracking: float | None = None
    chosen, chosen_ratio = level, -math.inf
    for ratio, most_behind, least_log_ratio in LEVEL_CHECKS:
        other = lag * ratio
        if not _in_range(other, frame_rate, params):
            continue
        if len(strength) < MIN_TRACKED_BEATS * max(lag, other):
            continue
        if own_score - _score_near(lags, scores, other) > most_behind:
            continue
        refined = _refined(p, other)
        if not _in_range(refined[1], frame_rate, params):
            continue   # its peak lies past the range's end (it was clipped there)
        if own_tracking is None:
            own_tracking = tracking_per_beat(strength, lag)
        log_ratio = math.log(max(tracking_per_beat(strength, refined[1]), 1e-3) / max(own_tracking, 1e-3))
        if log_ratio >= least_log_ratio and log_ratio > chosen_ratio:
            chosen, chosen_ratio = refined, log_ratio
    return chosen


def parabolic_peak(values: np.ndarray, i: int) -> tuple[float, float]:
    """Sub-sample position and height of the peak at index i (3-point parabola)."""
    if i <= 0 or i >= len(values) - 1:
        return float(i), float(values[i])
    a, b, c = values[i - 1], values[i], values[i + 1]
    denominator = a - 2 * b + c
    if denominator >= 0:
        return float(i), float(b)
    # A vertex beyond the neighbours means a flat top, not a peak: clip it there, or a
    # tiny denominator turns float rounding into an arbitrary lag.
    shift = float(np.clip(0.5 * (a - c) / denominator, -0.5, 0.5))
    return i + shift, float(b - 0.25 * (a - c) * shift)
