"""Every command's happy path and error path through typer's CliRunner."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import EXIT_SOME_FAILED, app, command_named
from fpcli.errors import NotStoredError, ParameterError
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS
from tests.conftest import new_store, write

runner = CliRunner()


@pytest.fixture
def song(tmp_path):
    return write(tmp_path / "song.flac", synth.music_like(5.0, 22050, seed=1), 22050)


@pytest.fixture
def broken(tmp_path):
    path = tmp_path / "broken.flac"
    path.write_text("not audio\n" * 10)
    return str(path)


def test_analyze_prints_a_table(song):
    result = runner.invoke(app, ["analyze", song], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "tempo_bpm" in result.output and "22050 Hz, 2 ch" in result.output
    assert "band_bass" not in result.output  # batch dims only with --batch


def test_analyze_batch_table_has_all_dims(song):
    result = runner.invoke(app, ["analyze", "--batch", song], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for name in BATCH_DIMS:
        assert name in result.output


def test_analyze_json_lines(song, broken):
    result = runner.invoke(app, ["analyze", "--json", "--batch", song, broken])
    assert result.exit_code == EXIT_SOME_FAILED
    lines = {line["path"]: line for line in _json_lines(result.stdout)}  # completion order
    good, bad = lines[song], lines[broken]
    assert (good["status"], bad["status"]) == ("ok", "error")
    for key in ("path", "status", "error", "duration_s", "samplerate", "channels", "fingerprint_version"):
        assert key in good
    assert set(good["streaming"]) == set(STREAMING_DIMS)
    assert set(good["streaming"]["tempo_bpm"]) == {"value", "confidence"}
    assert set(good["batch"]) == set(BATCH_DIMS)
    assert good["duration_s"] == pytest.approx(5.0)
    assert bad["path"] == broken and "not a decodable audio file" in bad["error"]


def test_analyze_bad_file_goes_on_and_fails_the_exit_code(song, broken):
    result = runner.invoke(app, ["analyze", broken, song], env={"COLUMNS": "120"})
    assert result.exit_code == EXIT_SOME_FAILED
    assert "not a decodable audio file" in result.output
    assert "tempo_bpm" in result.output  # the good file after the bad one was analysed


def test_analyze_requires_a_path():
    result = runner.invoke(app, ["analyze"])
    assert result.exit_code == 2


COMMANDS = [[], ["analyze"], ["validate"], ["search"], ["bench"], ["cache"], ["cache", "stats"], ["cache", "list"],
            ["cache", "show"], ["cache", "clear"], ["cache", "prune"], ["cache", "failures"], ["cache", "export"],
            ["cache", "import"], ["cache", "verify"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Usage" in result.output
    if command:
        assert "Example" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("fpcli ")


# -- library runs and the store --------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    for i in range(4):
        write(root / f"t{i}.flac", synth.music_like(2.0, 22050, seed=i), 22050)
    (root / "bad.mp3").write_bytes(b"ID3 garbage" * 10)
    return root


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_analyze_folder_twice_uses_the_store(folder, tmp_path):
    store = str(tmp_path / "s")
    first = runner.invoke(app, ["--store", store, "analyze", str(folder), "--json", "--jobs", "2"])
    assert first.exit_code == EXIT_SOME_FAILED
    rows = _json_lines(first.stdout)
    assert len(rows) == 5 and not any(r["cached"] for r in rows)
    assert "analysed 4, from cache 0, failed 1" in first.stderr
    second = runner.invoke(app, ["--store", store, "analyze", str(folder), "--json"])
    assert second.exit_code == EXIT_SOME_FAILED  # a known failure, skipped, still counts as failed
    rows = _json_lines(second.stdout)
    assert [r["cached"] for r in rows] == [True] * 5
    assert [os.path.basename(r["path"]) for r in rows if r["status"] == "error"] == ["bad.mp3"]
    assert "1 failed before, skipped" in second.stderr


def test_fpcli_store_environment_variable(folder, tmp_path):
    store = tmp_path / "from-env"
    result = runner.invoke(app, ["analyze", str(folder / "t0.flac"), "--quiet"], env={"FPCLI_STORE": str(store)})
    assert result.exit_code == 0
    assert (store / "data").is_dir()


def test_analyze_many_files_prints_one_line_each(folder):
    result = runner.invoke(app, ["analyze", str(folder)], env={"COLUMNS": "200"})
    assert result.stdout.count("BPM") == 4 and "new" in result.stdout


def test_cache_commands(folder, tmp_path):
    runner.invoke(app, ["analyze", str(folder), "--batch", "--quiet"])
    stats = json.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)
    assert stats["entries"] == 4 and stats["failures"] == 1 and stats["with_batch"] == 4
    assert stats["misses"] == 5 and stats["hits"] == 0 and stats["size_limit_bytes"] == 256 * 2**20
    assert "hit rate" in runner.invoke(app, ["cache", "stats"]).stdout
    listed = _json_lines(runner.invoke(app, ["cache", "list", "--json", "--contains", "t1"]).stdout)
    assert [os.path.basename(r["path"]) for r in listed] == ["t1.flac"]
    shown = json.loads(runner.invoke(app, ["cache", "show", "--json", str(folder / "t2.flac")]).stdout)
    assert shown["batch"]["values"]["tempo_bpm"] == shown["streaming"]["values"]["tempo_bpm"]
    failures = _json_lines(runner.invoke(app, ["cache", "failures", "--json"]).stdout)
    assert [os.path.basename(f["path"]) for f in failures] == ["bad.mp3"]
    assert runner.invoke(app, ["cache", "verify"]).exit_code == 0
    export = tmp_path / "dump.jsonl"
    assert runner.invoke(app, ["cache", "export", str(export)]).exit_code == 0
    os.remove(folder / "t3.flac")
    pruned = _json_lines(runner.invoke(app, ["cache", "prune", "--json"]).stdout)
    assert [os.path.basename(p["path"]) for p in pruned] == ["t3.flac"]
    cleared = runner.invoke(app, ["cache", "clear", "--yes"])
    assert cleared.exit_code == 0 and "removed 3 records and 1 failure (" in cleared.stderr   # as stats counts
    assert json.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)["entries"] == 0
    imported = runner.invoke(app, ["cache", "import", str(export)])
    assert imported.exit_code == 0 and "imported 4 records and 1 failure," in imported.stderr


def test_cache_show_unknown_file_is_a_clear_error(folder, tmp_path):
    result = runner.invoke(app, ["cache", "show", str(folder / "t0.flac")])
    assert isinstance(result.exception, NotStoredError) and "not in the store" in str(result.exception)
    # --json answers either way (a file never analysed printed nothing at all)
    unknown = json.loads(runner.invoke(app, ["cache", "show", str(folder / "t0.flac"), "--json"]).stdout)
    assert unknown["stored"] is False and unknown["failure"] is None and "fpcli analyze" in unknown["why"]
    # a failed file with --json: the failure as JSON on stdout too (it printed none)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    runner.invoke(app, ["analyze", str(broken)])
    shown = runner.invoke(app, ["cache", "show", str(broken), "--json"])
    data = json.loads(shown.stdout)
    assert shown.exit_code == 1 and data["stored"] is False and data["failure"]["path"] == str(broken)
    assert data["failure"]["error_type"] and "its analysis failed" in data["why"]


def test_cache_import_rejects_bad_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "record", "data": {"schema": 1}}\nnot json\n')
    result = runner.invoke(app, ["cache", "import", str(bad)])
    assert result.exit_code == EXIT_SOME_FAILED
    assert "line 1: invalid record" in result.stderr and "line 2: not valid JSON" in result.stderr


def test_cache_clear_asks_first(folder):
    runner.invoke(app, ["analyze", str(folder / "t0.flac"), "--quiet"])
    result = runner.invoke(app, ["cache", "clear"], input="n\n")
    # declined: nothing done, no fatal error ("Aborted!", exit 1 before)
    assert result.exit_code == 0 and "nothing removed" in result.stderr and "Aborted" not in result.output
    assert json.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)["entries"] == 1
    # no answer at all (a script's stdin ended): a usage error naming --yes, not "Aborted!", exit 1
    unanswered = runner.invoke(app, ["cache", "clear"], input="")
    assert isinstance(unanswered.exception, ParameterError) and "--yes" in str(unanswered.exception)
    assert "Aborted" not in unanswered.output
    assert json.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)["entries"] == 1


def test_main_turns_fpcli_errors_into_one_line(tmp_path, capsys, monkeypatch):
    from fpcli.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    # Under a file: the store cannot be made (a file named as the store is a usage error, exit 2).
    monkeypatch.setattr(sys, "argv", ["fpcli", "--store", str(blocker / "store"), "cache", "import", "-"])
    header = b'{"type": "fpcli-store-export", "version": 2}\n'   # an export: the store is opened for it
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(header)))
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the store") and "Traceback" not in err


def test_help_texts_keep_their_words():
    """Rich treats [square brackets] as markup and drops them; the help must not lose text."""
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "redis://user:password@host:port/db" in text and "(default: never)" in text
    assert " ." not in text.replace("...", "")


def test_start_up_imports_no_analysis_stack():
    """`fpcli --help`, `--version` and `cache` commands must start fast: the CLI imports
    numpy, scipy and the analyzers only inside the commands that analyse."""
    code = ("import sys, fpcli.cli; heavy = [m for m in ('numpy', 'scipy', 'soundfile', 'fpcli.analyze', "
            "'fpcli.library', 'fpcli.search', 'fpcli.bench', 'av') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_core_never_names_a_command_line_option():
    """Messages of the core name parameters ("weights"); only fpcli/cli/ speaks of
    --flags (docstrings and comments may mention them)."""
    import ast
    import re

    import fpcli

    package = Path(fpcli.__file__).parent
    flag = re.compile(r"(^|[\s`(])--[a-z]")
    found = []
    for path in package.rglob("*.py"):
        if "cli" in path.relative_to(package).parts:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        found += [f"{path.name}:{node.lineno}: {node.value[:60]!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docstrings and flag.search(node.value)]
    assert found == []


def test_a_core_parameter_error_is_shown_with_its_option():
    from fpcli.cli.options import user_message
    from fpcli.errors import DamagedStoreError, ParameterError

    assert user_message(ParameterError("'x=1': 'x' is not a group", "weights")) == "--weights 'x=1': 'x' is not a group"
    assert str(ParameterError("'x=1': 'x' is not a group", "weights")) == "weights: 'x=1': 'x' is not a group"
    assert "cache verify --repair" in user_message(DamagedStoreError("cannot open the store at s", "s"))


@pytest.mark.parametrize("argv", [["cache", "stats"], ["cache", "export", "-"]])
def test_a_damaged_store_sends_the_user_to_the_repair_only(tmp_path, monkeypatch, capsys, argv):
    """The hint named `cache export` "to save what is readable", and `cache export`
    failed with the same hint: it stops at the damage as every other command does."""
    from fpcli.cli import EXIT_FATAL, main

    store = tmp_path / "store"
    new_store(store)
    assert runner.invoke(app, ["--store", str(store), "cache", "stats"]).exit_code == 0  # a new store
    with open(store / "data" / "cache.db", "r+b") as database:
        database.seek(8192)
        database.write(b"\xab" * 4096)
    monkeypatch.setattr(sys, "argv", ["fpcli", "--store", str(store), *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    error = capsys.readouterr().err
    assert exit_info.value.code == EXIT_FATAL and error.startswith("error: cannot open the store at ")
    assert "fpcli cache verify --repair" in error and "`fpcli cache export`" not in error
    repaired = runner.invoke(app, ["--store", str(store), "cache", "verify", "--repair"])
    assert repaired.exit_code == 0, repaired.output


def test_damage_met_while_reading_gets_the_same_hint():
    from fpcli.cli.options import REPAIR_HINT, user_message
    from fpcli.errors import StoreError

    message = user_message(StoreError("the store at s is damaged (database disk image is malformed)",
                                      repairable=True))
    assert message.endswith(REPAIR_HINT) and "`fpcli cache export`" not in message


SEARCH_NEVER_NEEDS = ("scipy", "fpcli.batch", "fpcli.streaming", "fpcli.dsp.pipeline", "fpcli.library", "fpcli.bench")


def test_search_library_api_imports_no_analysis_stack():
    """`from fpcli.search import ...` (load an index, top_k) must not import scipy or the
    analyzers (a cold query paid ~1 s for them)."""
    never = (*SEARCH_NEVER_NEEDS, "fpcli.analyze")
    code = f"import sys, fpcli.search; heavy = [m for m in {never!r} if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_search_from_the_store_imports_no_analysis_stack(tmp_path):
    """`fpcli search` of a stored track against a saved index answers without the
    analyzers or scipy (they load only when the query must be analysed)."""
    for seed in range(3):
        write(tmp_path / f"t{seed}.flac", synth.music_like(4.0, 22050, seed=seed), 22050)
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "analyze", str(tmp_path)]).exit_code == 0
    query = str(tmp_path / "t0.flac")
    assert runner.invoke(app, ["--store", store, "search", query]).exit_code == 0   # builds and saves the index
    code = ("import sys\nfrom fpcli.cli import main\nsys.argv = ['fpcli', '--store', sys.argv[1], 'search', "
            "sys.argv[2], '--json']\ntry:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code\n"
            f"print([m for m in {SEARCH_NEVER_NEEDS!r} if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, store, query], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["stats"]["index"] == "loaded" and len(result["hits"]) == 2
    assert done.stderr.strip().splitlines()[-1] == "[]"


def _modules_loaded_by(argv: list[str], store: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are imported when ``fpcli argv`` runs in a new process with its
    output piped."""
    code = ("import sys\nfrom fpcli.cli import main\nsys.argv = ['fpcli', *sys.argv[1:]]\ntry:\n    main()\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print([m for m in {names!r} if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True,
                          env={**os.environ, "FPCLI_STORE": store})
    return json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))


def test_start_up_imports_only_what_the_command_needs(tmp_path):
    """--version imports no command and no store; --help the commands but neither the
    store nor rich; `cache stats` to a pipe the store but neither rich nor any other command
    (each of these was ~35-80 ms of every start, benchmarks/startup.md)."""
    heavy = ("rich", "numpy", "fpcli.store.core", "fpcli.store.maintenance", "fpcli.cli.analyze_cmd",
             "fpcli.cli.cache_cmd", "fpcli.cli.search_cmd")
    store = str(tmp_path / "store")
    assert _modules_loaded_by(["--version"], store, heavy) == []
    assert _modules_loaded_by(["--store", store, "--version"], store, heavy) == []
    assert set(_modules_loaded_by(["--help"], store, heavy)) == {"fpcli.cli.analyze_cmd", "fpcli.cli.cache_cmd",
                                                                 "fpcli.cli.search_cmd"}
    assert _modules_loaded_by(["cache", "stats"], store, heavy) == ["fpcli.store.core", "fpcli.cli.cache_cmd"]


@pytest.mark.parametrize(("argv", "command"), [
    (["analyze", "x.flac"], "analyze"), (["--store", "analyze", "cache", "list"], "cache"),
    (["--store=/s", "--store-ttl", "5", "search", "q"], "search"), (["--version"], None), (["--help"], None),
    (["cach", "stats"], None), ([], None), (["--", "cache"], None),
])
def test_the_command_a_command_line_names(argv, command):
    assert command_named(argv) == command


def test_constants_the_cli_repeats_for_start_up_time_match_the_core():
    from fpcli import bench, search, validate
    from fpcli.cli import bench_cmd, search_cmd, validate_cmd

    assert search_cmd.STRATEGIES == search.STRATEGIES
    assert validate_cmd.DEFAULT_THRESHOLD == validate.DEFAULT_THRESHOLD
    assert bench_cmd.COMPARE_TOLERANCE == bench.COMPARE_TOLERANCE


def test_shell_completion_is_available():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs a device that is always full (/dev/full)")
@pytest.mark.parametrize("argv", [["cache", "list"], ["cache", "export", "-"], ["cache", "stats", "--json"]])
def test_output_to_a_full_device_is_one_clear_error(folder, tmp_path, argv):
    """stdout on a full disk (here /dev/full): one line saying so and exit 1, no
    traceback and no "Exception ignored" from the interpreter's last flush."""
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "analyze", str(folder / "t0.flac"), "--quiet"]).exit_code == 0
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "fpcli", "--store", store, *argv], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == "error: cannot write the output: No space left on device\n"


def test_an_empty_argument_is_a_usage_error(tmp_path, capsys, monkeypatch):
    """`fpcli analyze "$MUSIC"` with MUSIC unset: "" reads as "." and the command ran
    on the current folder."""
    from fpcli.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fpcli", "--store", str(tmp_path / "s"), "analyze", ""])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument 4 is empty (an unset shell variable?)")
    assert not (tmp_path / "s").exists()
    monkeypatch.setattr(sys, "argv", ["fpcli", "validate", "-l", str(tmp_path), "--partial", ""])
    with pytest.raises(SystemExit):
        main()
    assert capsys.readouterr().err == "error: --partial is given an empty value (an unset shell variable?)\n"
    for argv, said in ((["analyze", "--json", ""], "argument 3 is empty"),   # a flag: the path was empty
                       (["-q", "analyze", ""], "argument 3 is empty"),
                       (["--store", "", "analyze"], "--store is given an empty value"),
                       (["cache", "show", "--json", ""], "argument 4 is empty")):
        monkeypatch.setattr(sys, "argv", ["fpcli", *argv])
        with pytest.raises(SystemExit):
            main()
        assert capsys.readouterr().err.startswith(f"error: {said}"), argv


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_help_lists_every_exit_code_of_the_readme():
    """`fpcli --help` left out 141, 143 and 129, which the README's table has."""
    import re

    table = README.read_text().split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = {code for row in table.splitlines()[2:] for code in re.findall(r"\d+", row.split("|")[1])}
    assert {"0", "130", "141", "143", "129"} <= codes
    shown = " ".join(runner.invoke(app, ["--help"]).stdout.split())
    assert [code for code in sorted(codes) if not re.search(rf"\b{code}\b", shown.split("Exit codes:")[1])] == []


def test_the_no_index_help_gives_the_measured_import_peak():
    """It said "about 4.6 GB at 1,000,000 records"; the README gives the measured peak."""
    import re

    measured = re.search(r"peak RSS [^;]*? and ([\d.]+ GB) at 1,000,000", " ".join(README.read_text().split()))
    assert measured is not None
    shown = " ".join(runner.invoke(app, ["cache", "import", "--help"]).stdout.split())
    assert f"{measured.group(1)} at 1,000,000 records" in shown


def test_a_cached_single_look_up_does_not_import_the_typed_gate(tmp_path):
    """The bulk parses' typed gate (msgspec and its structs, about 15 ms to import) was
    imported by every look-up, a cached `fpcli analyze track.flac` too."""
    track = tmp_path / "t.flac"
    write(track, synth.music_like(3.0, 22050, seed=1), 22050)
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "analyze", str(track)]).exit_code == 0
    loaded = _modules_loaded_by(["analyze", "--json", str(track)], store, ("msgspec", "fpcli.store.fast_schema"))
    assert loaded == []


def test_a_file_named_dash_given_as_a_path_is_that_file(tmp_path, monkeypatch, capsys):
    """``Path("./-")`` is ``Path("-")``: a file named - given as ./- was read as stdin
    (here empty: "the stream was empty", exit 3). Only a bare - is stdin; validate,
    which reads no stream, says so for a bare - instead of failing on a closed stdin
    ("Bad file descriptor, a fault of fpcli")."""
    import numpy as np

    from tests.test_cli_output import _main

    write(tmp_path / "-", 0.1 * np.random.default_rng(5).standard_normal((22050, 2)), 22050, format="WAV")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    assert _main(monkeypatch, "--store", str(tmp_path / "s"), "analyze", "--json", "./-") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["path"] == str(tmp_path / "-") and json.loads(line)["status"] == "ok"
    assert _main(monkeypatch, "--store", str(tmp_path / "s"), "validate", "-l", "-") == 2
    assert "not a stream on stdin" in capsys.readouterr().err


def test_a_root_option_after_the_command_says_where_it_goes(tmp_path, capsys, monkeypatch):
    """`fpcli validate -l gen --store st6` said "No such option: --store (Possible
    options: --json, --no-store)", which sent a newcomer to --no-store."""
    from fpcli.cli import main

    monkeypatch.chdir(tmp_path)
    for argv in (["validate", "-l", ".", "--store", "s"], ["search", "a.wav", "--store=s"],
                 ["cache", "stats", "--store-ttl", "5"]):
        monkeypatch.setattr(sys, "argv", ["fpcli", *argv])
        with pytest.raises(SystemExit) as exit_info:
            main()
        option = argv[-1].split("=")[0] if "=" in argv[-1] else argv[-2]
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == (f"error: {option} is an option of fpcli itself: give it before the "
                                           f"command (fpcli {option} VALUE {argv[0]} ...)\n")
    assert not (tmp_path / "s").exists()
