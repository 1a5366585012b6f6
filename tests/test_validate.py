"""The validator: comparison by name, error kinds, thresholds, nulls, library runs."""

import json

import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import EXIT_BELOW_THRESHOLD, EXIT_SOME_FAILED, app
from fpcli.errors import ParameterError
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS
from fpcli.library import RunOptions
from fpcli.store import FingerprintStore
from fpcli.validate import (
    DEFAULT_TOLERANCES,
    compare,
    confidence_buckets,
    cosine_similarity,
    parse_tolerances,
    tempo_relation,
    validate_library,
)
from tests.conftest import run_batch, run_streaming, write

BATCH = {
    "band_sub_bass": 0.05, "band_bass": 0.3, "band_low_mid": 0.2, "band_mid": 0.25, "band_upper_mid": 0.1,
    "band_presence": 0.05, "band_air": 0.05, "lufs": -14.0, "crest_db": 12.0, "bass_mid_ratio_db": 1.0,
    "tempo_bpm": 120.0, "rhythm_stability": 0.6, "transient_density": 3.0, "silence_ratio": 0.01,
    "spectral_centroid_hz": 2000.0, "spectral_rolloff_hz": 3000.0, "spectral_flatness": 0.05,
    "harmonic_ratio": 0.6, "pitch_stability": 0.8, "key_clarity": 0.7, "loudness_range_lu": 6.0,
    "loudness_std_lu": 2.0, "peak_consistency": 0.8, "stereo_width": 0.2, "phase_correlation": 0.8,
}
STREAM = {name: BATCH[name] for name in STREAMING_DIMS}


def _metric(result, name):
    return next(m for m in result.metrics if m.name == name)


def test_identical_fingerprints_are_valid_with_similarity_one():
    result = compare(STREAM, BATCH)
    assert result.is_valid and result.failed_metrics == []
    assert result.similarity == pytest.approx(1.0)


def test_a_batch_value_of_zero_is_a_null_error_in_the_json_report():
    """A relative dim whose batch value is 0 and streaming value is not has no
    relative error (infinite): ``validate --json`` stopped with a traceback ("Out of
    range float values are not JSON compliant"), where the tables showed a dash."""
    result = compare({**STREAM, "transient_density": 1.0}, {**BATCH, "transient_density": 0.0})
    metric = _metric(result, "transient_density")
    assert not metric.passed and "batch value is 0" in (metric.note or "")
    report = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert report["errors"]["transient_density"] is None
    assert next(m for m in report["metrics"] if m["name"] == "transient_density")["error"] is None


def test_comparison_is_by_name_not_position():
    reordered_stream = dict(reversed(list(STREAM.items())))
    reordered_batch = dict(sorted(BATCH.items()))
    assert compare(reordered_stream, reordered_batch).is_valid
    # The old plan's bug: pairing streaming with batch[:13] by position.
    positional = dict(zip(STREAMING_DIMS, [BATCH[n] for n in BATCH_DIMS[:13]], strict=True))
    assert not compare(positional, BATCH).is_valid


@pytest.mark.parametrize("streaming_bpm,relation", [
    (120.0, "same"), (121.0, "same"), (240.0, "double"), (60.0, "half"), (180.0, "3:2"), (80.0, "2:3"),
    (160.0, "4:3"), (90.0, "3:4"), (133.0, "miss"),
])
def test_tempo_relations(streaming_bpm, relation):
    result = compare({**STREAM, "tempo_bpm": streaming_bpm}, BATCH)
    metric = _metric(result, "tempo_bpm")
    assert metric.relation == relation
    assert metric.passed == (relation == "same")
    assert metric.error == pytest.approx(abs(streaming_bpm - 120) / 120)


def test_tempo_relation_function():
    assert tempo_relation(99.0, 100.0, 0.02) == ("same", pytest.approx(0.01))
    assert tempo_relation(201.0, 100.0, 0.02)[0] == "double"


@pytest.mark.parametrize("name,delta,kind,expected_error", [
    ("rhythm_stability", 0.01, "absolute", 0.01),
    ("spectral_centroid_hz", 10.0, "relative", 10 / 2000),
    ("transient_density", 0.03, "relative", 0.01),
    ("loudness_range_lu", 0.05, "lu", 0.05),
])
def test_error_kinds(name, delta, kind, expected_error):
    metric = _metric(compare({**STREAM, name: STREAM[name] + delta}, BATCH), name)
    assert metric.kind == kind
    assert metric.error == pytest.approx(expected_error)
    assert metric.passed


@pytest.mark.parametrize("name", ["rhythm_stability", "loudness_std_lu", "spectral_flatness"])
def test_threshold_edges_absolute(name):
    limit = DEFAULT_TOLERANCES[name].limit
    at_limit = _metric(compare({**STREAM, name: STREAM[name] + limit * 0.999}, BATCH), name)
    beyond = _metric(compare({**STREAM, name: STREAM[name] + limit * 1.01}, BATCH), name)
    assert at_limit.passed and not beyond.passed


def test_relative_tolerance_with_absolute_floor():
    # The rolloff passes within one FFT bin even when that is more than 1 % relative.
    low = {**BATCH, "spectral_rolloff_hz": 100.0}
    assert _metric(compare({**STREAM, "spectral_rolloff_hz": 130.0}, low), "spectral_rolloff_hz").passed
    assert not _metric(compare({**STREAM, "spectral_rolloff_hz": 131.0}, low), "spectral_rolloff_hz").passed


def test_the_rolloff_floor_is_one_fft_bin_at_every_rate():
    """The floor of 23.5 Hz bounded a bin up to 48 kHz; at 15.5, 31 and 62 kHz frames
    last 33 ms and bins are 30.3 Hz apart (the streaming histogram's bound)."""
    from fpcli.params import AnalysisParams

    widest = max(rate / AnalysisParams().at_rate(rate).n_fft for rate in range(8000, 768_001, 100))
    assert 30.0 < widest <= DEFAULT_TOLERANCES["spectral_rolloff_hz"].floor


def test_similarity_threshold_edge():
    shifted = {**STREAM, "spectral_centroid_hz": 8000.0}
    similarity = cosine_similarity(shifted, BATCH)
    tolerances = parse_tolerances(["spectral_centroid_hz=10"])
    assert compare(shifted, BATCH, tolerances=tolerances, threshold=similarity - 1e-9).is_valid
    assert not compare(shifted, BATCH, tolerances=tolerances, threshold=similarity + 1e-9).is_valid


def test_normalised_space_is_not_dominated_by_hertz():
    # Three dims stuck at a default still pass a raw cosine; the normalised one sees them.
    stuck = {**STREAM, "key_clarity": 0.0, "pitch_stability": 0.0, "harmonic_ratio": 0.0}
    raw = sum(stuck[n] * STREAM[n] for n in STREAMING_DIMS) / (
        sum(v * v for v in stuck.values()) ** 0.5 * sum(STREAM[n] ** 2 for n in STREAMING_DIMS) ** 0.5)
    assert raw > 0.999
    assert cosine_similarity(stuck, BATCH) < 0.95


def test_silent_track_nulls():
    silent = dict.fromkeys(STREAMING_DIMS)
    silent["silence_ratio"] = 1.0
    silent_batch = {**dict.fromkeys(BATCH_DIMS), "silence_ratio": 1.0}
    result = compare(silent, silent_batch)
    assert result.is_valid and result.similarity == pytest.approx(1.0)
    assert _metric(result, "tempo_bpm").note == "null in both"
    one_sided = compare({**STREAM, "key_clarity": None}, BATCH)
    assert not one_sided.is_valid and _metric(one_sided, "key_clarity").note == "null in streaming only"


def test_confidence_quality():
    assert compare(STREAM, BATCH, confidence=dict.fromkeys(STREAMING_DIMS, 1.0)).confidence_quality == "high"
    assert compare(STREAM, BATCH, confidence=dict.fromkeys(STREAMING_DIMS, 0.7)).confidence_quality == "medium"
    assert compare(STREAM, BATCH, confidence=dict.fromkeys(STREAMING_DIMS, 0.1)).confidence_quality == "low"
    # A whole track with null dims (confidence 0) and every value it has at 1 is high, as
    # search's mean takes it; it was "low" (silence, 50 ms).
    nulls = ("tempo_bpm", "rhythm_stability", "pitch_stability", "key_clarity", "transient_density")
    sparse = {name: None if name in nulls else value for name, value in STREAM.items()}
    whole = {name: 0.0 if name in nulls else 1.0 for name in STREAMING_DIMS}
    assert compare(sparse, BATCH, confidence=whole).confidence_quality == "high"
    assert compare(dict.fromkeys(STREAM), BATCH, confidence=dict.fromkeys(STREAMING_DIMS, 0.0)).confidence_quality \
        == "low"


def test_bad_tolerance_override():
    with pytest.raises(ParameterError, match="not a streaming dimension"):
        parse_tolerances(["lufs=1"])
    with pytest.raises(ParameterError, match="not a number"):
        parse_tolerances(["tempo_bpm=fast"])
    with pytest.raises(ParameterError, match="'tempo_bpm': write METRIC=LIMIT, e.g. tempo_bpm=0.02"):
        parse_tolerances(["tempo_bpm"])   # it said "'' is not a number"
    with pytest.raises(ParameterError, match="'tempo_bpm=': write METRIC=LIMIT"):
        parse_tolerances(["tempo_bpm="])
    for limit in ("inf", "nan", "-1"):   # the library refuses what the command line does
        with pytest.raises(ParameterError, match="a finite number >= 0"):
            parse_tolerances([f"tempo_bpm={limit}"])
    with pytest.raises(ParameterError, match="'tempo_bpm=0.3': tempo_bpm is given twice \\(also 'tempo_bpm=0.1'\\)"):
        parse_tolerances(["tempo_bpm=0.1", "key_clarity=0.2", "tempo_bpm=0.3"])   # the last won without a word


def test_real_analyzers_validate_on_music_like_audio():
    x = synth.music_like(12.0, 22050, seed=4)
    streaming, batch = run_streaming(x, 22050), run_batch(x, 22050)
    result = compare(streaming.values, batch.values, confidence=streaming.confidence)
    assert result.is_valid, result.failed_metrics
    assert result.similarity > 0.999


def test_confidence_buckets_and_monotonicity():
    from fpcli.validate import MetricResult

    def sample(c, e):
        return ("tempo_bpm", c, MetricResult("tempo_bpm", "tempo", 1.0, 1.0, e, 0.02, e <= 0.02))
    good = confidence_buckets([sample(0.1, 0.5), sample(0.1, 0.4), sample(0.5, 0.1), sample(0.9, 0.01),
                               sample(1.0, 0.0)])
    assert good["monotone"]["tempo_bpm"]
    rows = {r["confidence"]: r for r in good["buckets"]["tempo_bpm"]}
    assert rows["0.0-0.2"]["mean_error"] == pytest.approx(0.45) and rows["0.0-0.2"]["samples"] == 2
    # a bucket without samples has no error and no spread (its standard error read 0.0)
    assert rows["0.2-0.4"]["samples"] == 0 and rows["0.2-0.4"]["standard_error"] is None
    bad = confidence_buckets([sample(0.1, 0.01), sample(0.1, 0.011), sample(0.9, 0.5), sample(0.9, 0.51)])
    assert not bad["monotone"]["tempo_bpm"]


def test_a_rise_of_float_rounding_is_no_rise():
    """Buckets of one sample or of equal errors have a standard error of 0: a complete
    track's 1e-9 after a bucket at exactly 0 read "monotone: no"."""
    from fpcli.validate import MetricResult

    def sample(c, e):
        return ("rhythm_stability", c, MetricResult("rhythm_stability", "absolute", 1.0, 1.0, e, 0.05, True))
    rounding = confidence_buckets([sample(0.5, 0.0145), sample(0.7, 0.003), sample(0.9, 0.0), sample(0.9, 0.0),
                                   sample(1.0, 1e-9), sample(1.0, 1.2e-9)])
    assert rounding["monotone"]["rhythm_stability"]
    real = confidence_buckets([sample(0.7, 0.0), sample(0.7, 0.0), sample(0.9, 0.01), sample(0.9, 0.01)])
    assert not real["monotone"]["rhythm_stability"]  # a fifth of the tolerance is a rise


def test_a_metric_with_no_error_measured_is_neither_monotone_nor_not():
    """Every sample null on the streaming side (failed): the buckets have no mean error,
    and "monotone: yes" was claimed with no data; the table showed only dashes, hiding
    the failures that --json counted."""
    from fpcli.cli.validate_cmd import _bucket_cell
    from fpcli.validate import MetricResult

    def sample(c, passed):
        return ("loudness_range_lu", c, MetricResult("loudness_range_lu", "absolute", None, 3.0, None, 1.0, passed))
    partial = confidence_buckets([sample(0.1, False), sample(0.1, False), sample(0.9, True)])
    assert partial["monotone"]["loudness_range_lu"] is None
    rows = {r["confidence"]: r for r in partial["buckets"]["loudness_range_lu"]}
    assert _bucket_cell(rows["0.0-0.2"]) == "null (2, 0 % pass)" and _bucket_cell(rows["0.8-1.0"]) == \
        "null (1, 100 % pass)"


# -- library and CLI -------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(3):
        write(root / f"t{i}.flac", synth.music_like(12.0, 22050, seed=i, bpm=100 + 15 * i), 22050)
    (root / "broken.flac").write_text("not audio\n" * 20)
    return root


def test_validate_library_stores_results(library, tmp_path):
    with FingerprintStore.open(tmp_path / "s") as store:
        report = validate_library([str(library)], store, RunOptions(jobs=2))
        summary = report.summary()
        assert (summary["valid"], summary["invalid"], summary["failed_to_decode"]) == (3, 0, 1)
        assert summary["median_similarity"] > 0.999
        stored = [r.validation for r in store.records()]
        assert len(stored) == 3 and all(v.status == "valid" for v in stored)
        again = validate_library([str(library)], store, RunOptions(jobs=2))  # cached fingerprints
        assert again.summary()["valid"] == 3
        assert store.stats()["hits"] == 3


def test_validate_cli_table_json_and_fail_under(library):
    result = runner.invoke(app, ["validate", "--library", str(library)], env={"COLUMNS": "160"})
    assert result.exit_code == EXIT_SOME_FAILED, result.output  # broken.flac
    assert "tempo_bpm" in result.stdout and "valid 3 (100.0 % of 3 compared)" in result.stdout
    assert "failed to decode 1" in result.stdout
    data = json.loads(runner.invoke(app, ["validate", "-l", str(library), "--json"]).stdout)
    assert data["summary"]["valid_share"] == 1.0
    assert {row["metric"] for row in data["metrics"]} == set(STREAMING_DIMS)
    strict = ["validate", "-l", str(library), "--tolerance", "spectral_centroid_hz=0", "--tolerance",
              "spectral_flatness=0", "--fail-under", "0.9"]
    failed = runner.invoke(app, strict)
    assert failed.exit_code == EXIT_BELOW_THRESHOLD
    assert "below --fail-under 0.9" in failed.stderr
    assert runner.invoke(app, [*strict[:-2], "--fail-under", "0"]).exit_code == EXIT_SOME_FAILED
    (library / "broken.flac").unlink()
    assert runner.invoke(app, [*strict[:-2], "--fail-under", "0"]).exit_code == 0


def test_validate_partial_shows_error_by_confidence(library):
    result = runner.invoke(app, ["validate", "-l", str(library), "--partial", "2,6", "--json"])
    partial = json.loads(result.stdout)["partial"]
    assert partial["seconds"] == [2.0, 6.0] and partial["tracks"] == 3
    samples = sum(row["samples"] for row in partial["buckets"]["spectral_centroid_hz"])
    assert samples == 6
    # Cuts beyond the 12 s tracks are each the whole track: one complete sample per track.
    beyond = runner.invoke(app, ["validate", "-l", str(library), "--partial", "6,20,30", "--json"])
    rows = {row["confidence"]: row for row in json.loads(beyond.stdout)["partial"]["buckets"]["tempo_bpm"]}
    assert rows["1.0 (complete)"]["samples"] == 3 and sum(row["samples"] for row in rows.values()) == 6
    # A cut exactly at the end is the whole track too (it was an unfinished snapshot).
    at_end = runner.invoke(app, ["validate", "-l", str(library), "--partial", "6,12", "--json"])
    rows = {row["confidence"]: row for row in json.loads(at_end.stdout)["partial"]["buckets"]["tempo_bpm"]}
    assert rows["1.0 (complete)"]["samples"] == 3 and sum(row["samples"] for row in rows.values()) == 6
    # 1e308 s is past any end too (it overflowed a frame count: every track failed, unsaid).
    huge = json.loads(runner.invoke(app, ["validate", "-l", str(library), "--partial", "6,1e308", "--json"]).stdout)
    assert huge["partial"]["tracks"] == 3 and huge["partial"]["failed"] == []
    table = runner.invoke(app, ["validate", "-l", str(library), "--partial", "2,6"], env={"COLUMNS": "200"})
    assert "Error by streaming confidence" in table.stdout and "monotone" in table.stdout
    assert "streams cut at 2, 6 s (3 tracks)" in table.stdout   # it printed the Python list [2.0, 6.0]


def test_a_track_whose_partial_pass_fails_is_reported(library, monkeypatch):
    """A track that failed the partial pass was left out of the table without a word."""
    from fpcli import validate

    real = validate._checkpoints

    def one_fails(paths, seconds, options):
        for path, outcome in real(paths, seconds, options):
            yield (path, ("AudioReadError", "gone midway")) if path.endswith("t1.flac") else (path, outcome)

    monkeypatch.setattr(validate, "_checkpoints", one_fails)
    (library / "broken.flac").unlink()   # no other failure: the exit code is the partial pass's
    result = runner.invoke(app, ["validate", "-l", str(library), "--partial", "2"])
    assert "t1.flac: streaming its first seconds failed: gone midway" in result.stdout
    assert result.exit_code == EXIT_SOME_FAILED   # it exited 0, with the error line in its report
    partial = json.loads(runner.invoke(app, ["validate", "-l", str(library), "--partial", "2", "--json"]).stdout)
    assert partial["partial"]["tracks"] == 2 and [f["path"][-7:] for f in partial["partial"]["failed"]] == ["t1.flac"]
    assert partial["summary"]["partial_failed"] == 1


def test_a_file_gone_before_its_partial_pass_is_bad_input_not_a_fault(library, tmp_path):
    """Deleted or emptied between the two passes: it was "InternalError: AudioReadError:
    ... a fault of fpcli: please report it", and said nothing on stderr."""
    (library / "broken.flac").unlink()
    events = []

    def on_event(kind, payload):
        events.append((kind, payload))
        if kind == "start" and payload[1] == "streaming first seconds":
            (library / "t1.flac").unlink()
            (library / "t2.flac").write_bytes(b"")

    with FingerprintStore.open(tmp_path / "store") as store:
        report = validate_library([str(library)], store, RunOptions(jobs=1), partial_seconds=[2.0],
                                  on_event=on_event)
    errors = {f["path"][-7:]: f["error"] for f in report.partial["failed"]}
    assert errors == {"t1.flac": "no such file", "t2.flac": "empty file (0 bytes)"}, errors
    said = [payload for kind, payload in events if kind == "track" and payload.failed]
    assert sorted(r.error for r in said) == ["streaming its first seconds failed: empty file (0 bytes)",
                                             "streaming its first seconds failed: no such file"]


def test_other_criteria_make_a_what_if_run(library, tmp_path):
    """A one-off --tolerance experiment stored its verdicts over the default ones, and
    every later search --strategy auto re-ranked tracks it had called invalid."""
    (library / "broken.flac").unlink()
    base = ["--store", str(tmp_path / "s")]
    assert runner.invoke(app, [*base, "validate", "-l", str(library)]).exit_code == 0

    def verdicts():
        return [json.loads(runner.invoke(app, [*base, "cache", "show", "--json", str(library / f"t{i}.flac")]).stdout)
                ["validation"]["status"] for i in range(3)]

    assert verdicts() == ["valid"] * 3
    for criteria in (["--tolerance", "spectral_centroid_hz=0"], ["--threshold", "1"]):
        result = runner.invoke(app, [*base, "validate", "-l", str(library), "--json", *criteria])
        assert result.exit_code == 0 and json.loads(result.stdout)["summary"]["invalid"] == 3, criteria
        assert "verdicts not stored: --tolerance or --threshold makes a what-if run" in result.stderr
        assert json.loads(result.stdout)["verdicts_stored"] is False   # a script sees it too
        assert verdicts() == ["valid"] * 3, criteria


def test_an_error_before_any_track_is_itself_alone(library, tmp_path, monkeypatch):
    """A scheduler never reached printed an empty report and "stopped: the report covers
    the 0 tracks done", as if a run had happened."""
    import fpcli.library as library_module
    from fpcli.errors import FpcliError

    def unreachable(*args, **kwargs):
        raise FpcliError("cannot reach the Dask scheduler")

    monkeypatch.setattr(library_module, "_analyse", unreachable)
    (library / "broken.flac").unlink()
    with FingerprintStore.open(tmp_path / "s") as store, pytest.raises(FpcliError, match="Dask scheduler"):
        validate_library([str(library)], store, RunOptions(jobs=1))


def test_a_store_lost_while_judging_still_reports(library, tmp_path, monkeypatch):
    """Redis gone after the analysis, while the verdicts were read and stored: no report
    and no JSON, as before the mid-run case was handled."""
    from fpcli.errors import StoreError

    (library / "broken.flac").unlink()
    with FingerprintStore.open(tmp_path / "s") as store:
        def gone(*args, **kwargs):
            raise StoreError("Redis at 127.0.0.1:6379: cannot connect")

        monkeypatch.setattr(store, "record_for_path", gone)
        report = validate_library([str(library)], store, RunOptions(jobs=1))
    assert "cannot connect" in str(report.stopped_by)
    assert [t.status for t in report.tracks] == ["valid"] * 3
    assert all("the store failed" in t.verdict_not_stored for t in report.tracks)


def test_a_shown_similarity_never_contradicts_its_verdict(library):
    """Rounded to 4 decimals, 0.9999998 under --threshold 1 read "invalid  similarity 1.0000"."""
    result = runner.invoke(app, ["validate", "-l", str(library), "--threshold", "1", "--worst", "5"])
    lines = result.stdout.splitlines()
    worst = lines[lines.index("status\tsimilarity\tfailed metrics\tpath") + 1:]   # the worst tracks' table
    invalid = [line.split("\t") for line in worst if line.startswith("invalid\t")]
    assert invalid, result.stdout
    assert all(float(cells[1]) < 1.0 for cells in invalid), invalid


def test_validate_bad_partial_option(library):
    result = runner.invoke(app, ["validate", "-l", str(library), "--partial", "soon"])
    assert result.exit_code == 2
    # no number at all: said to be under 0.5 s before
    commas = runner.invoke(app, ["validate", "-l", str(library), "--partial", ","])
    assert commas.exit_code == 2 and "expected seconds like" in commas.output and "at least" not in commas.output


@pytest.fixture
def small_library(tmp_path):
    """One short track and one file that is not audio: fast CLI runs."""
    root = tmp_path / "small"
    root.mkdir()
    write(root / "a.flac", synth.music_like(4.0, 22050, seed=1, bpm=110), 22050)
    (root / "broken.flac").write_text("not audio\n" * 20)
    return root


def test_validate_missing_path_is_not_analysable_and_fails_the_run(tmp_path):
    # Was exit 0 and "failed to decode 1": as fpcli analyze, a missing path is "not analysable", exit 3.
    result = runner.invoke(app, ["validate", "-l", str(tmp_path / "nowhere"), "-q"])
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "failed to decode 0, not analysable 1" in result.stdout
    assert "not analysable" in result.stdout and "no such file or folder" in result.stdout
    summary = json.loads(runner.invoke(app, ["validate", "-l", str(tmp_path / "nowhere"), "--json"]).stdout)["summary"]
    assert (summary["failed_to_decode"], summary["not_analysable"], summary["compared"]) == (0, 1, 0)


def test_validate_fail_under_with_nothing_validated(tmp_path):
    # Was "valid share None is below --fail-under 0.5": no evidence fails the gate, in words.
    empty = tmp_path / "empty"
    empty.mkdir()
    gated = runner.invoke(app, ["validate", "-l", str(empty), "--fail-under", "0.5"])
    assert gated.exit_code == EXIT_BELOW_THRESHOLD
    assert "no track could be validated (no audio file found)" in gated.stderr and "None" not in gated.stderr
    assert runner.invoke(app, ["validate", "-l", str(empty)]).exit_code == 0  # no gate, nothing failed
    missing = runner.invoke(app, ["validate", "-l", str(tmp_path / "nowhere"), "--fail-under", "0"])
    assert missing.exit_code == EXIT_BELOW_THRESHOLD and "not analysable 1" in missing.stderr


def test_validate_decode_failures_do_not_pass_fail_under_silently(small_library):
    # Was exit 0 with "valid 1 (100.0 %)": the share is of the compared tracks, and says so;
    # the undecodable file makes the run fail (3) even though the gate is met.
    result = runner.invoke(app, ["validate", "-l", str(small_library), "--fail-under", "1", "-q"])
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "valid 1 (100.0 % of 1 compared), invalid 0, failed to decode 1" in result.stdout
    assert "--fail-under" in runner.invoke(app, ["validate", "--help"]).stdout


def test_validate_tables_are_not_cut_in_a_pipe(small_library):
    # Was "2.99…" and "0.0-…" in a pipe: rich assumed 80 columns. CliRunner's stdout is not a terminal.
    result = runner.invoke(app, ["validate", "-l", str(small_library), "--partial", "2", "-q"],
                           env={"COLUMNS": "80"})
    assert "…" not in result.stdout
    assert "1.0 (complete)" in result.stdout and "0.0-0.2" in result.stdout and "mean err" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if line.startswith("tracks "))
    assert summary.endswith("(threshold 0.95)")  # the counts line is not wrapped either
    partial = json.loads(runner.invoke(app, ["validate", "-l", str(small_library), "--partial", "2",
                                             "--json"]).stdout)["partial"]
    cells = [f"{row['mean_error']:.3g} ({row['samples']})" for rows in partial["buckets"].values() for row in rows
             if row["mean_error"] is not None]
    assert cells and all(cell in result.stdout for cell in cells)


def test_all_null_comparison_is_not_comparable():
    nothing = compare(dict.fromkeys(STREAMING_DIMS), dict.fromkeys(BATCH_DIMS))
    assert not nothing.comparable and nothing.status == "not_comparable"
    assert nothing.to_json()["status"] == "not_comparable"
    # A value on one side only is a disagreement, not "nothing measured".
    one_sided = compare({**dict.fromkeys(STREAMING_DIMS), "silence_ratio": 1.0}, dict.fromkeys(BATCH_DIMS))
    assert one_sided.comparable and one_sided.status == "invalid"


def test_validate_track_shorter_than_a_frame_is_not_comparable(small_library, tmp_path):
    # Was "invalid, failed: none, similarity —", counted against --fail-under (exit 4) and stored
    # as invalid: a 1-sample file has nothing measured on either side, so no verdict at all.
    (small_library / "broken.flac").unlink()
    write(small_library / "tiny.wav", synth.music_like(4.0, 22050, seed=2)[:1], 22050)
    store = ["--store", str(tmp_path / "s")]
    result = runner.invoke(app, [*store, "validate", "-l", str(small_library), "--fail-under", "0.9", "-q"])
    assert result.exit_code == 0, result.output
    assert "valid 1 (100.0 % of 1 compared), invalid 0, failed to decode 0, not comparable 1" in result.stdout
    assert "not comparable" in result.stdout and "tiny.wav" in result.stdout
    data = json.loads(runner.invoke(app, [*store, "validate", "-l", str(small_library), "--json"]).stdout)
    assert (data["summary"]["not_comparable"], data["summary"]["invalid"], data["summary"]["compared"]) == (1, 0, 1)
    assert {t["path"].rsplit("/", 1)[-1]: t["status"] for t in data["tracks"]} == {
        "a.flac": "valid", "tiny.wav": "not_comparable"}
    with FingerprintStore.open(tmp_path / "s") as opened:
        assert sorted(str(r.validation and r.validation.status) for r in opened.records()) == ["None", "valid"]


def test_an_interrupted_validation_says_its_report_is_partial(capsys):
    """stdout held complete-looking tables of the tracks done before a Ctrl-C or SIGTERM,
    and stderr nothing: a log read 5 valid of 26 as a 100 % pass."""
    from fpcli.cli.validate_cmd import exit_code
    from fpcli.validate import DEFAULT_TOLERANCES, LibraryValidation, TrackValidation

    report = LibraryValidation([TrackValidation("/m/a.flac", "valid")] * 5, DEFAULT_TOLERANCES, 0.95,
                               interrupted=True)
    assert exit_code(report, None) == 130
    assert "interrupted: the report covers 5 tracks" in capsys.readouterr().err


@pytest.mark.parametrize(("kept", "refused", "said"), [
    (True, 0, "verdicts are stored, run again"), (False, 0, "verdicts are not stored (--no-store), run again"),
    (True, 2, "verdicts are stored but 2 the store refused, run again")])
def test_an_interrupted_validation_says_what_became_of_its_verdicts(capsys, kept, refused, said):
    """It said "verdicts are stored" under --no-store, and when the store had refused them."""
    from fpcli.cli.validate_cmd import exit_code
    from fpcli.validate import DEFAULT_TOLERANCES, LibraryValidation, TrackValidation

    tracks = [TrackValidation("/m/a.flac", "valid", verdict_not_stored="full" if i < refused else None)
              for i in range(5)]
    report = LibraryValidation(tracks, DEFAULT_TOLERANCES, 0.95, interrupted=True)
    assert exit_code(report, None, verdicts_kept=kept) == 130
    assert said in capsys.readouterr().err


def test_an_interrupt_of_the_partial_streams_keeps_the_comparison(small_library, tmp_path, monkeypatch, capsys):
    """A Ctrl-C during the --partial streams threw the whole report away: no table,
    stdout empty, only "error: interrupted". The comparison done before it stands."""
    import fpcli.validate as validate_module
    from fpcli.cli.validate_cmd import exit_code

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(validate_module, "_partial", stopped)
    with FingerprintStore.open(tmp_path / "s") as store:
        try:
            report = validate_module.validate_library([str(small_library)], store, RunOptions(jobs=1),
                                                      partial_seconds=[1.0, 2.0])
        except KeyboardInterrupt:
            pytest.fail("the interrupt escaped: no report")   # not raised on: it would stop the test run
    assert report.interrupted and report.partial_interrupted and report.partial is None
    assert sorted(t.status for t in report.tracks) == ["error", "valid"]
    assert report.to_json()["partial_interrupted"] is True
    assert exit_code(report, None) == 130
    # Of the two tracks one failed: the one compared is what the report covers.
    assert "the report covers the 1 track compared; the --partial streams were stopped" in capsys.readouterr().err


def test_a_file_that_cannot_be_read_is_not_analysable_not_failed_to_decode(tmp_path):
    """A Dask worker's copy missing (`--path-map` to nowhere) was "failed to decode 10";
    a path that cannot be read is "not analysable", as the help says of a missing one."""
    from fpcli.analyze import failed
    from fpcli.store.records import ACCESS_ERROR_TYPE
    from fpcli.validate import DEFAULT_THRESHOLD, DEFAULT_TOLERANCES, _validate_one

    unreadable = failed("/m/a.flac", ACCESS_ERROR_TYPE, "no such file or folder on the worker, as /w/a.flac")
    with FingerprintStore.open(tmp_path / "s") as store:
        track, record = _validate_one(store, unreadable, "v5-x", DEFAULT_TOLERANCES, DEFAULT_THRESHOLD, True)
    assert (track.status, record) == ("not_analysable", None)


def test_the_json_says_no_verdict_was_stored_when_the_store_took_none():
    """A read-only, full or lost store stored no verdict, and the JSON said "verdicts_stored": true."""
    from fpcli.validate import LibraryValidation, TrackValidation

    refused = [TrackValidation("/m/a.flac", "valid", verdict_not_stored="the store is read-only")]
    assert LibraryValidation(refused, dict(DEFAULT_TOLERANCES), 0.95).to_json()["verdicts_stored"] is False
    stored = [TrackValidation("/m/a.flac", "valid")]
    assert LibraryValidation(stored, dict(DEFAULT_TOLERANCES), 0.95).to_json()["verdicts_stored"] is True
