"""Unit tests of the shared per-frame maths."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpcli.dsp.framing import CenteredWindow, Framer
from fpcli.dsp.hpss import running_median
from fpcli.dsp.onset import OnsetAutocorrelation
from fpcli.dsp.pitch import _first_dip
from fpcli.dsp.spectral import FLATNESS_FLOOR, spectral_flatness, spectral_rolloff
from fpcli.dsp.stats import Histogram, Welford


@pytest.mark.parametrize("radius", [1, 3, 4, 6])
@pytest.mark.parametrize("axis", [0, 1])
def test_running_median_is_exact(rng, radius, axis):
    x = rng.random((40, 33)).astype(np.float32)
    got = running_median(x, radius, axis=axis)
    windows = np.lib.stride_tricks.sliding_window_view(x, 2 * radius + 1, axis=axis)
    np.testing.assert_array_equal(got, np.median(windows, axis=-1))


@pytest.mark.parametrize("levels", [2, 5, 1000])
@pytest.mark.parametrize("axis", [0, 1])
def test_running_median_of_nine_is_exact_with_ties(rng, levels, axis):
    x = rng.integers(0, levels, size=(60, 50)).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x, 9, axis=axis)
    np.testing.assert_array_equal(running_median(x, 4, axis=axis), np.median(windows, axis=-1))


@pytest.mark.parametrize("n_bins", [129, 1025, 2049])
def test_rolloff_is_the_first_bin_reaching_the_fraction(rng, n_bins):
    power = (rng.random((50, n_bins)) ** 8).astype(np.float32)   # peaky spectra
    power[3] = 0.0                                                # an all-zero frame
    power[4, :] = 0.0
    power[4, -1] = 1.0                                            # all power in the last bin
    freqs = np.arange(n_bins) * 10.0
    cumulative = np.cumsum(power.astype(np.float64), axis=1)
    expected = freqs[np.minimum((cumulative < 0.85 * cumulative[:, -1:]).sum(axis=1), n_bins - 1)]
    np.testing.assert_array_equal(spectral_rolloff(power, freqs, 0.85), expected)


def test_flatness_is_geometric_over_arithmetic_mean(rng):
    power = (rng.random((40, 1025)) * 10.0 ** rng.uniform(-30, 6, (40, 1))).astype(np.float32)
    power[:, ::7] = 0.0                                           # floored bins
    power[5] = 0.0                                                # an all-zero frame: flat
    magnitude = np.sqrt(power)
    floored = np.maximum(magnitude.astype(np.float64), FLATNESS_FLOOR)
    expected = np.minimum(np.exp(np.log(floored).mean(axis=1)) / np.maximum(magnitude.mean(axis=1), FLATNESS_FLOOR),
                          1.0)
    np.testing.assert_allclose(spectral_flatness(power, magnitude), expected, rtol=1e-5)


def test_first_dip_is_the_minimum_of_the_first_run_below_threshold():
    values = np.array([[0.9, 0.1, 0.05, 0.2, 0.01, 0.9],     # first run: columns 1-2
                       [0.9, 0.9, 0.9, 0.9, 0.9, 0.9],       # no run
                       [0.9, 0.9, 0.9, 0.3, 0.1, 0.05],      # run to the last column
                       [0.01, 0.9, 0.0, 0.0, 0.0, 0.0]])     # run of one at column 0
    assert _first_dip(values, values < 0.15).tolist() == [2, 0, 5, 0]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=12))
def test_framer_gives_the_frames_of_the_whole_stream(cuts):
    x = np.arange(5000, dtype=np.float32)
    framer = Framer(256, 64)
    frames, position = [], 0
    for cut in sorted(cuts) + [len(x)]:
        got, _ = framer.push(x[position:cut])
        frames.append(got.copy())
        position = max(position, cut)
    frames = np.concatenate(frames)
    expected = np.lib.stride_tricks.sliding_window_view(x, 256)[::64]
    np.testing.assert_array_equal(frames, expected)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=10), st.integers(1, 5))
def test_centered_window_emits_every_frame_once_with_context(sizes, radius):
    series = np.arange(1, sum(sizes) + 1, dtype=np.float32)
    window = CenteredWindow(radius)
    centres, position = [], 0
    for size in sizes:
        context = window.push(series[position : position + size])
        position += size
        centres.append(context[radius : radius + CenteredWindow.emitted(context, radius)])
    final = window.finish()
    centres.append(final[radius : radius + CenteredWindow.emitted(final, radius)])
    np.testing.assert_array_equal(np.concatenate(centres), series)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.integers(1, 50))
def test_streamed_autocorrelation_equals_direct(seed, length, chunk):
    x = np.random.default_rng(seed).random(length)
    acf = OnsetAutocorrelation(max_lag=30)
    for i in range(0, length, chunk):
        acf.push(x[i : i + chunk])
    got = acf.normalized()
    centred = x - x.mean()
    direct = np.array([centred[lag:] @ centred[: length - lag] if lag < length else 0.0 for lag in range(31)])
    if direct[0] <= 0:
        assert not got.any()
        return
    lags = np.arange(31)
    unbiased = np.where(lags < length, direct * length / np.maximum(length - lags, 1), 0.0)
    np.testing.assert_allclose(got, unbiased / unbiased[0], atol=1e-9)


def test_welford_matches_numpy(rng):
    x = rng.standard_normal(1000)
    w = Welford()
    for part in np.array_split(x, 7):
        w.add(part)
    assert w.mean == pytest.approx(x.mean()) and w.std == pytest.approx(x.std())


@pytest.mark.parametrize("log", [False, True])
def test_histogram_quantile_within_one_bin(rng, log):
    values = rng.uniform(1, 100, 5001)
    h = Histogram(0.5, 200, 2000, log=log)
    h.add(values)
    exact = np.quantile(values, 0.5, method="inverted_cdf")
    got = h.quantile(0.5)
    if log:
        assert abs(np.log10(got) - np.log10(exact)) <= h.width
    else:
        assert abs(got - exact) <= h.width


def test_tempo_stays_in_range_on_a_flat_autocorrelation():
    from fpcli.dsp.tempo import estimate_tempo
    from fpcli.params import AnalysisParams

    params = AnalysisParams()
    acf = np.zeros(80)
    acf[0] = 1.0
    acf[30:33] = [0.2, 0.2 + 1e-12, 0.2]  # a flat top: the parabola's vertex would fly off
    acf[61:64] = 0.1                      # the beat repeats (``tempo._repeats``)
    tempo = estimate_tempo(acf, 43.07, params)
    assert params.tempo_min_bpm <= tempo.bpm <= params.tempo_max_bpm
    assert abs(60 * 43.07 / tempo.bpm - 31) <= 0.5


def test_keep_buffers_on_heap_is_accepted_by_glibc():
    from fpcli.memory import keep_buffers_on_heap

    assert keep_buffers_on_heap() is True  # this project runs on glibc (Debian)
    assert keep_buffers_on_heap() is True  # and calling it again is harmless


@pytest.mark.parametrize("sr", [88200, 96000, 176400, 192000, 384000, 768000])
def test_hi_res_rates_analyse_and_find_the_pitch(sr, tmp_path):
    """Above about 66 kHz the pitch tracker's lag range is set by the frame (n_fft
    samples), not by f0_min_hz: files at 88.2-768 kHz (hi-res FLACs are common; the
    README promises up to 768 kHz) used to stop both analyzers with a shape error. A
    1.5 kHz tone (in range at every rate: the lowest f0 found is 376 Hz at 384 kHz,
    752 Hz at 768 kHz) is found at 1.5 kHz, and both analyzers give a fingerprint."""
    from fpcli import synth
    from fpcli.analyze import Want, analyse
    from fpcli.dsp.pitch import PitchTracker
    from fpcli.dsp.spectral import SpectralTools
    from fpcli.params import AnalysisParams
    from tests.conftest import write

    params = AnalysisParams()
    tools = SpectralTools.create(sr, params)
    tone = synth.sine(1500, 0.5, sr)[:, 0].astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(tone, params.n_fft)[:: params.hop]
    power, _ = tools.spectrum(np.ascontiguousarray(frames))
    f0 = PitchTracker(sr, tools.window, params).push(power, np.ones(len(power), dtype=bool))
    assert np.nanmedian(f0) == pytest.approx(1500, rel=0.01)
    path = write(tmp_path / "tone.wav", synth.sine(1500, 2.0, sr, channels=2), sr)
    result = analyse(str(path), Want(batch=True))
    assert result.status == "ok", result.error
    assert result.streaming.values["pitch_stability"] is not None and result.batch is not None
