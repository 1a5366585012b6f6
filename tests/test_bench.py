"""fpcli bench: the schema, --check, --compare and atomic output files."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli import bench, synth
from fpcli.cli import EXIT_BELOW_THRESHOLD, EXIT_USAGE, app
from fpcli.errors import FpcliError, ParameterError
from tests.conftest import write

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write(root / "a.flac", synth.music_like(3.0, 22050, seed=1), 22050)
    write(root / "b.wav", synth.drum_pattern(120.0, 3.0, 22050), 22050)
    (root / "broken.flac").write_text("not audio")
    return root


def test_a_file_whose_audio_does_not_decode_is_left_out(tmp_path):
    """A FLAC cut after 3 KB opens but decodes nothing: its decoding error, met while it
    was timed, stopped the whole benchmark (exit 1, no tables)."""
    library = tmp_path / "lib"
    library.mkdir()
    for i in range(2):
        write(library / f"t{i}.flac", synth.music_like(3.0, 22050, seed=i), 22050)
    (library / "cut.flac").write_bytes((library / "t0.flac").read_bytes()[:3000])
    assert bench._seconds_decoded(str(library / "t0.flac")) and not bench._seconds_decoded(str(library / "cut.flac"))


def test_cli_bench_library_errors_say_what_is_wrong(tmp_path):
    missing = runner.invoke(app, ["bench", "--quick", "--library", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    one = tmp_path / "one.flac"
    write(one, synth.music_like(2.0, 22050, seed=1), 22050)
    single = runner.invoke(app, ["bench", "--quick", "--library", str(one)])
    assert single.exit_code == 1
    assert "1 decodable audio file of 1: the benchmark needs at least 2" in str(single.exception)


@pytest.fixture(scope="module")
def result(tiny_library):
    return bench.run(tiny_library, quick=True, jobs=1)


def test_result_has_the_documented_schema(result):
    data = json.loads(json.dumps(result.to_json()))
    assert data["schema"] == "fpcli-bench/1"
    assert {"cores", "cpu", "python", "numpy", "soundfile", "libsndfile"} <= set(data["machine"])
    assert data["library"]["decodable"] == 2 and data["library"]["files"] == 3
    for name in bench.DEFAULT_THRESHOLDS:
        assert name in data["figures"], name
    assert set(data["figures"]) == bench.FIGURE_NAMES   # what --thresholds may name
    for figure in data["figures"].values():
        assert set(figure) == {"value", "unit", "better", "kind", "note"}
        assert figure["better"] in ("higher", "lower") and figure["kind"] in ("ratio", "absolute", "share")
    assert 0 < data["figures"]["cache.hit_rate"]["value"] <= 1


def test_check_passes_and_fails_on_an_injected_miss(result):
    assert all(c.passed for c in bench.check(result, {"cache.hit_rate": (">=", 0.0)}))
    impossible = bench.check(result, {"analysis.streaming_x": (">=", 1e12), "cache.lookup_p99_ms": ("<=", 0.0)})
    assert [c.passed for c in impossible] == [False, False]
    assert not bench.check(result, {"no.such.figure": (">=", 1)})[0].passed


def test_thresholds_from_a_file(tmp_path):
    path = tmp_path / "limits.toml"
    path.write_text('[thresholds]\n"cache.hit_rate" = ">= 0.99"\n')
    assert bench.load_thresholds(path)["cache.hit_rate"] == (">=", 0.99)
    assert bench.load_thresholds(path).given == {"cache.hit_rate"}   # the others are the defaults
    path.write_text('[thresholds]\n"cache.hit_rate" = "at least a lot"\n')
    with pytest.raises(FpcliError, match="write it as"):
        bench.load_thresholds(path)


def test_compare_flags_a_synthetic_regression(result):
    earlier = result.to_json()
    earlier["figures"]["analysis.streaming_x"]["value"] = result.figures["analysis.streaming_x"].value * 2
    earlier["figures"]["cache.lookup_p99_ms"]["value"] = result.figures["cache.lookup_p99_ms"].value / 2
    changes = {c.name: c for c in bench.compare(result, earlier)}
    assert changes["analysis.streaming_x"].regression            # half as fast
    assert changes["cache.lookup_p99_ms"].regression             # twice as slow
    assert not changes["cache.hit_rate"].regression
    with pytest.raises(FpcliError, match="not a bench result"):
        bench.compare(result, {"schema": "other"})


def test_compare_says_when_the_baseline_was_measured_otherwise(result):
    """A baseline of another library, mode or machine was gated against without a word."""
    assert bench.baseline_differences(result, result.to_json()) == []
    earlier = result.to_json()
    earlier.update(quick=False, machine={**earlier["machine"], "cores": 64})
    earlier["library"] = {**earlier["library"], "path": "/elsewhere", "files": 900}
    said = bench.baseline_differences(result, earlier)
    assert [text.split(" (")[0] for text in said] == ["in full mode", "on another library", "on another machine"]
    assert said[0] == "in full mode (this run: quick)" and "cores 64" in said[2]
    # An older result without these facts: unknown, not different.
    assert bench.baseline_differences(result, {"schema": bench.SCHEMA, "figures": {}}) == []


def _thresholds_file(path, op):
    """Every default threshold rewritten so that any measured figure passes ("loose") or
    fails ("impossible"): the CLI's checking is tested, not this machine's speed."""
    value = {"loose": {">=": "-1e300", "<=": "1e300"}, "impossible": {">=": "1e300", "<=": "-1e300"}}[op]
    lines = ["[thresholds]"] + [f'"{name}" = "{rule} {value[rule]}"' for name, (rule, _) in
                                bench.DEFAULT_THRESHOLDS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_bench_check_json_markdown_compare(tiny_library, tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    base = ["bench", "--library", str(tiny_library), "--quick", "--jobs", "1"]
    loose = _thresholds_file(tmp_path / "loose.toml", "loose")
    ok = runner.invoke(app, [*base, "--check", "--thresholds", str(loose), "--json", str(out), "--markdown", str(md)],
                       env={"COLUMNS": "160"})
    assert ok.exit_code == 0, ok.output
    assert "fpcli bench — " in ok.stderr and " · library: " in ok.stderr  # the run's facts, also in a pipe
    assert "(2 of 3 files decodable, " in ok.stderr   # the third was left out of every figure without a word
    written = json.loads(out.read_text())
    assert written["schema"] == "fpcli-bench/1" and written["changes"] == []
    # The table's verdicts are in the file too: a CI job had to check the thresholds again.
    assert written["checks"] and all(set(c) == {"name", "value", "op", "threshold", "passed"} and c["passed"]
                                     for c in written["checks"])
    assert "| figure" in md.read_text() and "cache.hit_rate" in md.read_text()
    impossible = _thresholds_file(tmp_path / "strict.toml", "impossible")
    strict = runner.invoke(app, [*base, "--check", "--thresholds", str(impossible)])
    assert strict.exit_code == EXIT_BELOW_THRESHOLD
    assert "miss analysis.streaming_x" in strict.stderr
    earlier = json.loads(out.read_text())
    earlier["figures"]["analysis.batch_x"]["value"] *= 10
    compared = runner.invoke(app, [*base, "--compare", "-"], input=json.dumps(earlier), env={"COLUMNS": "200"})
    assert compared.exit_code == 0 and "regression, not gated" in compared.stdout
    # The help's own example: --compare with --json (its verdicts were numpy bools: a traceback,
    # no file); and --json - leaves stdout to the document alone.
    both = runner.invoke(app, [*base, "--compare", str(out), "--json", "-"])
    assert both.exit_code == 0, both.output
    changes = json.loads(both.stdout)["changes"]
    assert changes and all(isinstance(c["regression"], bool) for c in changes)
    twice = runner.invoke(app, [*base, "--json", "-", "--markdown", "-"])
    assert twice.exit_code == 2 and "already writes to stdout" in twice.stderr


def test_bench_reads_an_earlier_result_and_thresholds_from_stdin_or_says_why_not(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"schema": "fpcli-bench/1", "figures": {}}'))
    assert bench.load_earlier(Path("-"))["schema"] == "fpcli-bench/1"
    monkeypatch.setattr("sys.stdin", io.StringIO('[thresholds]\n"cache.hit_rate" = ">= 0.25"\n'))
    assert bench.load_thresholds(Path("-"))["cache.hit_rate"] == (">=", 0.25)
    for text, reason in [("not json", "stdin: not JSON"), ("[1, 2]", "not a bench result")]:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))
        with pytest.raises(FpcliError, match=reason):
            bench.load_earlier(Path("-"))
    with pytest.raises(FpcliError, match="cannot read .*missing.json"):
        bench.load_earlier(tmp_path / "missing.json")


BAD_THRESHOLDS = [  # (file name, contents, what the error says)
    ("t.json", "[1]", "thresholds must be an object of figure -> rule .*not an array"),
    ("t.json", '{"thresholds": "x"}', "thresholds must be an object of figure -> rule .*not a string"),
    ("t.json", '{"thresholds": null}', "thresholds must be an object .*not null"),
    ("t.json", '{"cache.hit_rate": true}', "threshold cache.hit_rate = True: write it as"),
    ("t.json", '{"cache.hit_rate": ">= nan"}', "a finite number"),
    ("t.json", '{"cache.hit_rate": "<= 1e400"}', "a finite number"),
    ("t.json", "[" * 100_000, "not JSON"),
    ("t.toml", "a = " + "[" * 100_000, "not TOML"),
    ("t.toml", '[thresholds]\ncache.hit_rate = ">= 0.5"\n', "threshold cache is a table.*quote dotted"),
    # A typo was a "miss" found after the whole run (minutes on a real library).
    ("t.toml", '[thresholds]\n"cache.hitrate" = ">= 0.5"\n', r"threshold cache.hitrate: no such figure \(did you "
                                                            r"mean cache.hit_rate\?\)"),
    ("t.toml", '"zzz" = ">= 5"\n', "threshold zzz: no such figure; the figures: analysis.batch_vs_decode, "),
]


@pytest.mark.parametrize(("name", "text", "reason"), BAD_THRESHOLDS)
def test_a_bad_thresholds_file_names_the_file_and_what_is_wrong(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ParameterError, match=f"^{re.escape(str(path))}: .*{reason}"):
        bench.load_thresholds(path)


def test_a_bad_thresholds_table_in_pyproject_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool]\nfpcli = "x"\n')
    with pytest.raises(ParameterError, match="^pyproject.toml: tool.fpcli must be a table, not a string"):
        bench.load_thresholds()
    (tmp_path / "pyproject.toml").write_text('[tool.fpcli.bench]\nthresholds = [1]\n')
    with pytest.raises(ParameterError, match="^pyproject.toml: thresholds must be an object"):
        bench.load_thresholds()


def test_a_broken_pyproject_stops_only_a_gated_run(tmp_path, monkeypatch, capsys):
    """Any project's broken pyproject.toml stopped every bench run in its folder; only
    --check reads its thresholds as a gate."""
    from fpcli.cli.bench_cmd import _bench_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("this is = not toml [\n")
    limits, earlier = _bench_inputs(None, None, gate=False)
    assert limits == bench.DEFAULT_THRESHOLDS and earlier is None
    assert "warning: pyproject.toml: not TOML" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="^pyproject.toml: not TOML"):
        _bench_inputs(None, None, gate=True)


GOOD_EARLIER = {"schema": "fpcli-bench/1", "figures": {"analysis.streaming_x": {"value": 1.0}}}
BAD_EARLIER = [  # (contents, what the error says)
    ("[1]", "not a bench result"),
    ('{"figures": {}}', r"not a bench result \(schema None, expected fpcli-bench/1\)"),
    ('{"schema": "fpcli-bench/1"}', "figures must be an object .*not null"),
    ('{"schema": "fpcli-bench/1", "figures": null}', "figures must be an object .*not null"),
    ('{"schema": "fpcli-bench/1", "figures": []}', "figures must be an object .*not an array"),
    ('{"schema": "fpcli-bench/1", "figures": {"analysis.streaming_x": "x"}}',
     'figure analysis.streaming_x must be an object with a number "value"'),
    ('{"schema": "fpcli-bench/1", "figures": {"cache.hit_rate": {"value": true}}}', "figure cache.hit_rate must"),
    ('{"schema": "fpcli-bench/1", "figures": {"cache.hit_rate": {"value": 1' + "0" * 400 + "}}}",
     "figure cache.hit_rate must"),
    ("[" * 100_000, "not JSON"),
    # Python's json reads these; compared and written back they made invalid JSON.
    ('{"schema": "fpcli-bench/1", "figures": {"cache.hit_rate": {"value": NaN}}}', "figure cache.hit_rate must"),
    ('{"schema": "fpcli-bench/1", "figures": {"cache.speedup": {"value": -Infinity}}}', "figure cache.speedup must"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_EARLIER)
def test_a_bad_compare_file_names_the_file_and_what_is_wrong(tmp_path, text, reason):
    path = tmp_path / "earlier.json"
    path.write_text(text)
    with pytest.raises(ParameterError, match=f"^{re.escape(str(path))}: .*{reason}"):
        bench.load_earlier(path)
    path.write_text(json.dumps(GOOD_EARLIER))
    assert bench.load_earlier(path) == GOOD_EARLIER


def _no_benchmark(*args, **kwargs):
    raise AssertionError("the benchmark ran before its input files were validated")


@pytest.mark.parametrize(("option", "name", "text", "reason"), [
    ("--thresholds", "t.json", "[1]", "thresholds must be an object of figure -> rule"),
    ("--thresholds", "t.json", '{"thresholds": "x"}', "thresholds must be an object of figure -> rule"),
    ("--thresholds", "missing.json", None, "No such file or directory"),
    ("--thresholds", "t.toml", '"nonexistent.figure" = ">= 5"\n', "threshold nonexistent.figure: no such figure"),
    ("--compare", "c.json", '{"schema": "fpcli-bench/1", "figures": null}', "figures must be an object"),
    ("--compare", "c.json", '{"figures": {"analysis.streaming_x": "x"}}', "not a bench result"),
    ("--compare", "c.json", '{"schema": "fpcli-bench/1", "figures": {"analysis.streaming_x": "x"}}',
     "figure analysis.streaming_x must be an object"),
])
def test_cli_bench_rejects_a_bad_file_before_running_as_a_usage_error(tmp_path, monkeypatch, option, name, text,
                                                                      reason):
    monkeypatch.setattr(bench, "run", _no_benchmark)
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    outcome = runner.invoke(app, ["bench", "--quick", option, str(path)], env={"COLUMNS": "400"})
    assert outcome.exit_code == EXIT_USAGE, outcome.output
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome.exception
    assert re.search(f"Invalid value for {option}: .*{re.escape(str(path.name))}.*{reason}", outcome.output)
    assert "Traceback" not in outcome.output


def test_cli_bench_refuses_stdin_for_both_files(monkeypatch):
    monkeypatch.setattr(bench, "run", _no_benchmark)
    outcome = runner.invoke(app, ["bench", "--thresholds", "-", "--compare", "-"], input="{}")
    assert outcome.exit_code == EXIT_USAGE and "--thresholds already reads stdin" in outcome.output


def test_figures_in_a_pipe_have_no_thousands_separators():
    """Tab-separated lines are for programs: "2,038" read as two fields, or as 2."""
    from fpcli.cli.render import number

    assert (number(2038.4), number(2038.4, grouped=False), number(0.01234, grouped=False)) == ("2,038", "2038",
                                                                                               "0.0123")


def test_a_change_from_zero_is_undefined_not_zero():
    from fpcli.cli.bench_cmd import _change_cell

    result = bench.BenchResult(date="", machine={}, library={}, quick=True, figures={
        "analysis.streaming_x": bench.Figure(200.0, "x", "higher", "absolute"),
        "cache.lookup_p99_ms": bench.Figure(0.0, "ms", "lower", "absolute"),
        "cache.hit_rate": bench.Figure(0.8, "share", "higher", "share")})
    zeros = {"schema": "fpcli-bench/1", "figures": {name: {"value": 0} for name in result.figures}}
    changes = bench.compare(result, zeros)
    assert [(c.change, c.regression, _change_cell(c)) for c in changes] == [(None, False, "n/a")] * 3
    earlier = {"schema": "fpcli-bench/1", "figures": {"cache.hit_rate": {"value": 1.6}}}
    [halved] = bench.compare(result, earlier)
    assert halved.change == pytest.approx(-0.5) and halved.regression and _change_cell(halved) == "-50 % REGRESSION"


def test_check_fails_on_a_regressed_ratio_not_on_an_absolute_figure(monkeypatch, tmp_path):
    """Two runs of the same code moved wall-clock p50s and p99s by 40-200 % and cold /
    warm (one run each) from 406 to 163, and ``--compare F --check`` exited 4 with
    every threshold passing: only the speed ratios of interleaved rounds and the hit
    rate fail the gate."""
    library = {"path": "lib", "files": 2, "decodable": 2, "audio_s": 6.0, "store": "diskcache (temporary)"}
    gated = {name: bench.Figure(1.0, "x", "higher", "absolute") for name in bench.DEFAULT_THRESHOLDS}
    now = bench.BenchResult(date="", machine=bench.machine_facts(), library=library, quick=True, figures={
        **gated, "search.library_p99_ms": bench.Figure(17.8, "ms", "lower", "absolute"),
        "cache.speedup": bench.Figure(163.0, "x", "higher", "ratio", "cold / warm"),   # one run of each
        "analysis.streaming_vs_decode": bench.Figure(0.30, "ratio", "higher", "ratio")})
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: now)
    loose = _thresholds_file(tmp_path / "loose.toml", "loose")

    def compared_with(before):
        earlier = tmp_path / "earlier.json"
        earlier.write_text(json.dumps({"schema": "fpcli-bench/1", "figures": {
            name: {"value": value} for name, value in before.items()}}))
        return runner.invoke(app, ["bench", "--check", "--thresholds", str(loose), "--compare", str(earlier)],
                             env={"COLUMNS": "200"})

    noisy = compared_with({"search.library_p99_ms": 6.02, "cache.speedup": 406.0, "analysis.streaming_vs_decode": 0.31})
    assert noisy.exit_code == 0, noisy.output
    assert "regression, not gated" in noisy.stdout and "REGRESSION" not in noisy.stdout
    slower = compared_with({"search.library_p99_ms": 17.8, "analysis.streaming_vs_decode": 0.45})
    assert slower.exit_code == EXIT_BELOW_THRESHOLD
    assert "regression analysis.streaming_vs_decode" in slower.stderr


def test_files_that_fail_late_or_measure_nothing_are_left_out(tmp_path):
    """One file whose float samples turn out not to be audio after 8 s stopped the
    benchmark (exit 1), and one 20 ms file, too short to measure, stopped its searches
    (exit 3): each is one file left out."""
    from fpcli.library import RunOptions, run_library
    from fpcli.store import FingerprintStore

    library = tmp_path / "lib"
    library.mkdir()
    good = write(library / "good.wav", synth.music_like(3.0, 22050, seed=1), 22050)
    late = synth.music_like(10.0, 22050, seed=2)
    late[8 * 22050] = 1e7
    late_path = write(library / "late.wav", late, 22050, subtype="FLOAT")
    short = write(library / "short.wav", synth.sine(440, 0.02, 44100), 44100)
    assert bench._seconds_decoded(good) and not bench._seconds_decoded(late_path) and bench._seconds_decoded(short)
    with FingerprintStore.open(tmp_path / "store") as store:
        run_library([str(library)], store, RunOptions(jobs=1))
        assert bench._queries(store, [good, late_path, short]) == [good]


def test_a_library_of_tracks_too_short_to_measure_is_an_error_not_a_traceback(tmp_path):
    """Every track 20 ms long: the searchable tracks were none, and the look-up
    latencies divided by their count (ZeroDivisionError)."""
    library = tmp_path / "short"
    library.mkdir()
    for i in range(2):
        write(library / f"{i}.wav", synth.sine(440 + 220 * i, 0.02, 44100), 44100)
    with pytest.raises(FpcliError, match="0 tracks long enough to measure .* needs at least 2"):
        bench.run(library, quick=True, jobs=1)


def test_bench_on_redis_uses_a_private_namespace_and_removes_it(tiny_library, redis_url, redis_server):
    import redis

    client = redis.Redis(port=redis_server.port)
    client.set("fpcli:data:rec:user-data", "{}")  # the user's store on the same server
    result = bench.run(tiny_library, quick=True, jobs=1, redis_url=redis_url)
    assert result.library["store"].startswith("redis")
    assert result.figures["cache.hit_rate"].value > 0.5
    assert [k.decode() for k in client.scan_iter("*")] == ["fpcli:data:rec:user-data"]


@pytest.mark.parametrize("stopped", ["analyze", "validate"])
def test_an_interrupt_during_the_cache_workload_stops_the_benchmark(tmp_path, monkeypatch, stopped):
    """A library run and a validation stop at a Ctrl-C (or SIGTERM) and return what they
    finished: the benchmark timed half a run, went on, and wrote a "speedup" of 0.2
    (MISS) as a result, exit 0. The interrupt now stops it."""
    from fpcli.library import RunSummary
    from fpcli.store import FingerprintStore
    from fpcli.validate import DEFAULT_TOLERANCES, LibraryValidation

    monkeypatch.setattr(bench, "run_library", lambda *args, **kwargs: RunSummary(interrupted=stopped == "analyze"))
    monkeypatch.setattr(bench, "validate_library",
                        lambda *args, **kwargs: LibraryValidation([], DEFAULT_TOLERANCES, 0.95, interrupted=True))
    with pytest.raises(KeyboardInterrupt):
        bench.cache_workload(tmp_path, lambda: FingerprintStore.open(tmp_path / "s"), jobs=1)


def test_the_default_library_says_whether_it_copied_the_samples_or_synthesized_clips(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    write(samples / "tone.flac", synth.sine(440.0, 1.0, 22050), 22050)
    copied, copied_label = bench.default_library(tmp_path / "a", samples)
    made, made_label = bench.default_library(tmp_path / "b", tmp_path / "no-samples-here")
    assert [p.name for p in copied.iterdir()] == ["tone.flac"] and copied_label == bench.SAMPLES_LABEL
    assert len(list(made.iterdir())) == 4 and made_label == bench.SYNTHESIZED_LABEL != bench.SAMPLES_LABEL


def test_the_decode_ratios_default_thresholds_are_for_the_default_library_alone():
    """A library of 16-bit WAV (decoded at 7,000-11,000x) read 0.04 on a healthy build
    and missed the default 0.05: the ratio depends on the codecs. With --library the
    defaults are not checked; a threshold file's own value is."""
    figures = {name: bench.Figure(0.04, "ratio", "higher", "ratio") for name in bench.DEFAULT_LIBRARY_ONLY}
    ratios = bench.Thresholds({name: bench.DEFAULT_THRESHOLDS[name] for name in bench.DEFAULT_LIBRARY_ONLY})

    def checked(label, thresholds):
        result = bench.BenchResult(date="", machine={}, library={"path": label}, quick=True, figures=figures)
        return [(c.name, c.passed) for c in bench.check(result, thresholds)]

    assert checked(bench.SAMPLES_LABEL, ratios) == [(name, False) for name in bench.DEFAULT_LIBRARY_ONLY]
    assert checked(bench.SYNTHESIZED_LABEL, ratios) == [(name, False) for name in bench.DEFAULT_LIBRARY_ONLY]
    assert checked("/home/me/Music", ratios) == []
    own = bench.Thresholds(ratios, given={"analysis.batch_vs_decode"})   # a file set it (to the default)
    assert checked("/home/me/Music", own) == [("analysis.batch_vs_decode", False)]
    assert checked("/home/me/Music", dict(ratios)) == checked(bench.SAMPLES_LABEL, ratios)   # a plain dict: all given
