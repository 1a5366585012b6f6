"""Streaming analyzer: chunk invariance, agreement with batch, partial results, memory."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpcli import synth
from fpcli.batch import BatchAnalyzer
from fpcli.fingerprint import STREAMING_DIMS
from fpcli.streaming import StreamingAnalyzer
from tests.conftest import run_batch, run_streaming

SR = 22050
# Streaming vs batch bounds (fpcli/streaming.py docstring; docs/fingerprint.md).
TOLERANCE = {
    "spectral_centroid_hz": ("rel", 0.01), "spectral_rolloff_hz": ("abs", SR / 2048 + 1e-9),
    "spectral_flatness": ("rel", 0.01), "loudness_range_lu": ("abs", 0.05), "loudness_std_lu": ("abs", 0.05),
}


def _close(name, a, b):
    if a is None or b is None:
        return a is None and b is None
    kind, bound = TOLERANCE.get(name, ("rel", 1e-6))
    if kind == "abs":
        return abs(a - b) <= bound
    return abs(a - b) <= bound * max(abs(b), 1e-12)


def _chunked(x, sizes):
    analyzer = StreamingAnalyzer(SR, x.shape[1])
    position = 0
    for size in sizes:
        analyzer.push(x[position : position + size])
        position += size
        if position >= len(x):
            break
    if position < len(x):
        analyzer.push(x[position:])
    return analyzer.finish()


MUSIC = synth.music_like(7.0, SR, bpm=124, seed=7)
# rhythm_stability of noise is a small difference of large autocorrelation sums of a
# float32 onset envelope, whose last bits depend on how many frames one matrix product
# holds (BLAS blocking): 1e-7 absolute is that noise floor (seed 44595, chunk 883 gave
# 1.41e-7 before and after the onset autocorrelation became np.correlate).
CHUNK_ABS = {"rhythm_stability": 1e-6}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=40000), min_size=1, max_size=30))
def test_any_chunking_gives_the_same_result(sizes):
    whole = _chunked(MUSIC, [len(MUSIC)])
    pieces = _chunked(MUSIC, sizes)
    for name in STREAMING_DIMS:
        a, b = whole.values[name], pieces.values[name]
        assert (a is None) == (b is None), name
        if a is not None:
            assert b == pytest.approx(a, rel=1e-5, abs=CHUNK_ABS.get(name, 1e-7)), name


# Chunks from 32 samples: a one-sample chunk pushed 44,100 times took 30 s of a suite
# run; tiny chunks have their own tests (37 samples below; single samples of the
# K-weighting in test_loudness).
@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=0, max_value=2**31), st.integers(min_value=32, max_value=9000))
def test_random_signals_are_chunk_invariant(seed, chunk):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((SR * 2, 2)) * rng.uniform(0.001, 0.5)).astype(np.float32)
    whole = run_streaming(x, SR, chunk=len(x))
    pieces = run_streaming(x, SR, chunk=chunk)
    for name in STREAMING_DIMS:
        a, b = whole.values[name], pieces.values[name]
        assert (a is None) == (b is None), name
        if a is not None:
            assert b == pytest.approx(a, rel=1e-5, abs=CHUNK_ABS.get(name, 1e-7)), name


def test_tiny_chunks_equal_one_chunk():
    x = MUSIC[: SR * 3]
    a = run_streaming(x, SR, chunk=len(x)).values
    b = run_streaming(x, SR, chunk=37).values
    for name in STREAMING_DIMS:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            assert b[name] == pytest.approx(a[name], rel=1e-5, abs=1e-7), name


@pytest.mark.parametrize("seed,bpm", [(0, 96), (1, 120), (2, 140)])
@pytest.mark.parametrize("sr", [22050, 44100])
def test_streaming_agrees_with_batch_within_bounds(seed, bpm, sr):
    global SR
    x = synth.music_like(15.0, sr, bpm=bpm, seed=seed)
    streaming, batch = run_streaming(x, sr), run_batch(x, sr)
    TOLERANCE["spectral_rolloff_hz"] = ("abs", sr / 2048 + 1e-9)
    for name in STREAMING_DIMS:
        assert _close(name, streaming.values[name], batch.values[name]), (name, streaming.values[name],
                                                                          batch.values[name])


@pytest.mark.parametrize("sr", [22050, 48000])
def test_short_clip_with_silent_intro_agrees_with_batch(sr):
    """Few short-term blocks: percentiles must still agree within one histogram bin."""
    x = np.concatenate([np.zeros((3 * sr, 2), np.float32), synth.music_like(7.0, sr, bpm=90, seed=3)])
    streaming, batch = run_streaming(x, sr), run_batch(x, sr)
    TOLERANCE["spectral_rolloff_hz"] = ("abs", sr / 2048 + 1e-9)
    for name in STREAMING_DIMS:
        assert _close(name, streaming.values[name], batch.values[name]), (name, streaming.values[name],
                                                                          batch.values[name])


@pytest.mark.parametrize("sr", [8000, 44100])
def test_a_dc_heavy_track_has_the_batch_centroid(sr):
    """A frame of DC has its centroid at a third of the first FFT bin, below 10 Hz
    (7.2 Hz at 44.1 kHz): the streaming histogram reaches down to 1 Hz, so the median
    is not clamped there (at 10 Hz it was 40 % above the batch value)."""
    x = np.full((5 * sr, 1), 0.5, np.float32)
    x[:, 0] += 1e-4 * synth.sine(30.0, 5.0, sr)[:, 0]
    streaming, batch = run_streaming(x, sr), run_batch(x, sr)
    assert batch.values["spectral_centroid_hz"] < 10.0
    assert _close("spectral_centroid_hz", streaming.values["spectral_centroid_hz"],
                  batch.values["spectral_centroid_hz"])


def test_partial_snapshot_and_confidence_growth():
    x = synth.music_like(30.0, SR, seed=4)
    analyzer = StreamingAnalyzer(SR, 2, expected_frames=len(x))
    confidences = []
    for i in range(0, len(x), SR * 5):
        analyzer.push(x[i : i + SR * 5])
        snapshot = analyzer.snapshot()
        assert not snapshot.complete
        assert snapshot.seconds == pytest.approx(min(i + SR * 5, len(x)) / SR)
        confidences.append(snapshot.confidence["spectral_centroid_hz"])
    assert all(b > a for a, b in zip(confidences, confidences[1:], strict=False))
    assert max(confidences) < 1.0
    final = analyzer.finish()
    assert final.complete and set(final.confidence.values()) == {1.0}


def test_confidence_without_known_length_stays_below_one():
    analyzer = StreamingAnalyzer(SR, 2)
    analyzer.push(MUSIC)
    assert 0 < max(analyzer.snapshot().confidence.values()) <= 0.9


def test_null_value_has_zero_confidence_until_the_end():
    analyzer = StreamingAnalyzer(SR, 2, expected_frames=SR * 10)
    analyzer.push(np.zeros((SR * 2, 2), np.float32))
    snapshot = analyzer.snapshot()
    assert snapshot.values["spectral_centroid_hz"] is None
    assert snapshot.confidence["spectral_centroid_hz"] == 0.0
    assert snapshot.values["silence_ratio"] == 1.0


def _state_bytes(obj, seen=None) -> int:
    """Bytes of every numpy array reachable from obj's attributes (containers included)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_state_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_state_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(_state_bytes(v, seen) for v in vars(obj).values())
    return 0


def test_streaming_state_does_not_grow_with_track_length():
    analyzer = StreamingAnalyzer(SR, 2)
    block = synth.music_like(10.0, SR, seed=9)
    analyzer.push(block)
    after_10s = _state_bytes(analyzer)
    for _ in range(12):
        analyzer.push(block)
    # Only carry buffers (less than one frame / one 100 ms segment) may differ in size.
    assert abs(_state_bytes(analyzer) - after_10s) < 16 * 1024


def test_batch_state_grows_only_with_frames_not_samples():
    from fpcli.batch import BatchAnalyzer

    analyzer = BatchAnalyzer(SR, 2)
    block = synth.music_like(10.0, SR, seed=9)
    analyzer.push(block)
    # Frame-level series (a few floats per 11.6 ms frame: hop 256 at 22.05 kHz), never
    # the decoded samples.
    assert _state_bytes(analyzer._series) < block.nbytes / 12


@pytest.mark.parametrize("kind", ["streaming", "batch"])
def test_analyzers_run_with_one_blas_thread_and_restore_the_caller_s(kind):
    from threadpoolctl import threadpool_info, threadpool_limits

    from fpcli.batch import BatchAnalyzer

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    analyzer = (StreamingAnalyzer if kind == "streaming" else BatchAnalyzer)(SR, 2)
    seen = []
    real_push, real_finish = analyzer.pipeline.push, analyzer.pipeline.finish

    def push(block):
        seen.append(blas_threads())
        return real_push(block)

    def finish():
        seen.append(blas_threads())
        return real_finish()

    analyzer.pipeline.push, analyzer.pipeline.finish = push, finish
    with threadpool_limits(limits=2):           # a caller whose BLAS has two threads
        analyzer.push(MUSIC[: SR])
        analyzer.finish()
        after = blas_threads()
    assert seen == [{1}, {1}]
    assert after == {2}


@pytest.mark.parametrize("analyzer", [StreamingAnalyzer, BatchAnalyzer])
def test_the_analyzer_classes_say_what_is_wrong_with_their_input(analyzer):
    """The public classes met bad input with numpy's errors from deep inside ("cannot
    reshape array of size 12", "'list' argument must have no negative elements" for a
    NaN) or took integer PCM as 30,000 times full scale."""
    from fpcli.errors import ParameterError

    with pytest.raises(ParameterError, match="rate from 8000"):
        analyzer(0, 2)
    with pytest.raises(ParameterError, match="channel count"):
        analyzer(SR, 0)
    stereo = analyzer(SR, 2)
    for block, message in [(np.zeros((10, 3), np.float32), r"shape \(10, 3\): expected \(frames, 2\)"),
                           (np.zeros(10, np.float32), r"shape \(10,\): expected \(frames, 2\)"),
                           (np.zeros((10, 2), np.int16), "floats scaled to .*int16 by 32768"),
                           # not told to divide by 32768: that is for integers
                           (np.zeros((10, 2), np.complex64), r"not complex64 \(audio samples are real numbers\)"),
                           (np.zeros((10, 2), bool), r"not bool \(audio samples are real"),
                           (np.full((10, 2), np.nan, np.float32), "not finite")]:
        with pytest.raises(ParameterError, match=message):
            stereo.push(block)
    mono = analyzer(SR, 1)
    mono.push(synth.sine(440, 1.0, SR)[:, 0])        # one channel may come as a 1-D array
    mono.push(synth.sine(440, 1.0, SR).astype(np.float64))
    assert mono.finish().values["spectral_centroid_hz"] == pytest.approx(440, rel=0.05)


@pytest.mark.parametrize("analyzer", [StreamingAnalyzer, BatchAnalyzer])
def test_an_empty_block_changes_nothing(analyzer):
    """The batch pipeline took the peak of an empty block ("zero-size array to
    reduction operation maximum")."""
    with_empty = analyzer(SR, 2)
    with_empty.push(np.zeros((0, 2), np.float32))
    with_empty.push(MUSIC[: 2 * SR])
    with_empty.push(np.zeros((0, 2), np.float32))
    straight = analyzer(SR, 2)
    straight.push(MUSIC[: 2 * SR])
    assert with_empty.finish() == straight.finish()


@pytest.mark.parametrize("analyzer", [StreamingAnalyzer, BatchAnalyzer])
def test_push_after_finish_is_refused(analyzer):
    """The batch analyzer took more audio after finish() (a later finish() differed
    from one straight pass); the streaming one raised a plain RuntimeError."""
    from fpcli.errors import FpcliError

    fingerprint = analyzer(SR, 2)
    fingerprint.push(MUSIC[:SR])
    first = fingerprint.finish()
    with pytest.raises(FpcliError, match="the analyzer was finished"):
        fingerprint.push(MUSIC[SR : 2 * SR])
    assert fingerprint.finish() == first


@pytest.mark.parametrize("analyzer", [StreamingAnalyzer, BatchAnalyzer])
def test_values_are_plain_python_floats(analyzer):
    """The batch band dims were np.float64: printed as np.float64(...), and refused by
    orjson."""
    fingerprint = analyzer(SR, 2)
    fingerprint.push(MUSIC[: 2 * SR])
    result = fingerprint.finish()
    assert {type(value) for value in result.values.values()} <= {float, type(None)}
    assert {type(value) for value in (result.confidence or {}).values()} <= {float}


def test_blocks_beyond_the_readers_float_limit_are_refused():
    """A block scaled by 1e17 passed the check (its sum was finite) and gave overflow
    warnings and false reasons; the limit is the file reader's."""
    from fpcli.audio import MAX_FLOAT_PEAK
    from fpcli.errors import ParameterError

    loud = MUSIC[:SR] / np.abs(MUSIC[:SR]).max()
    for analyzer in (StreamingAnalyzer(SR, 2), BatchAnalyzer(SR, 2)):
        with pytest.raises(ParameterError, match="not audio scaled"):
            analyzer.push(loud * np.float32(MAX_FLOAT_PEAK * 2))
        # Beyond float32 too: named as a scale, not as samples that are not finite
        # (the cast to float32 came first and made them inf).
        with pytest.raises(ParameterError, match="samples up to 1e\\+300, above the limit"):
            analyzer.push(np.full((10, 2), 1e300))
        analyzer.push(loud * np.float32(MAX_FLOAT_PEAK))


LOUD = synth.music_like(10.0, SR, seed=3)
LOUD = LOUD / np.abs(LOUD).max()


@pytest.mark.parametrize("peak", [10.0, 500.0, 5e4])
def test_loudness_above_the_meter_s_top_is_a_null_not_a_made_up_range(peak):
    """Peak 500 (about +42 LUFS) put every 3 s block in the histogram's top bin: a
    range of 0.0085 LU against the batch 1.5; at 5e4 the null blamed the gates."""
    streaming = run_streaming(LOUD * np.float32(peak), SR)
    batch = run_batch(LOUD * np.float32(peak), SR)
    assert batch.values["loudness_range_lu"] > 1.0
    if peak == 10.0:  # +22 LUFS: inside the meter's range
        assert _close("loudness_range_lu", streaming.values["loudness_range_lu"], batch.values["loudness_range_lu"])
    else:
        assert streaming.values["loudness_range_lu"] is None
        assert streaming.reasons["loudness_range_lu"] == "louder than +40 LUFS, the top of the meter's range"


@pytest.mark.parametrize("arguments,message", [
    ({"channels": True}, "channel count"),
    ({"samplerate": True}, "rate from 8000"),
    ({"expected_frames": float("nan")}, "expected_frames"),
    ({"expected_frames": -1}, "expected_frames"),
    ({"expected_frames": float("inf")}, "expected_frames"),
])
def test_bad_format_and_length_arguments_are_parameter_errors(arguments, message):
    """channels=True passed as one channel (a TypeError later); a NaN length made
    every confidence NaN."""
    from fpcli.errors import ParameterError

    with pytest.raises(ParameterError, match=message):
        StreamingAnalyzer(**{"samplerate": SR, "channels": 2, **arguments})
