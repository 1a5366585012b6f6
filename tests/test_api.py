"""The public library API (``fpcli/__init__.py``): parameter checks, what type checkers
and ``dir`` see of the package, and the BLAS limit the analyzers share between threads."""

import ast
import dataclasses
import json
import math
import os
import pydoc
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import fpcli
from fpcli import blas, synth
from fpcli.errors import ParameterError
from fpcli.params import (
    FIELD_RULES,
    MAX_HOP,
    MAX_N_FFT,
    MIN_N_FFT,
    AnalysisParams,
    checked_params,
    frame_scale,
)
from fpcli.streaming import StreamingAnalyzer

REPO = Path(__file__).resolve().parents[1]


# --- AnalysisParams: every field checked at construction ----------------------------

@pytest.mark.parametrize("field,value", [
    ("n_fft", math.nan), ("n_mel_bands", 0), ("f0_min_hz", 0), ("onset_max_s", 1e9), ("silence_db", 1e9),
    ("hpss_time_radius", -1), ("hpss_freq_radius", -1), ("tempo_prior_bpm", math.nan), ("tempo_prior_bpm", -1),
    ("tempo_prior_octaves", 0), ("onset_delta", math.nan), ("onset_mean_s", math.inf), ("yin_threshold", 0),
])
def test_a_value_that_failed_inside_the_analyzers_is_refused_naming_field_and_range(field, value):
    """Each gave a TypeError, ValueError, ZeroDivisionError, MemoryError (321 GiB) or
    OverflowError from deep inside the analyzers, or a wrong fingerprint without a word
    (a NaN or negative tempo prior: tempo 220; a NaN onset delta: no transients)."""
    with pytest.raises(ParameterError, match=rf"^{field}: .* in [\[(]") as caught:
        AnalysisParams(**{field: value})
    assert caught.value.parameter == field


@pytest.mark.parametrize("field", sorted(FIELD_RULES))
def test_every_field_refuses_bools_strings_non_numbers_and_values_out_of_range(field):
    rule = FIELD_RULES[field]
    bad: list[object] = [True, np.bool_(False), str(getattr(AnalysisParams(), field)), None, [1], math.nan,
                         math.inf, -math.inf, rule.low - 1, rule.high + 1]
    if rule.kind is int:
        bad.append(float(getattr(AnalysisParams(), field)))
    for value in bad:
        with pytest.raises(ParameterError) as caught:
            AnalysisParams(**{field: value})
        assert caught.value.parameter == field, value


def test_every_field_has_a_rule():
    assert set(FIELD_RULES) == {f.name for f in dataclasses.fields(AnalysisParams)}


@pytest.mark.parametrize("changes,field,message", [
    ({"n_fft": 3000}, "n_fft", "power of two"),
    ({"hop": 4096}, "hop", r"in \[1, 2048\] samples"),
    ({"hop": 64}, "hop", r"in \[128, 2048\]"),
    ({"n_fft": 8192, "hop": 256}, "hop", r"in \[512, 2048\] \(n_fft / 16 to n_fft, at most 2048; n_fft=8192\)"),
    ({"f0_min_hz": 1500.0}, "f0_min_hz", "at most half f0_max_hz=2100.0"),
    ({"chroma_min_hz": 3000.0}, "chroma_min_hz", "at most half chroma_max_hz=5000.0"),
    ({"tempo_min_bpm": 230.0, "tempo_prior_bpm": 230.0}, "tempo_min_bpm", "below tempo_max_bpm=220.0"),
    ({"tempo_prior_bpm": 300.0}, "tempo_prior_bpm", r"in \[tempo_min_bpm=40.0, tempo_max_bpm=220.0\]"),
])
def test_fields_that_depend_on_each_other_are_checked_together(changes, field, message):
    with pytest.raises(ParameterError, match=message) as caught:
        AnalysisParams(**changes)
    assert caught.value.parameter == field


@pytest.mark.parametrize("changes", [
    {}, {"n_mel_bands": 32},   # the defaults, and the store tests' "other parameters"
    {"n_fft": MIN_N_FFT, "hop": MIN_N_FFT // 16}, {"n_fft": MAX_N_FFT, "hop": MAX_HOP}, {"hop": 2048},
    {"silence_db": -200}, {"silence_db": 0}, {"rolloff_fraction": 0.999}, {"n_mel_bands": 13}, {"n_mel_bands": 128},
    {"hpss_time_radius": 1, "hpss_freq_radius": 32}, {"hpss_time_radius": 32, "hpss_freq_radius": 1},
    {"onset_max_s": 0.001, "onset_mean_s": 0.001}, {"onset_max_s": 0.5, "onset_mean_s": 2.0},
    {"onset_delta": 0}, {"onset_delta": 60}, {"yin_threshold": 1}, {"yin_threshold": 1e-6},
    {"f0_min_hz": 20, "f0_max_hz": 20000}, {"f0_min_hz": 250, "f0_max_hz": 500}, {"f0_min_hz": 2000, "f0_max_hz": 4000},
    {"chroma_min_hz": 20, "chroma_max_hz": 40}, {"chroma_min_hz": 10000, "chroma_max_hz": 20000},
    {"tempo_min_bpm": 20, "tempo_max_bpm": 500, "tempo_prior_bpm": 20},
    {"tempo_min_bpm": 20, "tempo_max_bpm": 500, "tempo_prior_bpm": 500},
    {"tempo_prior_octaves": 0.1}, {"tempo_prior_octaves": 10},
])
def test_the_values_fpcli_uses_and_the_range_ends_are_accepted(changes):
    AnalysisParams(**changes)


def test_numbers_are_stored_as_the_field_s_type():
    """-60 for -60.0 hashed into another cache key (and numpy scalars did not serialise)."""
    assert AnalysisParams(silence_db=-60, tempo_prior_bpm=120).key() == AnalysisParams().key()
    params = AnalysisParams(n_fft=np.int64(4096), hop=np.int32(1024), silence_db=np.float32(-50))
    assert type(params.n_fft) is int and type(params.silence_db) is float
    assert params.key().startswith("v")


@pytest.mark.parametrize("n_fft,hop", [(MIN_N_FFT, MIN_N_FFT // 16), (2048, 512), (MAX_N_FFT, MAX_HOP)])
def test_at_rate_scales_any_valid_frame_to_every_supported_rate(n_fft, hop):
    """The scaled copy holds more samples than the fields admit (16 x at 768 kHz): it
    keeps the duration, and is not refused."""
    params = AnalysisParams(n_fft=n_fft, hop=hop)
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000, 384000, 705600, 768000):
        scaled = params.at_rate(rate)
        assert scaled.n_fft == max(MIN_N_FFT, round(n_fft * frame_scale(rate)))
        if scaled.n_fft > MIN_N_FFT:   # the same duration, within a factor of sqrt(2)
            assert 0.7 < (scaled.n_fft / rate) / (n_fft / 44100) < 1.42
        assert 1 <= scaled.hop <= scaled.n_fft


@pytest.mark.parametrize("rate", [8000, 62000])
@pytest.mark.parametrize("changes", [
    # The shortest frames with the narrowest pitch ranges: the pitch search keeps two lags
    # (a range of one lag stopped the analyzer with numpy's "argmax of an empty sequence").
    {"n_fft": MIN_N_FFT, "hop": MIN_N_FFT // 16, "f0_min_hz": 250.0, "f0_max_hz": 500.0},
    {"n_fft": MIN_N_FFT, "hop": MIN_N_FFT, "f0_min_hz": 2000.0, "f0_max_hz": 4000.0, "n_mel_bands": 128,
     "hpss_freq_radius": 32, "chroma_min_hz": 10000.0, "chroma_max_hz": 20000.0},
    {"n_fft": MAX_N_FFT, "hop": MAX_HOP, "n_mel_bands": 13, "hpss_time_radius": 32, "onset_max_s": 0.5,
     "onset_mean_s": 2.0, "onset_delta": 60.0, "silence_db": 0.0, "tempo_min_bpm": 20.0, "tempo_max_bpm": 21.0,
     "tempo_prior_bpm": 20.0, "tempo_prior_octaves": 0.1, "yin_threshold": 1.0},
])
def test_the_analyzer_runs_at_the_ends_of_the_ranges(rate, changes):
    x = synth.music_like(1.0, rate).astype(np.float32)
    analyzer = StreamingAnalyzer(rate, 2, AnalysisParams(**changes))
    analyzer.push(x)
    assert analyzer.finish().complete


def test_params_must_be_analysis_params():
    """A dict where AnalysisParams belongs failed with "'dict' object has no attribute
    'at_rate'" (an empty one silently meant the defaults)."""
    assert checked_params(None) == AnalysisParams()
    params = AnalysisParams(n_mel_bands=32)
    assert checked_params(params) is params
    for wrong in ({}, {"n_fft": 4096}, "n_fft=4096"):
        with pytest.raises(ParameterError, match=r"^params: a \w+: must be an AnalysisParams") as caught:
            checked_params(wrong)
        assert caught.value.parameter == "params"


def test_every_entry_point_refuses_a_dict_for_params(tmp_path):
    """analyze_streaming(path, params={...}) raised AttributeError from inside; the
    analyzers took an empty dict for the defaults."""
    from fpcli.analyze import Want, analyze_batch, analyze_streaming, stream_checkpoints
    from fpcli.batch import BatchAnalyzer
    from fpcli.streaming import StreamingAnalyzer

    missing = str(tmp_path / "never-opened.flac")   # the params are checked before the file is opened
    calls = [lambda: analyze_streaming(missing, params={"n_fft": 4096}),
             lambda: analyze_batch(missing, params={}),
             lambda: stream_checkpoints(missing, [1.0], params={}),
             lambda: Want(params={}),
             lambda: StreamingAnalyzer(44100, 2, {}),
             lambda: BatchAnalyzer(44100, 2, {"n_fft": 4096})]
    for call in calls:
        with pytest.raises(ParameterError, match="must be an AnalysisParams"):
            call()


# --- What type checkers, dir() and help() see ---------------------------------------

def test_type_checkers_see_the_types_of_the_public_names(tmp_path):
    """The lazy __getattr__ made every public name Any to mypy: a str sample rate passed."""
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text("import fpcli\n\nfpcli.StreamingAnalyzer(samplerate='44100', channels=2)\n"
                      + "".join(f"reveal_type(fpcli.{name})\n" for name in fpcli.__all__)
                      + "fpcli.analyse_streaming('a.wav')\nfrom fpcli.store import FingerprintStor\n")
    # numpy's own stubs are most of mypy's time: skipped, the run takes ~4 s instead of 11.
    (tmp_path / "mypy.ini").write_text("[mypy]\nfollow_imports = silent\nignore_missing_imports = True\n"
                                       "[mypy-numpy.*]\nfollow_imports = skip\n")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental",
                          "--cache-dir", os.devnull, "--no-error-summary", "user.py"],
                         cwd=tmp_path, env={**os.environ, "MYPYPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60)
    lines = run.stdout.splitlines()
    assert any(line.startswith("user.py:3: error: Argument \"samplerate\"") for line in lines), run.stdout
    revealed = [line for line in lines if "Revealed type is" in line]
    assert len(revealed) == len(fpcli.__all__) and not [line for line in revealed if line.endswith('"Any"')], \
        run.stdout
    # A misspelt name is an error, not an Any (the module __getattr__ is hidden from them).
    misspelt = len(fpcli.__all__) + 4
    assert any(line.startswith(f"user.py:{misspelt}: error") and "analyse_streaming" in line for line in lines)
    assert any(line.startswith(f"user.py:{misspelt + 1}: error") and "FingerprintStor" in line for line in lines)


def test_the_type_checking_imports_are_the_public_names():
    tree = ast.parse((REPO / "fpcli" / "__init__.py").read_text())
    guarded = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imported = {alias.asname: node.module for block in guarded for node in block.body
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert imported == fpcli._PUBLIC


def test_an_installed_fpcli_is_type_checked():
    assert (REPO / "fpcli" / "py.typed").is_file()


def test_importing_fpcli_does_not_import_numpy():
    run = subprocess.run([sys.executable, "-c", "import sys, fpcli; print('numpy' in sys.modules)"],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert run.stdout.strip() == "False", run.stderr


def test_dir_and_help_list_the_public_names():
    assert set(fpcli.__all__) <= set(dir(fpcli))
    text = pydoc.render_doc(fpcli, renderer=pydoc.plaintext)
    assert "class StreamingAnalyzer" in text and "analyze_streaming(" in text


# --- One BLAS thread, counted for the process ---------------------------------------

class FakeController:
    """threadpoolctl's controller as the analyzers use it, with one process-wide pool."""

    def __init__(self, threads):
        self.threads = threads

    def limit(self, *, limits):
        return FakeLimiter(self, limits)


class FakeLimiter:
    def __init__(self, controller, limits):
        self.controller, self.original = controller, controller.threads
        controller.threads = limits

    def restore_original_limits(self):
        self.controller.threads = self.original

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore_original_limits()


def _overlap(inside):
    """Two threads in one_blas_thread: the first enters, then the second, the first
    leaves, then the second; ``inside()`` is recorded after each step."""
    seen = {}
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with blas.one_blas_thread():
            seen["first in"] = inside()
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with blas.one_blas_thread():
            second_in.set()
            first_out.wait(5)
            seen["first out"] = inside()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return seen


def test_two_overlapping_threads_restore_the_process_s_limit(monkeypatch):
    """Each thread restored what it found: the second found the first's limit, and left
    the process's BLAS at one thread for good."""
    controller = FakeController(threads=4)
    monkeypatch.setattr(blas, "_controllers", [controller])
    seen = _overlap(lambda: controller.threads)
    assert seen == {"first in": 1, "first out": 1}    # limited while either runs
    assert controller.threads == 4


def test_two_overlapping_threads_restore_the_real_blas_pools():
    from threadpoolctl import threadpool_info

    def pools():
        return [info["num_threads"] for info in threadpool_info()]

    blas._controller()   # the pools of the libraries loaded now
    before = pools()
    _overlap(pools)
    assert pools() == before


def test_a_failing_body_and_a_nested_one_restore_the_limit(monkeypatch):
    controller = FakeController(threads=3)
    monkeypatch.setattr(blas, "_controllers", [controller])
    with pytest.raises(RuntimeError), blas.one_blas_thread():
        with blas.one_blas_thread():
            assert controller.threads == 1
        assert controller.threads == 1
        raise RuntimeError
    assert controller.threads == 3


def test_a_nul_in_a_path_and_a_bad_block_size_are_fpcli_errors(tmp_path):
    """A path with a NUL byte gave "ValueError: embedded null byte"; block_frames=0 a
    plain ValueError and 1.5 a TypeError from inside libsndfile."""
    from fpcli import AudioReadError, analyze_streaming
    from tests.conftest import write

    with pytest.raises(AudioReadError, match="NUL byte"):
        analyze_streaming(str(tmp_path / "a\x00b.flac"))
    song = write(tmp_path / "a.wav", synth.sine(440, 0.5, 8000), 8000)
    for bad in (0, -1, 1.5, True, "4096"):
        with pytest.raises(ParameterError, match="block_frames"):
            analyze_streaming(song, block_frames=bad)


def test_a_fifo_or_a_device_is_named_as_such_not_empty(tmp_path):
    """`analyze_streaming` of a FIFO or /dev/null said "empty file (0 bytes)" (their
    size), where the command line says what they are."""
    from fpcli import AudioReadError, analyze_streaming

    fifo = tmp_path / "stream.wav"
    os.mkfifo(fifo)
    for path, kind in ((str(fifo), "is a FIFO, not an audio file"), (os.devnull, "is a device, not an audio file"),
                       (str(tmp_path), "is a directory, not an audio file")):
        with pytest.raises(AudioReadError, match=kind):
            analyze_streaming(path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioReadError, match="empty file"):
        analyze_streaming(str(tmp_path / "empty.wav"))


def test_a_path_that_is_no_path_and_a_block_beyond_memory_are_parameter_errors(tmp_path):
    """None or 5 as the path raised TypeError from os.fspath, block_frames=10**12 a
    MemoryError (3.6 TiB): the README promises an FpcliError for bad input."""
    import soundfile as sf

    song = str(tmp_path / "s.wav")
    sf.write(song, synth.music_like(1.0, 22050, seed=3), 22050)
    for call in (lambda: fpcli.analyze_streaming(None), lambda: fpcli.analyze_streaming(5),
                 lambda: fpcli.analyze_batch(None)):
        with pytest.raises(ParameterError, match="path"):
            call()
    with pytest.raises(ParameterError, match="block_frames"):
        fpcli.analyze_streaming(song, block_frames=10**12)


# --- errors cross process boundaries --------------------------------------------------

def _every_error() -> list[Exception]:
    from fpcli import errors

    made = [errors.AudioReadError("a.wav", "no such file"), errors.DamagedStoreError("damaged", "/s"),
            errors.BadEntryError("rec:x", ["not JSON", "no digest"]), errors.ParameterError("must be > 0", "k"),
            errors.StoreError("locked", repairable=True)]
    simple = [kind("a message") for kind in vars(errors).values() if isinstance(kind, type)
              and issubclass(kind, errors.FpcliError) and kind not in {type(e) for e in made}]
    return made + simple


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_every_error_survives_pickling(error):
    """AudioReadError, DamagedStoreError and BadEntryError could not be unpickled
    (__init__ was called with the message alone): a worker process's error broke the
    pool that carried it."""
    import pickle

    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and copy.__dict__ == error.__dict__


def test_a_bad_file_in_a_process_pool_is_its_own_error(tmp_path):
    """One unreadable file among good ones in a ProcessPoolExecutor: BrokenProcessPool
    for every future, the good ones too."""
    from concurrent.futures import ProcessPoolExecutor

    good = tmp_path / "good.wav"
    sf.write(good, synth.music_like(2.0, 22050, seed=1), 22050)
    with ProcessPoolExecutor(1) as pool:
        futures = [pool.submit(fpcli.analyze_streaming, str(path)) for path in (tmp_path / "missing.wav", good)]
        with pytest.raises(fpcli.AudioReadError, match="missing.wav") as raised:
            futures[0].result(timeout=120)
        fingerprint, _ = futures[1].result(timeout=120)
    assert raised.value.path.endswith("missing.wav") and fingerprint.seconds == pytest.approx(2.0)


# --- numbers, paths and passes as a library user hands them in -------------------------

def test_numpy_integers_for_rate_and_channels_give_plain_python_numbers(tmp_path):
    """StreamingAnalyzer(np.int64(22050), 2): the seconds heard were a numpy float
    (orjson refused the fingerprint's dict) and LiveFingerprint.save failed with a raw
    TypeError from the record's JSON."""
    from fpcli.live import LiveFingerprint
    from fpcli.store import FingerprintStore

    block = synth.music_like(2.0, 22050, seed=1)
    analyzer = StreamingAnalyzer(np.int64(22050), np.int32(2))
    analyzer.push(block)
    fingerprint = analyzer.finish()
    assert type(fingerprint.seconds) is float and type(fingerprint.chunks) is int
    text = json.dumps(fingerprint.to_dict(), allow_nan=False)
    assert fpcli.Fingerprint.from_dict(json.loads(text)) == fingerprint
    live = LiveFingerprint(np.int64(22050), np.int64(2))
    live.push(block)
    with FingerprintStore.open(tmp_path / "s") as store:
        record = live.save(store, "radio")
        assert record.audio.samplerate == 22050 and type(record.audio.samplerate) is int


@pytest.mark.parametrize("change,says", [
    (lambda d: None, "a dict"), (lambda d: {**d, "extra": 1}, "unknown field"),
    (lambda d: {k: v for k, v in d.items() if k != "values"}, "missing field"),
    (lambda d: {**d, "values": [1, 2]}, "finite number"), (lambda d: {**d, "values": {"tempo_bpm": "fast"}}, "finite"),
    (lambda d: {**d, "values": {"tempo_bpm": math.nan}}, "finite number"),
    (lambda d: {**d, "timbre": {"mean": [1.0], "cov": [[1.0]], "frames": 3}}, "13 x 13"),
    (lambda d: {**d, "timbre": {**d["timbre"], "mean": [math.nan] * 13}}, "finite mean"),
    (lambda d: {**d, "timbre": {"mean": [1.0] * 13}}, "timbre.frames must be"),
    (lambda d: {**d, "timbre": {"mean": [1.0] * 13, "frames": 3}}, "not a fingerprint"),
    # Each was taken as it came, and NaN or infinity came back out of to_dict().
    (lambda d: {**d, "seconds": math.nan}, "seconds must"), (lambda d: {**d, "seconds": -5}, "seconds must"),
    (lambda d: {**d, "seconds": "5"}, "seconds must"),
    (lambda d: {**d, "confidence": {**d["confidence"], "tempo_bpm": math.inf}}, "confidence must"),
    (lambda d: {**d, "confidence": {**d["confidence"], "tempo_bpm": 5.0}}, "confidence must"),
    (lambda d: {**d, "complete": "no"}, "complete must"), (lambda d: {**d, "kind": "foo"}, "kind must"),
    (lambda d: {**d, "chunks": True}, "chunks must"),
    (lambda d: {**d, "dupe_key": {**d["dupe_key"], "bits": "zz" * (2 * d["dupe_key"]["windows"])}}, "dupe_key must"),
    (lambda d: {**d, "values": {k: None for k in d["values"] if k != "tempo_bpm"}}, "each streaming dimension"),
    # What json.loads gives for a number of 400 digits: a raw OverflowError.
    (lambda d: {**d, "values": {**d["values"], "tempo_bpm": 10 ** 400}}, "finite number"),
    # Each was taken, and the store then refused the record as a bad entry.
    (lambda d: {**d, "values": {**d["values"], "silence_ratio": 5.0}}, r"silence_ratio is 5.0, outside its domain"),
    (lambda d: {**d, "values": {**d["values"], "tempo_bpm": -5.0}}, r"tempo_bpm is -5.0, outside"),
    (lambda d: {**d, "values": {**d["values"], "tempo_bpm": 1e300}}, r"tempo_bpm is 1e\+300, outside its domain "
                                                                      r"\[0, 1e\+09\]"),
    (lambda d: {**d, "timbre": {**d["timbre"], "weights": [1]}}, "unknown timbre field"),
    (lambda d: {**d, "reasons": {"no_such_dim": "x"}}, "reasons must map streaming dimensions"),
    (lambda d: {**d, "version": 999}, "version must be an integer from 0 to"),
    (lambda d: {**d, "timbre": {**d["timbre"], "frames": -5}}, "timbre.frames must be an integer >= 1"),
    (lambda d: {**d, "timbre": {**d["timbre"], "frames": 2.9}}, "timbre.frames must be"),
    (lambda d: {**d, "timbre": {**d["timbre"], "frames": True}}, "timbre.frames must be"),
    (lambda d: {**d, "timbre": "oops"}, "timbre must be a dict"),   # was "timbre.frames must be an integer"
    (lambda d: {**d, "values": {**d["values"], "tempo_bpm": "120"}}, "values.tempo_bpm must be a finite number"),
    (lambda d: {**d, "timbre": {**d["timbre"], "cov": [[5e3 if (i, j) == (0, 1) else v for j, v in enumerate(row)]
                                                      for i, row in enumerate(d["timbre"]["cov"])]}},
     "symmetric and positive semi-definite"),
])
def test_fingerprint_from_dict_says_what_is_wrong(change, says):
    """from_dict took anything: a missing or extra key was a raw TypeError, a list of
    values an AttributeError, and a NaN value came back out of to_dict()."""
    analyzer = StreamingAnalyzer(22050, 2)
    analyzer.push(synth.music_like(2.0, 22050, seed=2))
    data = analyzer.finish().to_dict()
    with pytest.raises(ParameterError, match=says):
        fpcli.Fingerprint.from_dict(change(data))


def test_fingerprint_from_dict_takes_numpy_floats_of_any_width():
    """np.float64 values passed (a float subclass) and np.float32 ones were refused as
    "values must map each streaming dimension to a finite number or None"."""
    analyzer = StreamingAnalyzer(22050, 1)
    analyzer.push(synth.music_like(3.0, 22050, seed=3)[:, 0])
    fingerprint = analyzer.finish()
    data = fingerprint.to_dict()
    data["values"] = {name: None if v is None else np.float32(v) for name, v in data["values"].items()}
    data["seconds"] = np.float32(data["seconds"])
    again = fpcli.Fingerprint.from_dict(data)
    assert all(type(v) is float for v in again.values.values() if v is not None)
    assert again.values == {name: None if v is None else float(np.float32(v))
                            for name, v in fingerprint.values.items()}


def test_integers_beyond_any_float_are_parameter_errors_or_no_limit(tmp_path):
    """10**400 (an integer Python holds exactly) raised a raw OverflowError from float()."""
    from fpcli.live import LiveFingerprint

    huge = 10 ** 400
    for call, field in ((lambda: fpcli.AnalysisParams(n_fft=huge), "n_fft"),
                        (lambda: fpcli.AnalysisParams(silence_db=-huge), "silence_db"),
                        (lambda: StreamingAnalyzer(44100, 1, expected_frames=huge), "expected_frames")):
        with pytest.raises(ParameterError) as raised:
            call()
        assert raised.value.parameter == field
    path = tmp_path / "a.wav"
    sf.write(path, synth.sine(440, 1.0, 22050), 22050)
    whole, _ = fpcli.analyze_streaming(path, max_seconds=huge)   # past any end: the whole track, as 1e308 s
    assert whole.complete and whole.seconds == pytest.approx(1.0)
    live = LiveFingerprint(22050, 1, expected_seconds=huge)   # as math.inf: a length no stream reaches
    live.push(synth.sine(440, 1.0, 22050))
    assert live.finish().complete


def test_a_reader_read_twice_reads_the_file_again(tmp_path):
    """Iterating an AudioReader a second time counted its frames on top of the first
    pass: an intact 2 s file was partial ('header says 2.00 s, decoded 4.00 s')."""
    path = tmp_path / "a.wav"
    sf.write(path, synth.music_like(2.0, 22050, seed=3), 22050)
    _, reader = fpcli.analyze_streaming(str(path))
    assert sum(len(block) for block in reader) == 44100
    assert (reader.frames_read, reader.partial, reader.partial_reason) == (44100, False, None)


def test_a_path_given_as_bytes_is_reported_as_text(tmp_path):
    missing = os.fsencode(tmp_path) + b"/nope\xff.wav"
    with pytest.raises(fpcli.AudioReadError) as raised:
        fpcli.analyze_streaming(missing)
    assert raised.value.path == os.fsdecode(missing) and "b'" not in str(raised.value)


def test_a_fingerprint_is_unhashable_by_its_own_name():
    analyzer = StreamingAnalyzer(22050, 2)
    analyzer.push(synth.music_like(1.0, 22050, seed=1))
    with pytest.raises(TypeError, match="unhashable type: 'Fingerprint'"):
        hash(analyzer.finish())


def test_equal_params_have_one_key_whichever_is_keyed_first():
    """-0.0 is allowed (a range from 0) and equal to 0.0, but json writes it apart: the
    cached key of both was that of whichever was keyed first in the process."""
    from fpcli.params import _params_key

    keys = []
    for first, second in ((0.0, -0.0), (-0.0, 0.0)):
        _params_key.cache_clear()
        keys.append([AnalysisParams(onset_delta=value, silence_db=value).key() for value in (first, second)])
    assert keys[0][0] == keys[0][1] == keys[1][0] == keys[1][1]
    assert math.copysign(1.0, AnalysisParams(onset_delta=-0.0).onset_delta) == 1.0


@pytest.mark.parametrize("rate", [0, -44100, "x", math.nan, 1, 10**9, True])
def test_at_rate_refuses_a_rate_the_analyzers_refuse(rate):
    """A math domain error, a TypeError, or frames of 33 million samples at 1 GHz."""
    with pytest.raises(ParameterError, match="samplerate: .*an integer rate from 8000 to 768000 Hz"):
        AnalysisParams().at_rate(rate)


def test_a_missing_key_clarity_names_the_chroma_range_in_use():
    """The reason named the default 55 Hz-5 kHz whatever the range, and not that the
    range lay above the file's Nyquist frequency."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 8000)).astype(np.float32)
    analyzer = StreamingAnalyzer(8000, 1, AnalysisParams(chroma_min_hz=5000.0, chroma_max_hz=10000.0))
    analyzer.push(tone)
    fingerprint = analyzer.finish()
    assert fingerprint.values["key_clarity"] is None
    assert fingerprint.reasons["key_clarity"] == ("the chroma range starts at 5000 Hz, at or above this rate's "
                                                  "Nyquist frequency (4000 Hz)")


@pytest.mark.parametrize("kind", ["streaming", "batch"])
def test_a_push_while_another_thread_pushes_is_refused(kind):
    """Two threads pushing into one analyzer interleaved its updates: loudness range
    0.13 LU for 0.0085 LU of the same audio pushed from one thread, without a word."""
    from fpcli.batch import BatchAnalyzer

    analyzer = (StreamingAnalyzer if kind == "streaming" else BatchAnalyzer)(44100, 1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:   # a push in progress in another thread, as long as the test needs
        with analyzer.pipeline.alone():
            holding.set()
            release.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    try:
        holding.wait(10)
        with pytest.raises(ParameterError, match="running in another thread"):
            analyzer.push(np.zeros(4096, np.float32))
        with pytest.raises(ParameterError, match="running in another thread"):
            analyzer.finish()
    finally:
        release.set()
        other.join()
    analyzer.push(np.zeros(4096, np.float32))   # the other thread done: pushes go on
    assert analyzer.finish() is not None


def test_a_ragged_block_and_a_nul_in_a_store_path_are_fpcli_errors():
    """numpy's "inhomogeneous shape" ValueError and os.makedirs' "embedded null byte"
    reached the caller from deep inside them."""
    from fpcli.errors import StoreError
    from fpcli.live import LiveFingerprint
    from fpcli.store import FingerprintStore

    for analyzer in (StreamingAnalyzer(44100, 2), LiveFingerprint(44100, 2)):
        with pytest.raises(ParameterError, match="rows differ in length"):
            analyzer.push([[0.1, 0.2], [0.3]])
    with pytest.raises(StoreError, match="NUL"):
        FingerprintStore.open("/tmp/a\0b")
    for peak in (1_000_001.0, 1_000_000.0625):   # was "up to 1e+06", read as the limit itself
        with pytest.raises(ParameterError, match=rf"samples up to {peak!r}, above the limit of 1000000.0"):
            StreamingAnalyzer(44100, 1).push(np.array([peak], np.float32))


def test_the_same_audio_in_any_number_of_identical_channels_is_the_same_fingerprint():
    """The channels' running sum in float32 was noise in a tone's near-empty bins: mono
    music copied into 64 channels had a spectral flatness of 3.1e-05 for its 1.7e-05."""
    music = synth.music_like(3.0, 22050, seed=1)[:, 0]
    values = []
    for channels in (1, 3, 8, 64):
        analyzer = StreamingAnalyzer(22050, channels)
        analyzer.push(np.repeat(music[:, None], channels, axis=1))
        values.append(analyzer.finish().values)
    for name in ("spectral_flatness", "spectral_centroid_hz", "tempo_bpm", "harmonic_ratio", "key_clarity"):
        assert {v[name] for v in values} == {values[0][name]}, name


def test_a_tiny_block_size_is_read_in_blocks_large_enough_to_analyse(tmp_path):
    """block_frames=1 was taken as asked: every analyzer ran once per frame, and 1 s of
    audio took 8.3 s (a 20 s file did not finish in 100 s). The fingerprint does not
    depend on the block size, so a file-level analysis reads at least
    MIN_ANALYSIS_BLOCK_FRAMES at a time."""
    from fpcli.analyze import MIN_ANALYSIS_BLOCK_FRAMES

    song = tmp_path / "one.wav"
    sf.write(song, synth.music_like(1.0, 22050, seed=4), 22050)
    tiny, reader = fpcli.analyze_streaming(song, block_frames=1)
    usual, _ = fpcli.analyze_streaming(song)
    assert tiny.chunks == math.ceil(reader.frames_read / MIN_ANALYSIS_BLOCK_FRAMES)
    for name, value in usual.values.items():   # float sums in other blocks: equal to about 1e-8
        assert tiny.values[name] == (None if value is None else pytest.approx(value, rel=1e-6, abs=1e-9)), name
    batch, _ = fpcli.analyze_batch(song, block_frames=1)
    assert batch.chunks == tiny.chunks
