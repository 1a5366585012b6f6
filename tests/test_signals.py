"""SIGTERM and SIGHUP stop a run as Ctrl-C does: finished tracks stored, workers
stopped, an exit code that names the signal (128 + its number)."""

import json
import os
import signal
import subprocess
import time

import pytest

from fpcli.store import FingerprintStore, verify
from tests.test_library import _cli, _json_lines, make_library


def _group_gone(pgid: int, wait_s: float = 15.0) -> bool:
    """Whether every process of the run's session (its workers too) has ended."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_termination_signal_stops_the_run_and_its_workers(tmp_path, sig):
    """The default action ended the command at once: exit 143 with nothing said, and its
    workers, reparented, went on analysing files whose results nobody stored."""
    library = make_library(tmp_path / "lib", tracks=12, seconds=8.0)
    store = tmp_path / "s"
    # The command inherits its signal dispositions, and keeps an ignored SIGHUP ignored (as
    # under nohup, on purpose): a test run started with nohup must not hand it on.
    inherited = signal.signal(sig, signal.SIG_DFL)
    try:
        process = subprocess.Popen(_cli("analyze", library, "--json", "--jobs", "2", store=store),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(sig, inherited)
    done = []
    for line in process.stdout:
        done.append(json.loads(line))
        if len(done) >= 3:
            break
    process.send_signal(sig)                 # to the command alone, as `kill` or a supervisor sends it
    rest, errors = process.communicate(timeout=60)
    done += _json_lines(rest)
    assert process.returncode == 128 + sig and "interrupted" in errors
    assert _group_gone(process.pid)          # no worker outlives the command
    with FingerprintStore.open(store) as s:
        stored = {seen.path for r in s.records() for seen in r.paths}
        assert verify(s) == []
    assert {os.path.realpath(r["path"]) for r in done if r["status"] != "error"} <= stored


def test_a_locale_that_is_not_utf8_runs_again_in_utf8_mode(monkeypatch):
    """Under a Latin-1 locale paths were decoded as Latin-1, so the store knew one file
    by two names across locales (cache prune dropped the records of files that exist).
    fpcli runs itself again in Python's UTF-8 mode, keeping the terminal's encoding."""
    import sys

    import fpcli.cli as cli

    calls = []
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "iso8859-1")
    monkeypatch.setattr(sys, "argv", ["fpcli", "cache", "prune"])
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    monkeypatch.setattr(os, "execve", lambda path, args, env: calls.append((path, args, env)))
    cli._rerun_in_utf8_mode()
    ((path, args, env),) = calls
    assert args == [sys.executable, "-X", "utf8", "-m", "fpcli", "cache", "prune"] and env["PYTHONIOENCODING"]
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "utf-8")
    cli._rerun_in_utf8_mode()
    assert len(calls) == 1                   # a UTF-8 file system: no second run


def test_a_termination_signal_ends_a_stream_that_stalls(tmp_path):
    """`analyze -` waiting on a stream that sends nothing more: SIGTERM ends it at once,
    as Ctrl-C does (it went through the stream's own interrupt handling)."""
    import io

    import soundfile as sf

    from fpcli import synth

    flac = io.BytesIO()
    sf.write(flac, synth.music_like(3.0, 22050, seed=1), 22050, format="FLAC")
    process = subprocess.Popen(_cli("analyze", "-", "--name", "radio", store=tmp_path / "s"),
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    process.stdin.write(flac.getvalue())
    process.stdin.flush()                    # ... and the stream stalls: stdin stays open
    time.sleep(1.0)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode == 143 and time.monotonic() - sent < 5.0
    assert b"Traceback" not in process.stderr.read()
    process.stdin.close()


def test_an_interrupt_no_command_caught_is_said():
    """`cache import`, `cache verify` and `search` interrupted exited 130 with nothing on
    stderr: Typer turned the KeyboardInterrupt into a silent exit. A command that caught
    it (analyze) says so itself, and is not said twice."""
    import sys

    import typer

    import fpcli.cli as cli

    def exit_after(handled: bool) -> SystemExit:
        try:
            try:
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt as interrupt:
                    if handled:
                        raise typer.Exit(130) from None     # as analyze does, after its own line
                    raise typer.Exit(130) from interrupt    # as Typer does with one no command caught
            except typer.Exit as exc:
                sys.exit(exc.exit_code)
        except SystemExit as exc:
            return exc
        raise AssertionError("no exit")

    assert cli._unhandled_interrupt(exit_after(handled=False))
    assert not cli._unhandled_interrupt(exit_after(handled=True))


def test_a_termination_signal_during_start_up_exits_as_that_signal(monkeypatch, capsys):
    """A SIGTERM in the first fraction of a second, once fpcli's handler was set but
    before the command's own code ran, escaped as an unhandled KeyboardInterrupt: the
    interpreter then ended the process as killed by SIGINT (130), not 143."""
    import sys

    import fpcli.cli as cli
    import fpcli.memory

    def terminated_meanwhile() -> None:
        cli._stopped_by.append(signal.SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["fpcli", "--version"])
    monkeypatch.setattr(fpcli.memory, "keep_buffers_on_heap", terminated_meanwhile)
    monkeypatch.setattr(cli, "_rerun_in_utf8_mode", lambda: None)
    monkeypatch.setattr(cli, "_stop_gracefully_on", lambda *signals: None)
    monkeypatch.setattr(cli, "_stopped_by", [])
    try:
        cli.main()
        code: object = "no exit"
    except SystemExit as stopped:
        code = stopped.code
    except KeyboardInterrupt:   # escaped: the interpreter would end the process as SIGINT's
        code = "escaped"
    assert code == 128 + signal.SIGTERM
    assert "interrupted" in capsys.readouterr().err
