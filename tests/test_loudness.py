"""BS.1770-4 / EBU R128 conformance on synthesized EBU Tech 3341 and 3342 signals."""

import numpy as np
import pyloudnorm
import pytest

from fpcli import synth
from fpcli.dsp.loudness import (
    LoudnessMeter,
    channel_weights,
    integrated_loudness,
    k_weighting_sos,
    loudness_range,
)
from tests.conftest import run_batch, run_streaming


def meter_series(x: np.ndarray, sr: int, chunk: int = 48000):
    meter = LoudnessMeter(sr, x.shape[1])
    momentary, short_term = [], []
    for i in range(0, len(x), chunk):
        m, s = meter.push(x[i : i + chunk])
        momentary.append(m)
        short_term.append(s)
    return np.concatenate(momentary), np.concatenate(short_term)


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("case", sorted(synth.EBU_3341_CASES))
def test_ebu_3341_integrated_loudness(sr, case):
    levels, durations, expected = synth.EBU_3341_CASES[case]
    momentary, _ = meter_series(synth.sine_sequence(levels, durations, sr), sr)
    assert integrated_loudness(momentary) == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("sr", [44100, 48000])
def test_ebu_3341_case6_surround(sr):
    momentary, _ = meter_series(synth.ebu_3341_case6(sr), sr)
    assert integrated_loudness(momentary) == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("case", sorted(synth.EBU_3342_CASES))
def test_ebu_3342_loudness_range(sr, case):
    levels, durations, expected = synth.EBU_3342_CASES[case]
    _, short_term = meter_series(synth.sine_sequence(levels, durations, sr), sr)
    assert loudness_range(short_term) == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize("case", [1, 3])
def test_analyzers_report_ebu_lra_batch_and_streaming(case):
    sr = 48000
    levels, durations, expected = synth.EBU_3342_CASES[case]
    x = synth.sine_sequence(levels, durations, sr)
    assert run_batch(x, sr).values["loudness_range_lu"] == pytest.approx(expected, abs=1.0)
    assert run_streaming(x, sr).values["loudness_range_lu"] == pytest.approx(expected, abs=1.0)


def test_k_weighting_at_48k_matches_bs1770_tables():
    sos = k_weighting_sos(48000)
    # BS.1770-4 Table 1 (pre-filter) and Table 2 (RLB), 48 kHz.
    np.testing.assert_allclose(sos[0, :3], [1.53512485958697, -2.69169618940638, 1.19839281085285], rtol=1e-6)
    np.testing.assert_allclose(sos[0, 4:], [-1.69065929318241, 0.73248077421585], rtol=1e-6)
    np.testing.assert_allclose(sos[1, 4:], [-1.99004745483398, 0.99007225036621], rtol=1e-6)


def test_channel_weights_for_surround_layouts():
    np.testing.assert_array_equal(channel_weights(2), [1, 1])
    np.testing.assert_array_equal(channel_weights(5), [1, 1, 1, 1.41, 1.41])
    np.testing.assert_array_equal(channel_weights(6), [1, 1, 1, 0, 1.41, 1.41])


@pytest.mark.parametrize("sr", [44100, 48000, 22050])
def test_agrees_with_pyloudnorm_deman_on_music_like_audio(sr):
    x = synth.music_like(20.0, sr, bpm=110, seed=3)
    oracle = pyloudnorm.Meter(sr, filter_class="DeMan").integrated_loudness(x.astype(np.float64))
    assert run_batch(x, sr).values["lufs"] == pytest.approx(oracle, abs=0.05)


def test_chunking_does_not_change_block_energies():
    sr = 44100
    x = synth.music_like(8.0, sr, seed=1)
    a = meter_series(x, sr, chunk=997)
    b = meter_series(x, sr, chunk=len(x))
    for left, right in zip(a, b, strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-5)


def test_silence_is_gated_out():
    momentary, short_term = meter_series(np.zeros((48000 * 5, 2), np.float32), 48000)
    assert np.isnan(integrated_loudness(momentary))
    assert np.isnan(loudness_range(short_term))


@pytest.mark.parametrize("sr, channels", [(8000, 1), (44100, 2), (48000, 6), (96000, 2)])
def test_block_filter_is_sosfilt_in_float64_over_any_split(sr, channels):
    """The K-weighting run a frame at a time (matrix products, float32 frames, float64
    states) gives a float64 ``sosfilt``'s weighted power, whatever the pieces the
    stream comes in: empty, one sample, around a frame's length, long. A DC offset
    (which the high-pass takes out, so the state carries it) is in the signal too."""
    import scipy.signal

    from fpcli.dsp.blockfilter import FRAME, BlockFilter

    rng = np.random.default_rng(sr + channels)
    x = (rng.normal(size=(sr * 2, channels)) * 0.2 + 0.3).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, channels)
    sos = k_weighting_sos(sr)
    reference = (scipy.signal.sosfilt(sos, x.astype(np.float64), axis=0) ** 2) @ weights
    sizes = [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME, 5, 40000, *rng.integers(1, 9000, 30)]
    block_filter, pieces, start = BlockFilter(sos, channels), [], 0
    for size in [*sizes, len(x)]:
        pieces.append(block_filter.weighted_power(x[start:start + size], weights))
        start = min(start + size, len(x))
    power = np.concatenate(pieces)
    assert power.dtype == np.float32 and power.shape == reference.shape
    assert np.abs(power - reference).max() <= 2e-5 * np.abs(reference).max()
    assert abs(power.sum(dtype=np.float64) / reference.sum() - 1) < 1e-6


def test_block_filter_state_space_is_the_cascade():
    """``state_space`` gives the cascade's impulse response and takes ``sosfilt``'s
    state layout: a state set from ``zi`` continues as ``sosfilt`` does."""
    import scipy.signal

    from fpcli.dsp.blockfilter import state_space

    sos = k_weighting_sos(44100)
    a, b, c, d = state_space(sos)
    impulse = np.zeros(50)
    impulse[0] = 1.0
    response = [d] + [c @ np.linalg.matrix_power(a, k - 1) @ b for k in range(1, 50)]
    assert np.allclose(response, scipy.signal.sosfilt(sos, impulse), rtol=1e-12, atol=1e-15)
    zi = np.random.default_rng(0).normal(size=(2, 2))
    y, _ = scipy.signal.sosfilt(sos, np.zeros(3), zi=zi)
    state = zi.reshape(-1)
    assert np.isclose(c @ state, y[0]) and np.isclose(c @ a @ state, y[1])


def test_float_audio_above_full_scale_is_metered_as_batch_meters_it():
    """Float files may hold audio above full scale (an unnormalised mix): at about
    +30 LUFS the streaming loudness spread equals the batch one, with no warning.
    The histograms' top was +10 LUFS: every block landed in the last bin, outside its
    own relative gate, and the spread came out NaN after a 0/0."""
    import warnings

    sr = 44100
    rng = np.random.default_rng(3)
    t = np.arange(sr * 8) / sr
    level = 1.0 + 0.5 * (t > 4)                                  # two levels: a spread to measure
    x = (30.0 * level * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 0.5, len(t)))[:, None].repeat(2, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        streaming, batch = run_streaming(x.astype(np.float32), sr), run_batch(x.astype(np.float32), sr)
    assert batch.values["lufs"] > 25
    assert streaming.values["loudness_std_lu"] == pytest.approx(batch.values["loudness_std_lu"], abs=0.05)
    assert streaming.values["loudness_std_lu"] > 1.0
