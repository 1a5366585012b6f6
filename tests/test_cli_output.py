"""What the command line writes when its streams are not a plain UTF-8 terminal or file:
closed (``>&-``, ``2>&-``), a pipe whose reader left, an encoding that is not UTF-8;
and plain lines in a pipe."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import EXIT_BELOW_THRESHOLD, EXIT_BROKEN_PIPE, EXIT_FATAL, EXIT_SOME_FAILED, EXIT_USAGE, app
from fpcli.cli.render import PIPE_CHUNK, GuardedStream, json_lines_out, json_text, lines_out
from fpcli.files import printable_path
from tests.conftest import new_store, write

runner = CliRunner()


def _main(monkeypatch, *argv: str) -> int:
    """Run the console entry point in this process; its exit code."""
    from fpcli.cli import main

    monkeypatch.setattr(sys, "argv", ["fpcli", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


def _fpcli(tmp_path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    """fpcli in a new process, on a store of its own."""
    if not (tmp_path / "store").exists():
        new_store(tmp_path / "store")
    return subprocess.run([sys.executable, "-m", "fpcli", "--store", str(tmp_path / "store"), *argv],
                          timeout=60, **kwargs)


# -- bug 1: closed streams -----------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["cache", "stats"], ["analyze", "--json", "missing.flac"]])
def test_closed_stdout_is_one_error_line_and_exit_1(tmp_path, monkeypatch, capsys, argv):
    """Was an AttributeError traceback ('NoneType' object has no attribute 'write')."""
    monkeypatch.setattr(sys, "stdout", None)  # what the interpreter gives for `>&-`
    new_store(tmp_path / "s")
    assert _main(monkeypatch, "--store", str(tmp_path / "s"), *argv) == EXIT_FATAL
    assert capsys.readouterr().err == "error: cannot write the output: stdout is closed\n"


def test_closed_stdout_in_a_real_process(tmp_path):
    """`fpcli cache export - >&-`: descriptor 1 closed, one line, exit 1."""
    done = _fpcli(tmp_path, "cache", "export", "-", preexec_fn=lambda: os.close(1), stderr=subprocess.PIPE,
                  text=True)
    assert (done.returncode, done.stderr) == (EXIT_FATAL, "error: cannot write the output: stdout is closed\n")


def test_closed_stderr_drops_diagnostics_and_keeps_the_exit_code(tmp_path, monkeypatch, capsys):
    """Was exit 1 and nothing more (the error line about the missing file crashed)."""
    monkeypatch.setattr(sys, "stderr", None)
    assert _main(monkeypatch, "--store", str(tmp_path / "s"), "analyze", "--json", "missing.flac") \
        == EXIT_SOME_FAILED
    assert json.loads(capsys.readouterr().out)["status"] == "error"


def test_closed_stderr_in_a_real_process(tmp_path):
    done = _fpcli(tmp_path, "analyze", "--json", "missing.flac", preexec_fn=lambda: os.close(2),
                  stdout=subprocess.PIPE, text=True)
    assert done.returncode == EXIT_SOME_FAILED and json.loads(done.stdout)["status"] == "error"


def test_a_guarded_stderr_that_fails_drops_what_follows():
    class Failing(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    stream = GuardedStream(Failing(), results=False)
    assert stream.write("a diagnostic\n") == len("a diagnostic\n")
    stream.flush()
    assert not stream.isatty()


# -- bug 3: a reader that leaves -----------------------------------------------------------------

@pytest.mark.parametrize("argv", [["cache", "stats", "--json"], ["cache", "export", "-"],
                                  ["analyze", "--json", "missing.flac"]])
def test_a_reader_that_left_is_a_quiet_exit_141(tmp_path, argv):
    """`fpcli cache list | head -1`: was exit 1 (click's own handling of EPIPE), or
    "Exception ignored ... BrokenPipeError" and exit 120 from the last flush."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first line
    try:
        done = _fpcli(tmp_path, *argv, stdout=writer, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(writer)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert "error" not in done.stderr and "Exception" not in done.stderr


class _Writes(io.StringIO):
    """A stdout that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_a_listing_that_fits_a_pipe_is_one_write(monkeypatch):
    """`fpcli cache list | head -1` on a small store exited 0 or 141 by chance: each
    line was its own write (flushed per line, or unbuffered under PYTHONUNBUFFERED),
    and a reader that left after the first found the next write's pipe closed."""
    out = _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    json_lines_out({"path": f"/music/{n}.flac", "n": n} for n in range(200))
    assert len(out.writes) == 1
    assert [json.loads(line)["n"] for line in out.getvalue().splitlines()] == list(range(200))


@pytest.mark.parametrize("command", [["cache", "show"], ["analyze"], ["validate", "-l"], ["cache", "stats"]])
def test_a_report_in_a_pipe_is_one_write(tmp_path, monkeypatch, command):
    """`fpcli cache show X | head -1` (1,241 bytes) exited 0 or 141 by chance, as did a
    single track's `analyze` and a `validate` report: each line, or each part, was its
    own write under an unbuffered stdout."""
    song = write(tmp_path / "a.flac", synth.music_like(3.0, 22050, seed=1, bpm=110), 22050)
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "analyze", str(song)]).exit_code == 0
    out = _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    assert _main(monkeypatch, "--store", store, *command, *([] if command[-1] == "stats" else [str(song)])) == 0
    assert len(out.writes) == 1 and out.getvalue().count("\n") > 8


def test_a_long_listing_is_written_in_chunks_of_a_pipes_buffer(monkeypatch):
    out = _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    lines = [f"{n:09d}\t" + "x" * 90 + "\n" for n in range(3000)]   # 300,000 characters
    lines_out(iter(lines))
    assert out.getvalue() == "".join(lines)
    assert 300_000 // (PIPE_CHUNK + 100) <= len(out.writes) <= 300_000 // PIPE_CHUNK + 1
    assert all(len(chunk) < PIPE_CHUNK + 100 for chunk in out.writes)


# -- bug 2: an output encoding that is not UTF-8 -------------------------------------------------

def test_json_on_a_stdout_that_is_not_utf8_is_ascii(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    text = json_text({"path": "Canci\u00f3n \udcff.flac"})
    assert text == '{"path": "Canci\\u00f3n \\udcff.flac"}'
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert json_text({"path": "Canci\u00f3n \udcff.flac"}) == '{"path": "Canci\u00f3n \\udcff.flac"}'


def test_an_ascii_stdout_gets_json_and_text_it_can_hold(tmp_path):
    """Was a UnicodeEncodeError for a non-ASCII path in JSON and for the em-dash of a
    missing value (the hit rate of a new store) in text."""
    ascii_env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = _fpcli(tmp_path, "analyze", "--json", "Canci\u00f3n.flac", capture_output=True, env=ascii_env)
    assert done.returncode == EXIT_SOME_FAILED, done.stderr
    assert json.loads(done.stdout.decode("ascii"))["path"] == "Canci\u00f3n.flac"
    done = _fpcli(tmp_path, "cache", "stats", capture_output=True, env=ascii_env)
    assert done.returncode == 0, done.stderr
    assert "hit rate: - (0 hits, 0 misses)" in done.stdout.decode("ascii")


def test_printable_text_under_a_file_system_encoding_without_the_character(monkeypatch):
    """Under a Latin-1 locale os.fsencode cannot hold the em-dash of a table cell: was a
    UnicodeEncodeError in every table of a pipe."""
    monkeypatch.setattr(os, "fsencode", lambda text: text.encode("latin-1", "surrogateescape"))
    assert printable_path("\u2014") == "\u2014"
    assert printable_path("a\udcffb \u2014") == "a\\xffb \u2014"
    assert printable_path("\ud800") == "\\ud800"


# -- bug 4: plain lines in a pipe ----------------------------------------------------------------

def test_validate_in_a_pipe_prints_plain_tab_separated_lines(tmp_path):
    """Was rich's box-drawn table, padded with trailing spaces."""
    write(tmp_path / "a.flac", synth.music_like(3.0, 22050, seed=1, bpm=110), 22050)
    result = runner.invoke(app, ["validate", "-l", str(tmp_path / "a.flac")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Streaming vs batch, per metric", "metric\terror\ttol\tmean err\tmax err\tpass\tn"]
    assert lines[2].startswith("tempo_bpm") and lines[2].count("\t") == 6
    assert lines[15].startswith("tracks 1: valid 1")
    assert all(line == line.rstrip() and not set(line) & set("│┃━┏└") for line in lines)


def test_validate_partial_table_in_a_pipe(capsys):
    from fpcli.cli.validate_cmd import render_partial

    buckets = {"tempo_bpm": [{"confidence": "0.0-0.5", "mean_error": None, "samples": 0},
                             {"confidence": "0.5-1.0", "mean_error": 0.25, "samples": 3}],
               # both sides null in 2 samples: --json says pass_rate 1.0; the table showed an empty "—"
               "pitch_stability": [{"confidence": "0.0-0.5", "mean_error": None, "samples": 2, "pass_rate": 1.0},
                                   {"confidence": "0.5-1.0", "mean_error": None, "samples": 0, "pass_rate": None}]}
    render_partial({"seconds": [2.0], "tracks": 3, "buckets": buckets,
                    "monotone": {"tempo_bpm": False, "pitch_stability": True}}, None)
    assert capsys.readouterr().out.splitlines()[1:] == ["metric\t0.0-0.5\t0.5-1.0\tmonotone",
                                                        "tempo_bpm\t—\t0.25 (3)\tno",
                                                        "pitch_stability\tnull (2, 100 % pass)\t—\tyes"]


def test_null_reasons_are_not_wrapped_in_a_pipe(tmp_path):
    """A silent track's null reasons were cut into 80-column pieces."""
    silent = write(tmp_path / "silent.wav", np.zeros((22050 * 4, 2)), 22050)
    result = runner.invoke(app, ["analyze", silent])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  streaming loudness_range_lu (LU) is null: fewer than two 3 s short-term blocks pass the gates" in lines
    assert all(" is null: " in line for line in lines if line.startswith("  "))


# -- bug 5: validate with nothing to compare, and --tolerance limits -----------------------------

def test_validate_an_empty_folder_says_so(tmp_path):
    """Was exit 0 with a table of dashes."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["validate", "-l", str(empty)])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == f"warning: no audio file found under {empty}\n"
    gated = runner.invoke(app, ["validate", "-l", str(empty), "--fail-under", "0.5"])
    assert gated.exit_code == EXIT_BELOW_THRESHOLD and gated.stdout == ""
    assert "no track could be validated (no audio file found)" in gated.stderr


@pytest.mark.parametrize("limit", ["inf", "nan", "-inf", "1e999"])
def test_a_tolerance_must_be_a_finite_number(tmp_path, limit):
    """inf crashed writing --json ("Out of range float values are not JSON compliant");
    nan was refused as "must be >= 0"."""
    result = runner.invoke(app, ["validate", "-l", str(tmp_path), "--json", "--tolerance", f"tempo_bpm={limit}"])
    assert result.exit_code == EXIT_USAGE
    assert "is not a finite number" in result.stderr and "Traceback" not in result.output


# -- marks of a partial result in a pipe ---------------------------------------------------------

def test_a_preview_in_a_pipe_says_it_is_one(tmp_path):
    """The pipe's heading was the path and the track's length alone: a preview read as
    a whole-track result (the terminal's table title said "preview")."""
    song = write(tmp_path / "song.flac", synth.music_like(3.0, 22050, seed=2), 22050)
    for argv in (["analyze", song, "--seconds", "1"], ["cache", "show", song]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1] == "preview: the first 1.0 s only", argv


def test_a_damaged_file_in_a_pipe_says_why_it_is_partial(tmp_path):
    """A truncated Ogg file's heading had no "partial" and no reason in a pipe."""
    write(tmp_path / "whole.ogg", synth.music_like(4.0, 22050, seed=3), 22050, format="OGG",
                  subtype="VORBIS")
    data = (tmp_path / "whole.ogg").read_bytes()
    (tmp_path / "cut.ogg").write_bytes(data[:len(data) // 2])
    result = runner.invoke(app, ["analyze", str(tmp_path / "cut.ogg")])
    assert result.exit_code == 0, result.output
    heading, mark = result.stdout.splitlines()[:2]
    assert heading.startswith(f"{tmp_path / 'cut.ogg'}  (") and "OGG/VORBIS" in heading
    assert mark.startswith("partial: ") and "truncated" in mark
    # cache list said "full" for it, with no reason in its JSON, where analyze says partial
    listed = runner.invoke(app, ["cache", "list"]).stdout.split("\t")
    assert listed[5] == "partial"
    (item,) = [json.loads(line) for line in runner.invoke(app, ["cache", "list", "--json"]).stdout.splitlines()]
    assert item["partial"] and "truncated" in item["partial_reason"]


def test_the_terminal_and_the_pipe_share_the_heading(tmp_path, private_store):
    """Both branches of render_track print the same lines above the dims."""
    from rich.console import Console

    from fpcli.cli.tracks import render_track
    from fpcli.params import AnalysisParams
    from fpcli.store import FingerprintStore

    song = write(tmp_path / "song.flac", synth.music_like(3.0, 22050, seed=2), 22050)
    assert runner.invoke(app, ["analyze", song, "--seconds", "1", "--quiet"]).exit_code == 0
    with FingerprintStore.open(str(private_store)) as store:
        record = store.record_for_path(song, AnalysisParams().key())
    screens = []
    for terminal in (True, False):
        out = Console(file=io.StringIO(), force_terminal=terminal, color_system=None, width=200)
        render_track(record.to_result(song), out)
        screens.append(out.file.getvalue())
    heading = [f"{song}  (3.0 s, 22050 Hz, 2 ch, FLAC/PCM_16, from the store)", "preview: the first 1.0 s only"]
    assert screens[1].splitlines()[:2] == heading
    squeezed = "".join(screens[0].split())  # the table's title wraps at the table's width
    assert squeezed.startswith("".join("".join(heading).split()))


def test_a_track_table_in_a_pipe_is_tab_separated(tmp_path):
    """The rows went through rich, which expanded each tab to spaces: empty cells (a dim
    with a batch value only) collapsed and the columns could not be split."""
    track = write(tmp_path / "t.flac", synth.music_like(3.0, 22050, seed=1), 22050)
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "analyze", "--batch", str(track)])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:] if "\t" in line]
    assert len(rows) == 25 and {len(row) for row in rows} == {6}
    assert [row[1] for row in rows if row[0] == "frequency"][0] == "band_sub_bass"



def _terminal(monkeypatch, width: int) -> io.StringIO:
    """stdout as a terminal of ``width`` columns, for ``render``'s tables: what it shows."""
    from rich.console import Console

    from fpcli.cli import render

    screen = io.StringIO()
    monkeypatch.setattr(render, "stdout", lambda: Console(file=screen, width=width, force_terminal=True,
                                                          color_system=None, highlight=False))
    monkeypatch.setattr(render, "is_terminal", lambda stream: True)
    monkeypatch.setattr(sys, "stdout", screen)
    return screen


@pytest.mark.parametrize("width", [200, 90, 60, 20])
def test_a_table_on_a_terminal_never_cuts_a_cell(monkeypatch, width):
    """Rich's default cut every path to "/tmp/sw…" at 80 columns and left every cell
    empty at 20; the widest column now folds, the others wrap between words, and a
    terminal too narrow for that gets plain lines under the title and column names."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, width)
    path = "/music/a rather long folder name/and an even longer album name (deluxe)/07 - track.flac"
    render.rows_out("1 path(s)", ["path", "duration", "rate/ch", "tempo", "heard", "validation", "analysed"],
                    [[path, "65.0 s", "44100/2", "123.5", "preview 30 s", "DecodeError", "2026-11-27 04:33"]])
    text = screen.getvalue()
    assert "…" not in text and "DecodeError" in text
    flat = "".join(line.split("│")[1].strip() if "│" in line else "" for line in text.splitlines())
    assert path.replace(" ", "") in (flat.replace(" ", "") if "┃" in text else text.replace(" ", ""))
    assert ("┃" in text) == (width >= 90)


def test_a_path_folds_before_a_longer_message(monkeypatch):
    """`cache failures` folded a path at 24 characters, mid-name ("bad_heade" / "r.wav"),
    because its message was the widest cell. The path column folds; a message wraps
    between words."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, 100)
    path = "/tmp/music/fl/bad_header.wav"
    render.rows_out("1 failure(s)", ["path", "error", "message", "when"],
                    [[path, "AudioReadError", "not a decodable audio file (Error in WAV file. No 'data' chunk "
                      "marker.)", "2026-11-27 23:57"]])
    assert path in screen.getvalue()   # on one line


def test_a_table_as_wide_as_the_terminal_keeps_its_last_column(monkeypatch):
    """At 80 columns `cache failures` cut its "when" column at the screen's edge: rich
    gave the folding path column more than the room the others left."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, 80)
    message = "not a decodable audio file (the file exists but is not audio)"
    render.rows_out("2 failure(s)", ["path", "error", "message", "when"],
                    [["/music/fl/a very long file name of a broken track by a band.mp3", "AudioReadError", message,
                      "2026-11-28 01:50"],
                     ["/music/fl/a.flac", "AudioReadError", message, "2026-11-28 01:50"]])
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert sum("2026-11-28 01:50" in line for line in lines) == 2 and all(line.endswith(("┓", "┃", "┩", "│", "┘"))
                                                                           for line in lines[1:])


@pytest.mark.parametrize("width", [120, 80, 70, 50])
def test_a_table_without_paths_splits_no_name_or_number(monkeypatch, width):
    """`fpcli bench` at 80 columns folded its figure names ("analysis.streami" / "ng_x",
    read as another name); validate's tables folded numbers ("0.031" / "6" for 0.0316).
    Without a path column nothing folds: cells wrap between words, or plain lines."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, width)
    rows = [["analysis.streaming_x_real_time", "312.4", "x", "absolute", ">= 300", "ok"],
            ["cache.lookup_p50_ms", "0.108", "ms", "absolute", "", ""]]
    render.rows_out("fpcli bench", ["figure", "value", "unit", "kind", "threshold", "check"], rows)
    text = screen.getvalue()
    assert "analysis.streaming_x_real_time" in text and "cache.lookup_p50_ms" in text
    assert ("┃" in text) == (width >= 80)
    if "┃" in text:
        assert max(len(line) for line in text.splitlines()) <= width
    else:   # plain lines: the terminal wraps them, each cell whole
        assert "analysis.streaming_x_real_time\t312.4\tx\tabsolute\t>= 300\tok" in text


def test_validate_tables_on_a_narrow_terminal_keep_numbers_whole(monkeypatch):
    from rich.console import Console

    from fpcli.cli import render, validate_cmd

    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    rows = [[("spectral_flatness", ""), ("0.0316 (18)", ""), ("0.00093 (40)", ""), ("2.22e-16 (7)", ""),
             ("no", "red")]]
    narrow = Console(file=screen, width=60, force_terminal=True, color_system=None)
    validate_cmd._table("Error by streaming confidence", ["metric", "0.0-0.2", "0.2-0.4", "1.0 (complete)",
                                                           "monotone"], rows, narrow)
    assert screen.getvalue().splitlines()[2] == "spectral_flatness\t0.0316 (18)\t0.00093 (40)\t2.22e-16 (7)\tno"
    assert render.table_layout(["metric", "monotone"], [["spectral_flatness", "yes"]], 60) is not None


def test_a_message_column_folds_into_the_room_left(monkeypatch):
    """`cache verify`'s one-column table of problems was drawn as narrow as its longest
    word (61 of 120 columns, the message on 4 lines): a column of text folds into the
    room the others leave, as a path does."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, 120)
    problem = ("rec:0123456789abcdef0123456789abcdef:v5-c0289f7687b4f0d9: not valid JSON (Expecting ',' "
               "delimiter: line 1 column 41 (char 40)); the entry is skipped, and the next save replaces it")
    render.rows_out("1 problem(s)", ["problem"], [[problem]])
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) > 100 and len(lines) <= 7, lines


def test_a_key_beside_a_path_is_never_split(monkeypatch):
    """Beside a path, other columns were capped at 24 characters and a record key
    folded mid-name ("rec:0123456789abcdef0123" / "456789abcdef:v5-...")."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, 120)
    key = "rec:0123456789abcdef0123456789abcdef:v5-c0289f7687b4f0d9"
    render.rows_out("1 entry", ["path", "key", "when"], [["/music/a/b/c.flac", key, "2026-11-28 04:50"]])
    assert key in screen.getvalue()


def test_a_wide_character_name_is_measured_in_terminal_cells(monkeypatch):
    """A name of CJK characters (two cells each) beside a path was measured by its
    length and folded mid-name ("東京事" / "変の曲" / "名")."""
    from fpcli.cli import render

    assert render.table_layout(["n", "x"], [["東京事変の曲名", "1"]], 32) == [(14, 14), (1, 1)]


@pytest.mark.parametrize("width", [150, 160, 170])
def test_paths_are_held_whole_where_wrapping_a_message_makes_room(monkeypatch, width):
    """`cache failures` at 130-150 columns kept each message on one line and folded the
    paths into 12-22 characters (4-5 lines a row), where they fit whole at 120 and 160."""
    from fpcli.cli import render

    screen = _terminal(monkeypatch, width)
    path = "/tmp/fpcli-library/broken/bad_header.wav"
    message = "not a decodable audio file (the file exists but is not audio: No 'data' chunk marker found)"
    render.rows_out("1 failure(s)", ["path", "error", "message", "when"],
                    [[path, "AudioReadError", message, "2026-11-28 01:50"]])
    assert path in screen.getvalue()
    assert max(len(line) for line in screen.getvalue().splitlines()) <= width


def test_a_clean_verify_draws_no_empty_table_and_says_what_it_counted(monkeypatch, tmp_path):
    """On a terminal a clean `cache verify` drew an empty table titled "0 problem(s)", and
    its "checked 82 entries" read as another count than stats' "entries: 25"."""
    from typer.testing import CliRunner

    from fpcli.cli import app, render
    from fpcli.store import FingerprintStore

    FingerprintStore.open(tmp_path / "s").close()
    screen = _terminal(monkeypatch, 100)
    monkeypatch.setattr(render, "is_terminal", lambda stream: True)
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "cache", "verify"])
    assert result.exit_code == 0 and screen.getvalue() == ""
    assert "checked 0 store entries (records, their path and candidate entries, failures): 0 problem(s)" \
        in result.stderr


@pytest.mark.parametrize("width", [130, 150, 170])
def test_a_long_path_gets_room_where_wrapping_a_message_makes_it(width):
    """A path too long to hold whole was folded into 16 characters at 150 columns (the
    message kept whole); a 100-character one into a 9-wide message's 13-line rows."""
    from fpcli.cli import render

    message = "not a decodable audio file (the file exists but is not audio: No 'data' chunk marker found)"
    for path in ("/m/" + "x" * 97, "/m/" + "x" * 157):
        layout = render.table_layout(["path", "error", "message", "when"],
                                     [[path, "AudioReadError", message, "2026-11-28 01:50"]], width)
        assert layout is not None and layout[0][1] >= 48 and layout[2][0] >= 24, layout   # FOLDED_COLUMN_ROOM


@pytest.mark.parametrize("width", [95, 100, 110])
def test_a_message_is_not_wrapped_at_its_longest_word_where_a_wider_column_fits(width):
    """At 95-114 columns the tightest layout was taken for a long path: its message
    column 9 characters wide (11-line rows) where one of 24 fit, as before."""
    from fpcli.cli import render

    message = "not a decodable audio file (the file exists but is not audio: No 'data' chunk marker found)"
    layout = render.table_layout(["path", "error", "message", "when"],
                                 [["/m/" + "x" * 97, "AudioReadError", message, "2026-11-28 01:50"]], width)
    assert layout is not None and layout[2][0] == 24 and layout[3][0] == 16, layout
