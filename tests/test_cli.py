"""Every command's happy path and error path through typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import EXIT_SOME_FAILED, app
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS
from tests.conftest import write

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
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["status"] for line in lines] == ["ok", "error"]
    good, bad = lines
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


@pytest.mark.parametrize("command", [[], ["analyze"]])
def test_every_command_has_help_with_examples(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Usage" in result.output
    if command:
        assert "Examples" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("fpcli ")
