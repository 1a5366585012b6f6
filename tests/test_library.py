"""Library runs: scanning, incremental analysis, failures, workers, interruption."""

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fpcli import synth
from fpcli.analyze import analyse, preload
from fpcli.executors.local import UNDELIVERED_RETRIES, Task, WorkerPool
from fpcli.library import RunOptions, dispatch_order, run_library
from fpcli.scan import scan
from fpcli.store import Failure, FileIdentity, FingerprintStore, verify
from tests.conftest import write

SR = 22050


def make_library(root, tracks=6, seconds=2.0):
    """Good tracks in two folders, plus one file of each broken kind."""
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    (root / "broken").mkdir()
    for i in range(tracks):
        folder = root / ("a" if i % 2 else "b/deep")
        write(folder / f"t{i}.flac", synth.music_like(seconds, SR, seed=i, bpm=90 + 10 * i), SR)
    (root / "a" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (root / "broken" / "empty.flac").write_bytes(b"")
    (root / "broken" / "text.flac").write_text("plain text\n" * 50)
    good = open(root / "a" / "t1.flac", "rb").read()
    (root / "broken" / "cut_header.flac").write_bytes(good[:30])
    (root / "broken" / "truncated.flac").write_bytes(good[: len(good) // 2])
    wav = bytearray(open(write(root / "broken" / "x.wav", synth.sine(440, 1.0, SR), SR), "rb").read())
    wav[12:16] = b"xxxx"
    (root / "broken" / "x.wav").write_bytes(bytes(wav))
    return root


@pytest.fixture
def library(tmp_path):
    return make_library(tmp_path / "lib")


def test_scan_finds_audio_by_extension_and_survives_loops(library, tmp_path):
    os.symlink(library / "a", library / "b" / "loop")          # a folder reached twice
    os.symlink(library, library / "a" / "up")                  # a real loop
    os.mkfifo(library / "a" / "pipe.wav")
    found = scan([library, tmp_path / "missing"])
    files, problems = found.files, found.problems
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted(["t0.flac", "t1.flac", "t2.flac", "t3.flac", "t4.flac", "t5.flac", "empty.flac",
                            "text.flac", "cut_header.flac", "truncated.flac", "x.wav"])
    messages = " ".join(p.message for p in problems)
    assert "no such file or folder" in messages and "is a FIFO (a pipe), not an audio file" in messages
    assert len(problems) == 2 and found.skipped_folders == {"already scanned": 1, "symlink loop": 1}


def test_run_records_failures_and_skips_them_next_time(library, tmp_path):
    events = []
    with FingerprintStore.open(tmp_path / "s") as store:
        first = run_library([library], store, RunOptions(jobs=2), lambda k, p: events.append((k, p)))
        assert (first.analysed, first.failed, first.cached) == (7, 4, 0)  # truncated.flac is partial, not failed
        failures = {os.path.basename(f.path) for f in store.failures()}
        assert failures == {"empty.flac", "text.flac", "cut_header.flac", "x.wav"}
        second = run_library([library], store, RunOptions(jobs=2))
        assert (second.analysed, second.cached, second.failed, second.skipped) == (0, 7, 4, 4)
        retry = run_library([library], store, RunOptions(jobs=2, retry_failed=True))
        assert (retry.cached, retry.failed) == (7, 4)
        assert verify(store) == []
    statuses = {os.path.basename(p.path): p.status for k, p in events if k == "track"}
    assert statuses["truncated.flac"] == "partial"


def test_changed_file_is_reanalysed_and_force_recomputes(library, tmp_path):
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([library / "a"], store, RunOptions(jobs=1))
        write(library / "a" / "t1.flac", synth.music_like(2.0, SR, seed=99), SR)
        again = run_library([library / "a"], store, RunOptions(jobs=1))
        assert (again.analysed, again.cached) == (1, 2)
        forced = run_library([library / "a"], store, RunOptions(jobs=1, force=True))
        assert (forced.analysed, forced.cached) == (3, 0)


def test_batch_option_adds_batch_values_to_cached_records(library, tmp_path):
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([library / "a"], store, RunOptions(jobs=1))
        with_batch = run_library([library / "a"], store, RunOptions(jobs=1, batch=True))
        assert with_batch.analysed == 3
        assert all(r.batch is not None for r in store.records())
        assert run_library([library / "a"], store, RunOptions(jobs=1, batch=True)).cached == 3


def test_worker_crash_costs_one_file(tmp_path):
    long_track = write(tmp_path / "long.wav", synth.sine(440, 300.0, 44100, channels=2), 44100)
    short = [write(tmp_path / f"s{i}.wav", synth.sine(440, 1.0, SR), SR) for i in range(2)]
    with WorkerPool(1, timeout_s=60, warm_up=preload) as pool:
        def kill_the_worker_holding_the_long_track():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and pool._workers[0].path != long_track:
                time.sleep(0.005)
            os.kill(pool._workers[0].process.pid, signal.SIGKILL)
        killer = threading.Thread(target=kill_the_worker_holding_the_long_track)
        killer.start()
        results = dict((task.label, outcome) for task, outcome in pool.run(_tasks([long_track, *short])))
        killer.join()
    assert results[long_track] == ("WorkerCrashed", "the analysis process died of SIGKILL (out of memory, or killed "
                                                    "from outside)")
    assert all(results[p].status == "ok" for p in short)


def test_a_fault_in_a_task_costs_that_task_and_keeps_the_worker():
    """An exception in a worker's call (a fault of fpcli's: bad input comes back as a
    failed result) is that task's outcome, as for a crash, with the type, message and
    place; the worker is not replaced and no traceback is printed by it."""
    tasks = [Task("pid", functools.partial(os.getpid)), Task("fault", functools.partial(_faulty, 3)),
             Task("pid again", functools.partial(os.getpid))]
    with WorkerPool(1, timeout_s=60) as pool:
        results = dict((task.label, outcome) for task, outcome in pool.run(tasks))
    kind, message = results["fault"]
    assert kind == "InternalError"
    assert message.startswith("ValueError: three is too many (at test_library.py:") and "please report" in message
    assert results["pid"] == results["pid again"]


def _faulty(n):
    raise ValueError("three is too many")


def test_a_worker_killed_while_idle_costs_no_task():
    """A worker killed between tasks (the OOM killer): handing it the next task fails
    to send (this used to raise out of the pool and stop the whole run, then to cost
    that task). The task never started, so a fresh worker runs it."""
    tasks = [Task("first", functools.partial(os.getpid)), Task("second", functools.partial(os.getpid))]
    with WorkerPool(1, timeout_s=60) as pool:
        idle = pool._workers[0].process
        os.kill(idle.pid, signal.SIGKILL)
        idle.join(timeout=10)
        results = dict((task.label, outcome) for task, outcome in pool.run(tasks))
    assert isinstance(results["first"], int) and results["first"] != idle.pid
    assert results["second"] == results["first"]


def test_workers_that_keep_dying_before_a_task_cost_that_task_only(monkeypatch):
    """The hand-over is retried a bounded number of times: when every new worker is
    dead before it gets its task too, the task is reported as a crash and the run
    goes on instead of looping."""
    spawned = []
    real_spawn = WorkerPool._spawn

    def spawn_then_kill(pool):
        worker = real_spawn(pool)
        worker.wait_ready()
        spawned.append(worker)
        if len(spawned) > 1:
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(timeout=10)
        worker.wait_ready = lambda timeout_s=120.0: None  # already read its "ready"
        return worker

    monkeypatch.setattr(WorkerPool, "_spawn", spawn_then_kill)
    with WorkerPool(1, timeout_s=60) as pool:
        first = pool._workers[0].process
        os.kill(first.pid, signal.SIGKILL)
        first.join(timeout=10)
        outcomes = [outcome for _, outcome in pool.run([Task("doomed", functools.partial(os.getpid))])]
    assert [kind for kind, _ in outcomes] == ["WorkerCrashed"]
    assert len(spawned) == 1 + UNDELIVERED_RETRIES + 1  # the first, the retries, the crash's replacement


def test_timeout_costs_one_file(tmp_path):
    long_track = write(tmp_path / "long.wav", synth.sine(440, 300.0, 44100, channels=2), 44100)
    short = write(tmp_path / "short.wav", synth.sine(440, 1.0, SR), SR)
    with WorkerPool(2, timeout_s=0.5, warm_up=preload) as pool:
        results = dict((task.label, outcome) for task, outcome in pool.run(_tasks([long_track, short])))
    assert results[long_track][0] == "Timeout"
    assert results[short].status == "ok"


def test_a_timeout_is_tried_again_under_a_longer_limit_only(tmp_path, capsys):
    """One run's --timeout (or a machine busy with other work) marked the file as
    failed for good: a later run allowing far more time skipped it, quoting the old
    limit, and validate counted it as a file that failed to decode."""
    from typer.testing import CliRunner

    from fpcli.cli import app
    from fpcli.cli.tracks import Reporter
    from fpcli.validate import validate_library

    long_track = write(tmp_path / "long.wav", synth.sine(440, 300.0, 44100, channels=2), 44100)
    with FingerprintStore.open(tmp_path / "store") as store:
        def run(limit_s):
            events = []
            run_library([long_track], store, RunOptions(timeout_s=limit_s),
                        lambda kind, payload: events.append(payload) if kind == "track" else None)
            (result,) = events
            return result

        first = run(0.5)
        assert first.error_type == "Timeout" and not first.cached
        (failure,) = store.failures()
        assert failure.limit_s == 0.5
        again = run(0.5)                                  # the same limit: skipped, as a broken file is
        assert again.error_type == "Timeout" and again.cached
        # and said so: neither "skipped until the file changes" nor "--retry-failed" alone
        shown = CliRunner().invoke(app, ["--store", str(tmp_path / "store"), "cache", "show", long_track])
        assert "skips it under a --timeout of 0.5 s or less and tries it under a longer one" in str(shown.exception)
        with Reporter(as_json=False, quiet=False) as reporter:
            reporter.event("track", again)
        assert "a longer --timeout or fpcli analyze --retry-failed retries" in capsys.readouterr().err
        assert run(600.0).status == "ok"                  # a longer one tries it again
        assert list(store.failures()) == []
    with FingerprintStore.open(tmp_path / "store2") as other:
        report = validate_library([long_track], other, RunOptions(timeout_s=0.5))
    assert [t.status for t in report.tracks] == ["timed_out"]
    assert report.summary()["timed_out"] == 1 and report.summary()["failed_to_decode"] == 0 and report.failed == 1


def test_a_fault_of_fpcli_is_tried_again_by_the_next_run(tmp_path):
    """A fault of fpcli's (``--seconds 1e308`` once overflowed) was recorded as the
    file's failure, and every later run skipped the file as broken, even with the
    fault fixed. It says nothing of the file: the next run analyses it."""
    song = write(tmp_path / "song.wav", synth.music_like(2.0, 22050, seed=2), 22050)
    st = os.stat(song)
    with FingerprintStore.open(tmp_path / "store") as store:
        store.import_failures([Failure(song, "InternalError", "OverflowError: cannot convert float infinity to "
                                       "integer (a fault of fpcli: please report it)", st.st_size, st.st_mtime_ns,
                                       time.time())])
        events = []
        run_library([song], store, RunOptions(), lambda kind, payload: events.append(payload) if kind == "track"
                    else None)
        assert [(r.status, r.cached) for r in events] == [("ok", False)] and list(store.failures()) == []


def _tasks(paths):
    return [Task(p, functools.partial(analyse, p)) for p in paths]


def _cli(*args, store):
    return [sys.executable, "-m", "fpcli", "--store", str(store), *map(str, args)]


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _as_on_a_terminal():
    """In the child: SIGINT as a terminal delivers it. A runner started in the background
    by a non-interactive shell ignores SIGINT, and an ignored signal stays ignored
    across exec: fpcli would never see the Ctrl-C (exit 3 instead of 130)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_after(library, store, n_results, *, sig):
    """Start a library run, wait for n results on stdout, send sig to the whole group."""
    process = subprocess.Popen(_cli("analyze", library, "--json", "--jobs", "2", store=store),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True, preexec_fn=_as_on_a_terminal)
    seen = []
    for line in process.stdout:
        seen.append(json.loads(line))
        if len(seen) >= n_results:
            break
    if sig == signal.SIGKILL:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(sig)
    rest = process.stdout.read()
    process.wait(30)
    return seen + _json_lines(rest), process.returncode


@pytest.fixture
def big_library(tmp_path):
    return make_library(tmp_path / "big", tracks=12, seconds=8.0)


def test_kill_9_mid_run_then_verify_and_resume(big_library, tmp_path):
    store = tmp_path / "s"
    done, _ = _interrupt_after(big_library, store, 4, sig=signal.SIGKILL)
    finished = {r["path"] for r in done if r["status"] != "error"}
    assert 0 < len(finished) < 12 + 1
    check = subprocess.run(_cli("cache", "verify", store=store), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rerun = subprocess.run(_cli("analyze", big_library, "--json", store=store), capture_output=True, text=True)
    rows = _json_lines(rerun.stdout)
    cached = {r["path"] for r in rows if r["cached"]}
    assert finished <= cached                      # nothing finished was recomputed
    assert len([r for r in rows if r["status"] != "error"]) == 13  # 12 tracks + the partial file
    assert all(r["cached"] or r["path"] not in finished for r in rows)


def test_ctrl_c_stops_cleanly_and_keeps_finished_tracks(big_library, tmp_path):
    store = tmp_path / "s"
    done, code = _interrupt_after(big_library, store, 3, sig=signal.SIGINT)
    assert code == 130
    with FingerprintStore.open(store) as s:
        stored = {seen.path for r in s.records() for seen in r.paths}
        assert verify(s) == []
    assert {os.path.realpath(r["path"]) for r in done if r["status"] != "error"} <= stored


def test_two_runs_on_one_store_at_once(big_library, tmp_path):
    store = tmp_path / "s"
    runs = [subprocess.Popen(_cli("analyze", big_library, "--json", "--jobs", "1", store=store),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=300)[0] for r in runs]
    assert all(r.returncode == 3 for r in runs)  # broken files fail in both runs
    with FingerprintStore.open(store) as s:
        assert verify(s) == []
        assert len(list(s.records())) == 13
        assert len(list(s.failures())) == 4
    for output in outputs:
        assert len(_json_lines(output)) >= 13


def test_unreadable_folder_is_a_problem_not_a_crash(library, tmp_path):
    secret = library / "secret"
    secret.mkdir()
    write(secret / "hidden.flac", synth.sine(440, 1.0, SR), SR)
    if os.geteuid() == 0:
        code = ("import sys, json; from fpcli.scan import scan; p = scan([sys.argv[1]]).problems; "
                "print(json.dumps([x.message for x in p]))")
        os.chmod(secret, 0)
        out = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable,
                              "-c", code, str(library)], capture_output=True, text=True, check=True).stdout
        messages = json.loads(out)
    else:
        os.chmod(secret, 0)
        messages = [p.message for p in scan([library]).problems]
    os.chmod(secret, 0o755)
    assert any("cannot list folder" in m for m in messages)


def test_a_file_that_could_not_be_read_is_tried_again_when_readable(tmp_path):
    """Permission denied, or gone mid-run, was recorded against the file's size and
    mtime, which a chmod or a file put back with its mtime (cp -p, rsync -a) keep: the
    readable file was skipped as "permission denied" for good. A failure of the
    content (not audio) stays skipped while the file is unchanged."""
    folder = tmp_path / "lib"
    folder.mkdir()
    good = write(folder / "good.flac", synth.music_like(2.0, SR, seed=1), SR)
    bad = folder / "bad.flac"
    bad.write_text("not audio\n" * 50)
    with FingerprintStore.open(tmp_path / "s") as store:
        store.save_failure(str(good), None, "OSError", "permission denied")   # as a denied run left it
        store.save_failure(str(bad), None, "AudioReadError", "not a decodable audio file")
        summary = run_library([str(folder)], store, RunOptions(jobs=1))
        assert store.record_for_path(str(good)) is not None
        assert store.failure_for(str(good)) is None
        assert summary.skipped == 1 and store.failure_for(str(bad)) is not None


def test_interrupt_keeps_summary(library, tmp_path):
    """KeyboardInterrupt inside a run returns a summary marked interrupted."""
    calls = []

    def on_event(kind, payload):
        calls.append(kind)
        if calls.count("track") == 2:
            raise KeyboardInterrupt

    with FingerprintStore.open(tmp_path / "s") as store:
        summary = run_library([library], store, RunOptions(jobs=2), on_event)
        assert summary.interrupted
        assert len(list(store.records())) + len(list(store.failures())) >= 1
    assert np.isfinite(summary.wall_seconds)


def test_workers_take_the_least_known_then_the_largest_files_first():
    """Nothing heard before a low-confidence preview before a better one; among equals,
    the largest file first, so that no large file is left to run alone at the end."""
    def item(heard, name, size):
        return heard, name, FileIdentity(name, size, 0, "0" * 32)

    todo = [item(-1.0, "small-new", 10), item(0.6, "good-preview", 900), item(-1.0, "big-new", 1000),
            item(0.2, "weak-preview", 5), item(-1.0, "mid-new", 500)]
    assert [path for path, _ in dispatch_order(todo)] == ["big-new", "mid-new", "small-new", "weak-preview",
                                                          "good-preview"]


def test_copies_in_one_run_are_analysed_once(tmp_path):
    """Links and copies of one file are one analysis, forced or not: the others are
    answered from the store once it holds their content. A file whose head and tail
    (its content key) only look the same is still analysed."""
    folder = tmp_path / "copies"
    folder.mkdir()
    pad = np.zeros((5 * 8000, 1))  # more than the 64 KiB of head and of tail the content key reads
    first = write(folder / "a.wav", np.concatenate([pad, synth.sine(440, 0.5, 8000), pad]), 8000)
    write(folder / "b.wav", np.concatenate([pad, synth.sine(660, 0.5, 8000), pad]), 8000)
    for i in range(4):
        os.link(first, folder / f"link{i}.wav")
    with FingerprintStore.open(tmp_path / "s") as store:
        cold = run_library([folder], store, RunOptions(jobs=1))
        assert (cold.analysed, cold.cached, cold.failed) == (2, 4, 0)
        forced = run_library([folder], store, RunOptions(jobs=1, force=True))
        assert (forced.analysed, forced.cached, forced.failed) == (2, 4, 0)
        assert sorted(len(record.paths) for record in store.records()) == [1, 5]


@pytest.mark.parametrize("max_seconds", [-1.0, 0, float("nan"), "4"])
def test_a_bad_preview_length_is_a_parameter_error(tmp_path, max_seconds):
    """-1 read 1.97 s (a slice cut from the end), 0 nothing, NaN a ValueError."""
    from fpcli.analyze import analyze_streaming
    from fpcli.errors import ParameterError

    path = write(tmp_path / "t.flac", synth.music_like(2.0, SR, seed=1), SR)
    with pytest.raises(ParameterError, match="max_seconds"):
        analyze_streaming(path, max_seconds=max_seconds)


def test_an_infinite_preview_length_is_no_limit(tmp_path):
    """inf raised an OverflowError."""
    from fpcli.analyze import analyze_streaming

    path = write(tmp_path / "t.flac", synth.music_like(2.0, SR, seed=1), SR)
    for limit in (float("inf"), 1e300):
        fingerprint, _ = analyze_streaming(path, max_seconds=limit)
        assert fingerprint.complete and fingerprint.seconds == pytest.approx(2.0)


@pytest.mark.parametrize("seconds,block_frames,complete", [
    (4.0, 2**17, True),      # all of it heard
    (4.5, 2**17, False),     # a preview
    (4.5, SR, False),        # the limit on a block's end, with more after it
    (4.0, SR, True),         # the limit on the last block's end
])
def test_a_preview_as_long_as_the_track_is_complete(tmp_path, seconds, block_frames, complete):
    """A 20.0 s file read with a 20 s limit was an incomplete preview (confidence
    below 1) though all of it was heard."""
    from fpcli.analyze import analyze_streaming

    path = write(tmp_path / "t.flac", synth.music_like(seconds, SR, seed=2), SR)
    fingerprint, reader = analyze_streaming(path, max_seconds=4.0, block_frames=block_frames)
    assert fingerprint.complete is complete and fingerprint.seconds == pytest.approx(4.0)
    assert (set(fingerprint.confidence.values()) == {1.0}) is complete and not reader.partial


def test_the_command_line_stores_a_preview_as_long_as_the_track_as_complete(tmp_path):
    from typer.testing import CliRunner

    from fpcli.cli import app

    library = tmp_path / "lib"
    library.mkdir()
    write(library / "exact.flac", synth.music_like(4.0, SR, seed=3), SR)
    write(library / "longer.flac", synth.music_like(4.5, SR, seed=4), SR)
    store = tmp_path / "s"
    run = CliRunner().invoke(app, ["--store", str(store), "analyze", str(library), "--seconds", "4", "--quiet"])
    assert run.exit_code == 0, run.output
    with FingerprintStore.open(store) as s:
        complete = {os.path.basename(r.path): (r.complete, r.streaming.seconds) for r in s.records()}
    assert complete == {"exact.flac": (True, pytest.approx(4.0)), "longer.flac": (False, pytest.approx(4.0))}


def test_a_preview_run_counts_the_seconds_it_heard(tmp_path):
    """The summary's speed added each preview's track length: a --seconds 5 pass over
    2-minute tracks reported 495 s of audio analysed per second."""
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib" / "a.wav", synth.music_like(4.0, 8000, seed=1), 8000)
    write(tmp_path / "lib" / "b.wav", synth.music_like(3.0, 8000, seed=2), 8000)
    with FingerprintStore.open(tmp_path / "store") as store:
        preview = run_library([str(tmp_path / "lib")], store, RunOptions(seconds=1.0))
        whole = run_library([str(tmp_path / "lib")], store, RunOptions())
    assert preview.analysed == 2 and preview.audio_seconds == pytest.approx(2.0)
    assert whole.analysed == 2 and whole.audio_seconds == pytest.approx(7.0)


FORK_SERVER_CHECK = """
import multiprocessing.forkserver
from fpcli.executors.local import _start_fork_server, _worker_context
_start_fork_server(_worker_context())
pid = multiprocessing.forkserver._forkserver._forkserver_pid
status = open(f"/proc/{pid}/status").read()
ignored = int([line for line in status.splitlines() if line.startswith("SigIgn")][0].split()[1], 16)
print(bool(ignored & (1 << (2 - 1))))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads a process's signal mask from /proc")
def test_the_fork_server_ignores_ctrl_c_while_it_imports():
    """Ctrl-C in a run's first second printed the fork server's KeyboardInterrupt
    traceback (40 lines, while it imported numpy and scipy, before it ignores SIGINT
    itself) under the run's clean "interrupted". It now starts with SIGINT ignored;
    looked at right after it starts, while it is still importing."""
    checked = subprocess.run([sys.executable, "-c", FORK_SERVER_CHECK], capture_output=True, text=True, timeout=60)
    assert checked.stdout.strip() == "True", checked.stderr


def test_copies_of_a_file_that_failed_are_not_analysed_again(tmp_path, monkeypatch):
    """Copies are analysed once, but a copy of a file whose analysis failed (a timeout
    here) was analysed again in the same run, to the same end: N copies of a file that
    hangs a decoder cost N time limits. They now share its failure, each recorded."""
    import shutil

    import fpcli.library

    source = write(tmp_path / "long.wav", synth.sine(440, 300.0, 44100, channels=2), 44100)
    folder = tmp_path / "dup"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        shutil.copy(source, folder / name)
    os.link(folder / "a.wav", folder / "c.wav")
    dispatched: list[str] = []
    real = fpcli.library.analyse_all

    def counted(todo, options, store):
        dispatched.extend(path for path, _ in todo)
        return real(todo, options, store)

    monkeypatch.setattr(fpcli.library, "analyse_all", counted)
    events = []
    with FingerprintStore.open(tmp_path / "store") as store:
        run_library([str(folder)], store, RunOptions(timeout_s=0.5, jobs=1),
                    lambda kind, payload: events.append(payload) if kind == "track" else None)
        assert len(dispatched) == 1
        assert sorted((os.path.basename(r.path), r.error_type) for r in events) == \
            [("a.wav", "Timeout"), ("b.wav", "Timeout"), ("c.wav", "Timeout")]
        assert len(list(store.failures())) == 3 and {f.limit_s for f in store.failures()} == {0.5}


@pytest.mark.parametrize("force", [False, True])
def test_a_copy_answered_in_the_same_run_is_one_look_up(tmp_path, force):
    """A file and its copy in one run: one analysed, one from the store, and the
    statistics counted 3 look-ups (1 hit, 2 misses) for the 2 files."""
    import shutil

    (tmp_path / "lib").mkdir()
    original = write(tmp_path / "lib" / "b.wav", synth.music_like(2.0, 22050, seed=3), 22050)
    shutil.copy(original, tmp_path / "lib" / "b_copy.wav")
    with FingerprintStore.open(tmp_path / "s") as store:
        summary = run_library([str(tmp_path / "lib")], store, RunOptions(jobs=1, force=force))
        store.flush_stats()
        stats = store.stats()
    assert (summary.analysed, summary.cached) == (1, 1)
    # --force analyses without looking up (no count); the copy is then looked up once.
    assert (stats["hits"], stats["misses"]) == ((1, 0) if force else (1, 1))


def test_copies_of_a_failure_tried_again_take_back_no_miss(tmp_path):
    """A known failure tried again (--retry-failed) is looked up without a count: its
    copy's miss was taken back anyway, and stats said -1 misses."""
    import shutil

    (tmp_path / "lib").mkdir()
    original = write(tmp_path / "lib" / "a.wav", synth.music_like(2.0, 22050, seed=4), 22050)
    shutil.copy(original, tmp_path / "lib" / "b.wav")
    with FingerprintStore.open(tmp_path / "s") as store:
        for name in ("a.wav", "b.wav"):
            store.save_failure(str(tmp_path / "lib" / name), None, "DecodeError", "was broken once")
        summary = run_library([str(tmp_path / "lib")], store, RunOptions(jobs=1, retry_failed=True))
        store.flush_stats()
        stats = store.stats()
    assert (summary.analysed, summary.cached) == (1, 1)
    assert (stats["hits"], stats["misses"]) == (1, 0)


@pytest.mark.parametrize("command", ["analyze", "validate"])
def test_a_store_lost_mid_run_stops_it_with_what_was_done(tmp_path, monkeypatch, command):
    """Redis gone mid-run: the run printed the error alone, and the user could not
    tell how much of the library was done. The summary of the tracks reported (and
    stored) before it comes first, then the error; exit 1."""
    from typer.testing import CliRunner

    from fpcli.cli import app
    from fpcli.cli.tracks import Reporter
    from fpcli.errors import StoreError
    from tests.conftest import RedisServer

    (tmp_path / "music").mkdir()
    for i in range(8):
        write(tmp_path / "music" / f"t{i}.flac", synth.music_like(1.0, SR, seed=i), SR)
    server = RedisServer(tmp_path / "redis")
    reported = []
    report = Reporter.event

    def stop_after_three(self, kind, payload):
        report(self, kind, payload)
        if kind == "track":
            reported.append(payload.path)
            if len(reported) == 3:
                server.stop()

    monkeypatch.setattr(Reporter, "event", stop_after_three)
    try:
        target = ["-l", str(tmp_path / "music"), "--json"] if command == "validate" else [str(tmp_path / "music")]
        result = CliRunner().invoke(app, ["--store", server.url, command, *target, "--jobs", "1"])
    finally:
        server.stop()
    assert result.exit_code == 1, result.output
    if command == "analyze":
        assert "stopped: the tracks reported before the error below are stored" in result.stderr, result.output
        assert "analysed 3, from cache 0, failed 0" in result.stderr
    else:
        # The report of the tracks done: there was none, and --json wrote nothing.
        document = json.loads(result.stdout)
        assert document["summary"]["tracks"] == 3 and document["summary"]["valid"] == 3
        assert "cannot connect" in document["stopped"]
        assert all("the store failed" in track["verdict_not_stored"] for track in document["tracks"])
        assert "stopped: the report covers the 3 tracks done before the error below" in result.stderr
    assert isinstance(result.exception, StoreError) and "cannot connect" in str(result.exception)   # said next


def test_an_error_before_any_track_is_said_alone(tmp_path, monkeypatch):
    """A cluster never reached printed "stopped: ... analysed 0, from cache 0, failed 0"
    above its error: a summary of nothing."""
    import fpcli.library as library

    events = []
    write(tmp_path / "t.flac", synth.music_like(1.0, SR), SR)

    def unreachable(*args, **kwargs):
        raise library.FpcliError("cannot reach the Dask scheduler")

    monkeypatch.setattr(library, "_analyse", unreachable)
    with FingerprintStore.open(tmp_path / "s") as store, pytest.raises(library.FpcliError):
        run_library([str(tmp_path)], store, RunOptions(jobs=1), on_event=lambda kind, _: events.append(kind))
    assert events == ["start"]
    events.clear()   # a scan problem reported (a path not there): the run had said something, summed up
    with FingerprintStore.open(tmp_path / "s") as store, pytest.raises(library.FpcliError):
        run_library([str(tmp_path), str(tmp_path / "gone")], store, RunOptions(jobs=1),
                    on_event=lambda kind, _: events.append(kind))
    assert events == ["start", "track", "stopped"]


def test_a_forced_run_reads_no_file_before_its_analysis(tmp_path, monkeypatch):
    """A forced run that distrusted every path entry computed each file's full digest
    (its own record a candidate), one file after another, before the first analysis:
    0.28 s for 201 MB cached, about 1 s a GB. The entry is checked against the record
    it names, as a look-up checks it, and its digest kept (a worker's copy on another
    mount is held to it)."""
    import fpcli.store.core as core
    from fpcli.analyze import Want, look_up

    track = write(tmp_path / "t.flac", synth.music_like(1.0, SR), SR)
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(track)], store, RunOptions(jobs=1))
        digests = []
        keys = core.entry_identity_keys

        def counted(path, size, *, digest):
            digests.append(digest)
            return keys(path, size, digest=digest)

        monkeypatch.setattr(core, "entry_identity_keys", counted)
        found = look_up(store, str(track), Want(), force=True)
        stored = next(store.records())
    assert found.identity.digest == stored.digest and True not in digests


def test_a_forced_run_analyses_a_file_whose_content_key_another_shares(tmp_path):
    """Forced look-ups that carried no digest grouped files by content key (size, first
    and last 64 KiB): a file sharing one with a stored file waited for the second pass,
    which answered it with its old recorded failure instead of analysing it."""
    import shutil

    a = write(tmp_path / "a.wav", synth.music_like(4.0, SR, seed=1), SR)
    b = shutil.copy(a, tmp_path / "b.wav")
    with open(b, "r+b") as middle:   # the same size, head and tail: another content
        middle.seek(os.path.getsize(b) // 2)
        middle.write(b"\x55" * 4096)
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(a)], store, RunOptions(jobs=1))
        store.save_failure(str(b), None, "AudioReadError", "an earlier decoder failed")
        summary = run_library([str(a), str(b)], store, RunOptions(jobs=1, force=True))
    assert (summary.analysed, summary.failed) == (2, 0)


def test_a_forced_runs_look_ups_read_the_store_in_batches(tmp_path, monkeypatch):
    """Each forced look-up read its path entry, then the record it names, one call each:
    600 us a file on a local Redis (150 us before the record was checked), a minute of
    waiting at 100,000 files before the first analysis."""
    from fpcli.analyze import Want, look_up_all

    tracks = [write(tmp_path / f"t{i}.flac", synth.music_like(1.0, SR, seed=i), SR) for i in range(5)]
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(t) for t in tracks], store, RunOptions(jobs=1))
        single = []
        get = store.backend.get
        monkeypatch.setattr(store.backend, "get", lambda key: single.append(key) or get(key))
        found = list(look_up_all(store, [str(t) for t in tracks], Want(), force=True))
        digests = {r.path: r.digest for r in store.records()}
    assert single == []
    assert [f.identity.digest for f in found] == [digests[os.path.realpath(t)] for t in tracks]


def test_a_forced_run_analyses_two_new_files_sharing_a_content_key(tmp_path):
    """Neither stored, two files of one content key (size, head and tail) and another
    middle: the second waited for the copies' pass, which answered it with its old
    recorded failure instead of analysing it as the forced run was asked to."""
    import shutil

    a = write(tmp_path / "a.wav", synth.music_like(4.0, SR, seed=1), SR)
    b = shutil.copy(a, tmp_path / "b.wav")
    with open(b, "r+b") as middle:
        middle.seek(os.path.getsize(b) // 2)
        middle.write(b"\x55" * 4096)
    with FingerprintStore.open(tmp_path / "s") as store:
        store.save_failure(str(b), None, "AudioReadError", "an earlier decoder failed")
        summary = run_library([str(a), str(b)], store, RunOptions(jobs=1, force=True))
    assert (summary.analysed, summary.failed) == (2, 0)


def test_an_upgrade_run_advances_its_progress_over_the_files_it_leaves_alone(tmp_path):
    """--upgrade finishes previews and leaves files without one alone: the bar's total
    counted them, and stopped at 2/40."""
    (tmp_path / "lib").mkdir()
    for i in range(4):
        write(tmp_path / "lib" / f"t{i}.wav", synth.sine(220 + 110 * i, 1.0, 22050), 22050)
    events: list[tuple[str, object]] = []
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(tmp_path / "lib" / "t0.wav")], store, RunOptions(jobs=1, seconds=0.5))
        summary = run_library([str(tmp_path / "lib")], store, RunOptions(jobs=1, upgrade=True),
                              lambda kind, payload: events.append((kind, payload)))
    [(_, (total, _))] = [event for event in events if event[0] == "start"]
    tracks = [payload for kind, payload in events if kind == "track"]
    passed_over = sum(payload for kind, payload in events if kind == "advance")
    assert (total, len(tracks), passed_over, summary.skipped_new) == (4, 1, 3, 3)
