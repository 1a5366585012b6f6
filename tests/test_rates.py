"""Fingerprint v3: the same audio gives the same values at every sample rate and after
a lossy codec's low-pass (frames of one duration at every rate, chroma spread over
the semitones a bin spans, flatness up to 11,025 Hz)."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from fpcli import synth
from fpcli.batch import BatchAnalyzer
from fpcli.params import AnalysisParams, frame_scale
from fpcli.streaming import StreamingAnalyzer

SR = 44100


def _values(x: np.ndarray, sr: int, analyzer=BatchAnalyzer) -> dict:
    a = analyzer(sr, x.shape[1])
    a.push(x.astype(np.float32))
    return a.finish().values


@pytest.fixture(scope="module")
def clip():
    """Music with a noise floor 40 dB down, as recordings have: the flatness of a
    noiseless synthetic clip (1e-5) is set by float rounding, which resampling changes."""
    music = synth.music_like(8.0, SR, bpm=104, seed=3)
    return music + 0.01 * np.random.default_rng(0).standard_normal(music.shape)


@pytest.mark.parametrize("rate,up,down", [(48000, 160, 147), (96000, 320, 147), (192000, 640, 147)])
def test_a_resampled_copy_gives_the_same_values(clip, rate, up, down):
    """A 192 kHz copy read 200 BPM for 100, twice the onsets and a pitch stability of
    0.31 for 0.998, and key clarity moved by 0.2 between 44.1 and 48 kHz."""
    base = _values(clip, SR)
    copy = _values(resample_poly(clip, up, down, axis=0), rate)
    assert copy["tempo_bpm"] == pytest.approx(base["tempo_bpm"], rel=0.01)
    for name in ("pitch_stability", "key_clarity", "harmonic_ratio"):
        assert copy[name] == pytest.approx(base[name], abs=0.05), name
    # 44.1 and 48 kHz hops differ by 9 % (512 samples): the beat falls between other lags.
    assert copy["rhythm_stability"] == pytest.approx(base["rhythm_stability"], abs=0.08)
    for name in ("transient_density", "spectral_flatness"):
        assert copy[name] == pytest.approx(base[name], rel=0.1), name
    # Up to 20 kHz only: the empty bins above a hi-res copy's content raised it 5-10 %.
    # (4 %: resample_poly's anti-alias filter takes some of this clip's white noise floor
    # between 18 and 20 kHz at 192 kHz, -2.4 %; real tracks agree within 0.05 %.)
    assert copy["spectral_centroid_hz"] == pytest.approx(base["spectral_centroid_hz"], rel=0.04)


def test_flatness_ignores_what_a_lossy_codec_cuts(clip):
    """An MP3 or Vorbis copy holds nothing above 15-16 kHz: the empty bins halved the
    flatness (0.093 -> 0.044 for MP3 on a real track)."""
    spectrum = np.fft.rfft(clip, axis=0)
    spectrum[np.fft.rfftfreq(len(clip), 1 / SR) > 15000] = 0
    low_passed = np.fft.irfft(spectrum, n=len(clip), axis=0)
    assert _values(low_passed, SR)["spectral_flatness"] == pytest.approx(
        _values(clip, SR)["spectral_flatness"], rel=0.03)


@pytest.mark.parametrize("analyzer", [StreamingAnalyzer, BatchAnalyzer])
@pytest.mark.parametrize("sr,hz,amplitude", [(48000, 1000, 0.1), (44100, 1000, 0.1), (48000, 440, 0.01)])
def test_steady_tones_at_any_rate_have_no_tempo(analyzer, sr, hz, amplitude):
    """A 1 kHz sine at 48 kHz read 144.23 BPM with full confidence: its onset envelope
    varies by float rounding only (< 0.001 dB), which is no rhythm."""
    t = np.arange(sr * 6) / sr
    values = _values((amplitude * np.sin(2 * np.pi * hz * t))[:, None], sr, analyzer)
    assert values["tempo_bpm"] is None and values["rhythm_stability"] == 0.0


@pytest.mark.parametrize("analyzer", [StreamingAnalyzer, BatchAnalyzer])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_drones_and_noise_without_onsets_have_no_tempo(analyzer, sr, rng):
    """Low partials beat against the hop: a 110 Hz sine read 143.6 BPM with rhythm
    stability 0.92, a held C-E-G chord 156.6 BPM, pink noise 136.9 BPM, though nothing
    in them marks a beat (no onset at all)."""
    t = np.arange(sr * 8) / sr
    white = rng.standard_normal(len(t))
    pink = np.fft.irfft(np.fft.rfft(white) / np.maximum(np.sqrt(np.arange(len(t) // 2 + 1)), 1), n=len(t))
    for signal in (0.5 * np.sin(2 * np.pi * 55 * t), 0.5 * np.sin(2 * np.pi * 110 * t),
                   sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)),
                   0.3 * pink / np.abs(pink).max()):
        fingerprint = analyzer(sr, 1)
        fingerprint.push(signal[:, None].astype(np.float32))
        result = fingerprint.finish()
        assert result.values["transient_density"] == 0.0
        assert result.values["tempo_bpm"] is None and result.values["rhythm_stability"] == 0.0
        # v5 (the floor below the loudest band) finds some of these steady (no periodicity)
        # before it finds them without onsets: either reason says there is no beat.
        assert result.reasons["tempo_bpm"] in ("no onset heard: nothing marks a beat",
                                               "no periodicity in the onset envelope")


def test_frames_keep_their_duration_at_every_rate():
    assert [frame_scale(r) for r in (8000, 16000, 22050, 32000, 44100, 48000, 96000, 192000, 384000)] == \
        [0.25, 0.5, 0.5, 1.0, 1.0, 1.0, 2.0, 4.0, 8.0]
    for rate in (8000, 22050, 44100, 96000, 192000):
        scaled = AnalysisParams().at_rate(rate)
        assert 0.03 < scaled.n_fft / rate < 0.07 and scaled.n_fft == 4 * scaled.hop


def test_a_dark_track_keeps_its_centroid_at_192_khz():
    """The near-empty bins above a hi-res copy's content (float rounding of the
    resampling, weighted by magnitude and frequency) raised a dark track's centroid
    by 6.5 % (453 -> 482 Hz); measured up to 20 kHz, 0.7 %."""
    from scipy.signal import butter, sosfilt

    dark = sosfilt(butter(4, 1500, fs=SR, output="sos"), synth.music_like(8.0, SR, bpm=104, seed=3), axis=0) * 0.1
    base = _values(dark.astype(np.float32), SR)["spectral_centroid_hz"]
    copy = _values(resample_poly(dark, 640, 147, axis=0).astype(np.float32), 192000)["spectral_centroid_hz"]
    assert copy == pytest.approx(base, rel=0.015)
