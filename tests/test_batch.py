"""Known answers of the 25D batch analyzer on generated signals (FINGERPRINT.md)."""

import numpy as np
import pytest

from fpcli import synth
from fpcli.fingerprint import BANDS_HZ, BATCH_DIMS
from tests.conftest import run_batch, run_streaming

SR = 44100


@pytest.mark.parametrize("freq", [200.0, 440.0, 1000.0, 3000.0, 8000.0])
def test_sine_centroid_and_band(freq):
    fp = run_batch(synth.sine(freq, 3.0, SR), SR)
    assert fp.values["spectral_centroid_hz"] == pytest.approx(freq, rel=0.02)
    bands = [fp.values[name] for name, _, _ in BANDS_HZ]
    assert sum(bands) == pytest.approx(1.0, abs=1e-9)
    home = next(name for name, low, high in BANDS_HZ if low <= freq < high)
    assert fp.values[home] > 0.99


@pytest.mark.parametrize("bpm", [60, 90, 120, 150, 180])
@pytest.mark.parametrize("sr", [44100, 48000])
def test_click_track_tempo_and_density(bpm, sr):
    fp = run_batch(synth.click_track(bpm, 30.0, sr), sr)
    assert fp.values["tempo_bpm"] == pytest.approx(bpm, rel=0.015)
    assert fp.values["transient_density"] == pytest.approx(bpm / 60, rel=0.05)
    assert fp.values["rhythm_stability"] > 0.7


def test_identical_channels_have_zero_width_and_full_correlation():
    fp = run_batch(synth.music_like(6.0, SR, stereo=False).repeat(2, axis=1), SR)
    assert fp.values["stereo_width"] == pytest.approx(0.0, abs=1e-9)
    assert fp.values["phase_correlation"] == pytest.approx(1.0, abs=1e-9)


def test_opposite_channels_have_correlation_minus_one():
    x = synth.music_like(6.0, SR, stereo=False)
    fp = run_batch(np.concatenate([x, -x], axis=1), SR)
    assert fp.values["phase_correlation"] == pytest.approx(-1.0, abs=1e-9)
    assert fp.values["stereo_width"] == pytest.approx(1.0, abs=1e-9)


def test_mono_file_is_narrow_and_correlated():
    fp = run_batch(synth.sine(440, 2.0, SR), SR)
    assert fp.values["stereo_width"] == 0.0
    assert fp.values["phase_correlation"] == 1.0


def test_white_noise_centroid_and_flatness(rng):
    x = (0.1 * rng.standard_normal((SR * 5, 1))).astype(np.float32)
    fp = run_batch(x, SR)
    # A flat spectrum's centre of mass: half of the band measured, DC to 20 kHz.
    assert fp.values["spectral_centroid_hz"] == pytest.approx(20000 / 2, rel=0.02)
    # Rayleigh magnitudes: E[geo]/E[arith] = 2/sqrt(pi) * exp(-gamma/2) = 0.8455.
    assert fp.values["spectral_flatness"] == pytest.approx(0.8455, abs=0.02)
    assert fp.values["pitch_stability"] is None  # noise has no pitch


def test_silence_gives_nulls_with_reasons_and_full_silence_ratio():
    fp = run_batch(np.zeros((SR * 4, 2), np.float32), SR)
    assert fp.values["silence_ratio"] == 1.0
    for name in ("spectral_centroid_hz", "lufs", "tempo_bpm", "key_clarity", "band_bass", "crest_db",
                 "stereo_width", "loudness_range_lu"):
        assert fp.values[name] is None
        assert fp.reasons[name]


def test_silent_intro_counts_in_silence_ratio():
    x = np.concatenate([np.zeros((SR * 2, 1), np.float32), synth.sine(440, 6.0, SR)])
    fp = run_batch(x, SR)
    assert fp.values["silence_ratio"] == pytest.approx(0.25, abs=0.01)
    assert fp.values["spectral_centroid_hz"] == pytest.approx(440, rel=0.02)  # medians skip silence


def test_shorter_than_one_frame():
    fp = run_batch(synth.sine(440, 0.02, SR), SR)
    assert fp.values["spectral_centroid_hz"] is None
    assert "shorter than one analysis frame" in fp.reasons["spectral_centroid_hz"]
    # the bands said "no spectral energy between 20 Hz and 20 kHz" of a loud sine
    for name in [name for name, _, _ in BANDS_HZ] + ["bass_mid_ratio_db"]:
        assert fp.values[name] is None and fp.reasons[name] == "track is shorter than one analysis frame"


def test_sine_crest_factor_and_pitch():
    fp = run_batch(synth.sine(220, 4.0, SR, dbfs=-6), SR)
    assert fp.values["crest_db"] == pytest.approx(3.01, abs=0.02)
    assert fp.values["pitch_stability"] == pytest.approx(1.0)
    assert fp.values["peak_consistency"] == pytest.approx(1.0, abs=1e-3)


def test_low_rate_bands_above_nyquist_are_zero():
    fp = run_batch(synth.music_like(5.0, 11025), 11025)  # Nyquist 5512.5 Hz
    assert fp.values["band_air"] == 0.0
    assert fp.values["band_presence"] > 0.0


def test_values_are_in_documented_ranges(rng):
    from fpcli.fingerprint import DIM_BY_NAME

    fp = run_batch(synth.music_like(12.0, SR, seed=5), SR)
    assert list(fp.values) == list(BATCH_DIMS)
    for name, value in fp.values.items():
        dim = DIM_BY_NAME[name]
        assert value is not None, name
        assert dim.low <= value <= dim.high, (name, value)


def test_key_clarity_higher_for_a_chord_than_for_noise(rng):
    chord = sum(synth.sine(440 * 2 ** (k / 12), 4.0, SR, dbfs=-12) for k in (-9, -5, -2))  # C major
    noise = (0.1 * rng.standard_normal((SR * 4, 1))).astype(np.float32)
    assert run_batch(chord, SR).values["key_clarity"] > run_batch(noise, SR).values["key_clarity"] + 0.3


def test_a_silent_channel_is_the_reason_for_no_phase_correlation():
    """It said "the signal is digital silence" of a track at -26 LUFS with a tempo."""
    from fpcli.batch import BatchAnalyzer

    left = synth.music_like(4.0, 22050, seed=2, stereo=False).reshape(-1, 1)
    analyzer = BatchAnalyzer(22050, 2)
    analyzer.push(np.concatenate([left, np.zeros_like(left)], axis=1).astype(np.float32))
    fingerprint = analyzer.finish()
    assert fingerprint.values["phase_correlation"] is None and fingerprint.values["lufs"] is not None
    assert fingerprint.reasons["phase_correlation"].startswith("one channel is digital silence")


@pytest.mark.parametrize("analyzer_class", ["StreamingAnalyzer", "BatchAnalyzer"])
def test_channels_that_cancel_in_the_mix_are_named_as_the_reason(analyzer_class):
    """L = -R: the mono mix is silent though the track is at -23 LUFS; the reason said
    "every frame is silent"."""
    import fpcli.batch
    import fpcli.streaming

    analyzer = {"StreamingAnalyzer": fpcli.streaming.StreamingAnalyzer,
                "BatchAnalyzer": fpcli.batch.BatchAnalyzer}[analyzer_class](22050, 2)
    left = synth.music_like(4.0, 22050, seed=2, stereo=False).reshape(-1, 1)
    analyzer.push(np.concatenate([left, -left], axis=1).astype(np.float32))
    fingerprint = analyzer.finish()
    assert fingerprint.values["spectral_centroid_hz"] is None
    assert "they cancel out" in fingerprint.reasons["spectral_centroid_hz"]
    assert "they cancel out" in fingerprint.reasons["harmonic_ratio"]


@pytest.mark.parametrize("analyze", ["batch", "streaming"])
def test_a_steady_bass_note_is_harmonic(analyze, rng):
    """The frequency median repeated the lowest mel band at the edge, so it was its own
    median: a steady 41-82 Hz sine read 0.500, as white noise does, and every bass-heavy
    track was pulled towards 0.5 (version 3). Mirrored at the edge, as librosa's HPSS."""
    from tests.conftest import run_streaming

    run = run_batch if analyze == "batch" else run_streaming
    for freq in (41.2, 55.0, 82.4):
        assert run(synth.sine(freq, 4.0, SR), SR).values["harmonic_ratio"] > 0.95, freq
    bass_and_tone = synth.sine(55.0, 4.0, SR) + synth.sine(440.0, 4.0, SR)
    assert run(bass_and_tone, SR).values["harmonic_ratio"] > 0.95
    noise = (0.1 * rng.standard_normal((4 * SR, 1))).astype(np.float32)
    assert run(noise, SR).values["harmonic_ratio"] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("analyze", ["batch", "streaming"])
def test_a_track_shorter_than_the_harmonic_split_has_no_harmonic_ratio(analyze):
    """A 50 ms sine (a one-shot sample) read harmonic_ratio 0.0: the split's median over
    9 frames was mostly the zeros padded at the ends."""
    from tests.conftest import run_streaming

    run = run_batch if analyze == "batch" else run_streaming
    short = run(synth.sine(440.0, 0.05, SR), SR)
    assert short.values["harmonic_ratio"] is None
    assert "shorter than the 9 frames" in short.reasons["harmonic_ratio"]
    assert run(synth.sine(440.0, 0.15, SR), SR).values["harmonic_ratio"] > 0.95


def _extreme_signals(sr: int) -> dict[str, np.ndarray]:
    """(n, 2) float32 signals at the edges of what the analyzers measure."""
    rng = np.random.default_rng(3)
    n = 6 * sr
    mono = {
        "constant": np.full(n, 0.5),
        "full-scale square": np.sign(np.sin(2 * np.pi * 100 * np.arange(n) / sr)),
        "white noise": rng.uniform(-1, 1, n),
        "one click": np.pad([1.0], (n // 2, n - n // 2 - 1)),
        "sine": synth.sine(440.0, 6.0, sr)[:, 0],
        "clicks": synth.click_track(180.0, 6.0, sr)[:, 0],
    }
    signals = {name: np.stack([x, x], axis=1) for name, x in mono.items()}
    signals["opposite channels"] = np.stack([mono["white noise"], -mono["white noise"]], axis=1)
    signals["music"] = synth.music_like(6.0, sr, seed=2)
    return {name: x.astype(np.float32) for name, x in signals.items()}


@pytest.mark.parametrize("analyzer", [run_batch, run_streaming])
def test_every_value_lies_in_its_dims_domain(analyzer):
    """The store refuses a value outside its dim's domain (fingerprint.DOMAINS), so no
    analysis may give one, on any signal: here the edges (DC, a full-scale square,
    a lone click, channels in opposite phase)."""
    from fpcli.fingerprint import DOMAINS
    from fpcli.store.limits import value_bounds

    for name, x in _extreme_signals(SR).items():
        fp = analyzer(x, SR)
        for dim, value in fp.values.items():
            low, high = DOMAINS.get(dim, value_bounds(dim))   # exactly inside: clipped, not within slack
            assert value is None or low <= value <= high, (name, dim, value)


def test_a_width_and_a_correlation_at_their_bounds_stay_inside_them(tmp_path):
    """A 16-bit file of a gated tone with one channel inverted had a stereo width of
    1 + 5.5e-9, and dual mono apart by dither one of -5.5e-9 (float32 sums, blocks of
    131,072 frames): the store refused both records, and every run analysed the files
    again."""
    import soundfile as sf

    from fpcli import analyze_batch

    rng = np.random.default_rng(1)
    t = np.arange(20 * SR) / SR
    m = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2
         + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    sf.write(tmp_path / "opposite.wav", np.stack([m, -m], 1), SR, "PCM_16")
    sf.write(tmp_path / "near.wav", np.stack([m + 3e-5 * rng.standard_normal(t.size).astype(np.float32), m], 1),
             SR, "PCM_16")
    for name in ("opposite.wav", "near.wav"):
        fp, _ = analyze_batch(str(tmp_path / name))
        assert 0.0 <= fp.values["stereo_width"] <= 1.0 and -1.0 <= fp.values["phase_correlation"] <= 1.0, name


def _batch_in_blocks(x: np.ndarray, sr: int, size: int) -> dict:
    from fpcli.batch import BatchAnalyzer

    analyzer = BatchAnalyzer(sr, x.shape[1])
    for start in range(0, len(x), size):
        analyzer.push(x[start:start + size])
    return analyzer.finish().values


def test_three_channels_in_one_frame_blocks_give_the_same_values():
    """The mixdown was a matrix product, which took another BLAS path for a block of
    one frame: 1 ulp apart at 3 channels, spectral_flatness 0.0156062 against
    0.0156061 for the whole block."""
    sr = 8000
    mono = synth.music_like(2.0, sr, seed=4, stereo=False).astype(np.float32).reshape(-1)
    x = np.stack([mono, 0.7 * mono[::-1], 0.5 * mono], axis=1).astype(np.float32)
    whole = _batch_in_blocks(x, sr, len(x))
    numbers = {name: value for name, value in whole.items() if value is not None}
    for size in (1, 3):
        values = _batch_in_blocks(x, sr, size)
        assert {name for name, value in values.items() if value is None} == whole.keys() - numbers.keys()
        # float32 products over another number of frames a call round apart by an ulp
        # (the centroid 1.2e-7), float64 sums of per-block figures by 1e-8: no more.
        assert {name: values[name] for name in numbers} == pytest.approx(numbers, rel=1e-6)


def test_a_dc_offset_leaves_phase_correlation_exact_in_any_blocks():
    """np.dot of float32 sums in float32: with a DC offset the variance cancels most
    digits, and the correlation read 0.99995003 or 0.99994993 by block size."""
    sr = 8000
    t = np.arange(sr * 4) / sr
    x = np.stack([0.3 + 0.2 * np.sin(2 * np.pi * 220 * t), 0.3 + 0.2 * np.sin(2 * np.pi * 220 * t + 0.01)],
                 axis=1).astype(np.float32)
    exact = np.corrcoef(x[:, 0].astype(np.float64), x[:, 1].astype(np.float64))[0, 1]
    for size in (len(x), 1000, 4096, 65536):
        assert _batch_in_blocks(x, sr, size)["phase_correlation"] == pytest.approx(exact, abs=1e-12)
