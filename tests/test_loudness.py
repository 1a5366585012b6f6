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
