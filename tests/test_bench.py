"""fpcli bench: the schema, --check, --compare and atomic output files."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli import bench, synth
from fpcli.cli import EXIT_BELOW_THRESHOLD, app
from fpcli.errors import FpcliError
from tests.conftest import write

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write(root / "a.flac", synth.music_like(3.0, 22050, seed=1), 22050)
    write(root / "b.wav", synth.drum_pattern(120.0, 3.0, 22050), 22050)
    (root / "broken.flac").write_text("not audio")
    return root


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
    assert json.loads(out.read_text())["schema"] == "fpcli-bench/1"
    assert "| figure" in md.read_text() and "cache.hit_rate" in md.read_text()
    impossible = _thresholds_file(tmp_path / "strict.toml", "impossible")
    strict = runner.invoke(app, [*base, "--check", "--thresholds", str(impossible)])
    assert strict.exit_code == EXIT_BELOW_THRESHOLD
    assert "miss analysis.streaming_x" in strict.stderr
    earlier = json.loads(out.read_text())
    earlier["figures"]["analysis.batch_x"]["value"] *= 10
    compared = runner.invoke(app, [*base, "--compare", "-"], input=json.dumps(earlier), env={"COLUMNS": "200"})
    assert compared.exit_code == 0 and "REGRESSION" in compared.stdout


def test_bench_reads_an_earlier_result_and_thresholds_from_stdin_or_says_why_not(tmp_path, monkeypatch):
    import io

    from fpcli.cli.bench_cmd import _read_json
    from fpcli.errors import FpcliError

    monkeypatch.setattr("sys.stdin", io.StringIO('{"schema": "fpcli-bench/1", "figures": {}}'))
    assert _read_json(Path("-"))["schema"] == "fpcli-bench/1"
    monkeypatch.setattr("sys.stdin", io.StringIO('[thresholds]\n"cache.hit_rate" = ">= 0.25"\n'))
    assert bench.load_thresholds(Path("-"))["cache.hit_rate"] == (">=", 0.25)
    for text, reason in [("not json", "stdin: not JSON"), ("[1, 2]", "not a bench --json result")]:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))
        with pytest.raises(FpcliError, match=reason):
            _read_json(Path("-"))
    with pytest.raises(FpcliError, match="cannot read .*missing.json"):
        _read_json(tmp_path / "missing.json")


def test_bench_on_redis_uses_a_private_namespace_and_removes_it(tiny_library, redis_url, redis_server):
    import redis

    client = redis.Redis(port=redis_server.port)
    client.set("fpcli:data:rec:user-data", "{}")  # the user's store on the same server
    result = bench.run(tiny_library, quick=True, jobs=1, redis_url=redis_url)
    assert result.library["store"].startswith("redis")
    assert result.figures["cache.hit_rate"].value > 0.5
    assert [k.decode() for k in client.scan_iter("*")] == ["fpcli:data:rec:user-data"]
