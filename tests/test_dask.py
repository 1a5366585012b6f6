"""Library analysis on a real Dask distributed cluster (LocalCluster, worker processes)
with a real Redis store."""

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import EXIT_SOME_FAILED, app
from fpcli.errors import FpcliError
from fpcli.library import RunOptions, run_library
from fpcli.params import AnalysisParams
from fpcli.store import FingerprintStore, verify
from tests.conftest import write

distributed = pytest.importorskip("distributed", reason="the dask extra is part of the dev install")

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as local:
        yield local


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(6):
        write(root / f"t{i}.flac", synth.music_like(4.0, 22050, seed=i), 22050)
    (root / "broken.flac").write_text("not audio" * 20)
    return root


def test_analyze_on_dask_matches_a_local_run(cluster, library, redis_url, tmp_path):
    args = ["--store", redis_url, "analyze", str(library), "--executor", "dask", "--scheduler",
            cluster.scheduler_address]
    first = runner.invoke(app, args)
    assert first.exit_code == 3, first.output  # the broken file
    assert "analysed 6, from cache 0, failed 1" in first.stderr
    second = runner.invoke(app, args)
    assert "analysed 0, from cache 6, failed 1 (1 failed before, skipped)" in second.stderr
    with FingerprintStore.open(redis_url) as store:
        assert len(list(store.records())) == 6 and len(list(store.failures())) == 1
        assert verify(store) == []
    local = runner.invoke(app, ["--store", str(tmp_path / "local"), "analyze", str(library), "--json"])
    assert local.stdout.count('"status": "ok"') == 6


def test_validate_on_dask(cluster, library, redis_url):
    result = runner.invoke(app, ["--store", redis_url, "validate", "-l", str(library), "--executor", "dask",
                                 "--scheduler", cluster.scheduler_address], env={"COLUMNS": "150"})
    assert result.exit_code == EXIT_SOME_FAILED, result.output   # the library's broken file
    assert "valid 6 (100.0 % of 6 compared)" in result.stdout and "failed to decode 1" in result.stdout


def test_a_store_that_refuses_the_workers_saves_is_said_so_on_dask(cluster, library, redis_url):
    """A read-only user's or a full Redis's refusal on a worker failed the task (three
    times, as Dask retries) and was each file's "StoreFullError". As in a local run:
    analyze says what it could not store (read-only, exit 3) or stops (full, exit 1),
    and validate compares what was computed, its verdicts said unstored."""
    import urllib.parse

    import redis

    dask_args = ["--executor", "dask", "--scheduler", cluster.scheduler_address]
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+@connection")
    parsed = urllib.parse.urlparse(redis_url)
    reader = f"redis://reader:pw@{parsed.netloc}{parsed.path}"
    try:
        FingerprintStore.open(redis_url).close()   # the store exists (a reader cannot make it)
        read_only = runner.invoke(app, ["--store", reader, "analyze", str(library), *dask_args])
        assert read_only.exit_code == 3 and "7 result(s) not stored: Redis at" in read_only.stderr, read_only.output
        assert "failed 1" in read_only.stderr   # the broken file alone
    finally:
        admin.execute_command("ACL", "DELUSER", "reader")
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 4096)
    try:
        full = runner.invoke(app, ["--store", redis_url, "analyze", str(library), *dask_args])
        assert full.exit_code == 1 and "is full" in str(full.exception), full.output
        checked = runner.invoke(app, ["--store", redis_url, "validate", "-l", str(library), "--json", *dask_args])
        summary = json.loads(checked.stdout)["summary"]
        assert (summary["compared"], summary["verdicts_not_stored"], summary["failed_to_decode"]) == (6, 6, 1)
    finally:
        admin.config_set("maxmemory", 0)
        admin.config_set("maxmemory-policy", policy)


def test_validate_partial_streams_run_on_dask(cluster, library, redis_url):
    import json

    result = runner.invoke(app, ["--store", redis_url, "validate", "-l", str(library), "--executor", "dask",
                                 "--scheduler", cluster.scheduler_address, "--partial", "1,2", "--json"])
    partial = json.loads(result.stdout)["partial"]
    assert partial["tracks"] == 6
    assert sum(row["samples"] for row in partial["buckets"]["key_clarity"]) == 12


def test_path_map_rewrites_paths_for_workers(cluster, library, redis_url, tmp_path):
    mount = tmp_path / "mnt"
    os.symlink(library, mount)  # the workers' view of the same files
    options = RunOptions(executor="dask", scheduler=cluster.scheduler_address,
                         path_map=(f"{library}={mount}",))
    with FingerprintStore.open(redis_url) as store:
        summary = run_library([str(library)], store, options)
        assert (summary.analysed, summary.failed) == (6, 1)
    # A map to where the workers have nothing: the worker's path is named, not the
    # client's (which exists: "no such file" of it blamed the wrong one)
    nowhere = RunOptions(executor="dask", scheduler=cluster.scheduler_address, path_map=(f"{library}={tmp_path}/x",))
    events = []
    with FingerprintStore.open(tmp_path / "other-store") as store:
        run_library([str(library / "t0.flac")], store, nowhere,
                    lambda kind, payload: events.append(payload) if kind == "track" else None)
    [result] = events
    assert result.error == f"no such file or folder on the worker, as {tmp_path}/x/t0.flac (check the path map)"
    # Its digest known (--force of a stored file), it was "deleted while it was analysed".
    events.clear()
    with FingerprintStore.open(tmp_path / "known") as store:
        run_library([str(library / "t1.flac")], store, RunOptions())
        run_library([str(library / "t1.flac")], store, dataclasses.replace(nowhere, force=True),
                    lambda kind, payload: events.append(payload) if kind == "track" else None)
    [result] = events
    assert result.error == f"no such file or folder on the worker, as {tmp_path}/x/t1.flac (check the path map)"


def test_a_mount_showing_times_to_the_second_is_the_same_file(cluster, library, redis_url, tmp_path):
    """A worker's mount (SMB, NFS, FUSE) that shows modification times to the second:
    every file failed as "changed while it was analysed", on every run."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    for name in ("t0.flac", "t1.flac"):
        shutil.copyfile(library / name, mount / name)
        whole_seconds = int(os.stat(library / name).st_mtime) * 10**9
        os.utime(mount / name, ns=(whole_seconds, whole_seconds))
    options = RunOptions(executor="dask", scheduler=cluster.scheduler_address, path_map=(f"{library}={mount}",))
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        summary = run_library([str(library / "t0.flac"), str(library / "t1.flac")], store, options)
        assert (summary.analysed, summary.failed) == (2, 0)
        assert {r.path for r in store.records()} == {str(library / "t0.flac"), str(library / "t1.flac")}
        before = store.record_for_path(str(library / "t1.flac"), AnalysisParams().key()).streaming.values
        forced = dataclasses.replace(options, force=True)
        copy = bytearray((mount / "t1.flac").read_bytes())
        copy[len(copy) // 2:len(copy) // 2 + 64] = bytes(64)      # the same size, other content
        (mount / "t1.flac").write_bytes(bytes(copy))
        os.utime(mount / "t1.flac", ns=(whole_seconds, whole_seconds))
        with open(mount / "t0.flac", "ab") as grown:              # another size, at the client's very time
            grown.write(b"\0" * 10)
        client_time = os.stat(library / "t0.flac").st_mtime_ns
        os.utime(mount / "t0.flac", ns=(client_time, client_time))
        unknown = bytearray((library / "t2.flac").read_bytes())   # never analysed: its digest is unknown
        unknown[4096:4160] = bytes(64)
        (mount / "t2.flac").write_bytes(bytes(unknown))
        t2_time = int(os.stat(library / "t2.flac").st_mtime) * 10**9
        os.utime(mount / "t2.flac", ns=(t2_time, t2_time))
        events = []
        run_library([str(library / name) for name in ("t0.flac", "t1.flac", "t2.flac")], store, forced,
                    lambda kind, payload: events.append(payload) if kind == "track" else None)
        errors = {os.path.basename(result.path): result.error for result in events}
        assert "holds other content than the client's file" in errors["t1.flac"]
        assert "holds other content than the client's file" in errors["t2.flac"]
        assert "the worker's copy" in errors["t0.flac"] and "is not the client's file" in errors["t0.flac"]
        assert store.record_for_path(str(library / "t2.flac"), AnalysisParams().key()) is None
        # The client's record was kept: it was stored with the copy's fingerprint, and
        # served for every true copy of it.
        assert store.record_for_path(str(library / "t1.flac"), AnalysisParams().key()).streaming.values == before


def test_a_worker_whose_cue_sheet_splits_the_image_otherwise_stores_nothing(cluster, redis_url, tmp_path):
    """The worker's copy of a CUE sheet with other track bounds: its tracks were
    analysed and stored as the client's (1 s and 3 s where the client's are 2 s each)."""
    import numpy as np

    client_side, worker_side = tmp_path / "lib", tmp_path / "mnt"
    client_side.mkdir()
    write(client_side / "album.flac", np.concatenate([synth.music_like(2.0, 22050, seed=i) for i in (1, 2)]), 22050)
    sheet = 'FILE "album.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n  TRACK 02 AUDIO\n    INDEX 01 {}\n'
    (client_side / "album.cue").write_text(sheet.format("00:02:00"))
    shutil.copytree(client_side, worker_side)
    (worker_side / "album.cue").write_text(sheet.format("00:01:00"))
    options = RunOptions(executor="dask", scheduler=cluster.scheduler_address,
                         path_map=(f"{client_side}={worker_side}",))
    events = []
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        run_library([str(client_side)], store, options,
                    lambda kind, payload: events.append(payload) if kind == "track" else None)
        assert len(events) == 2 and all("holds other content" in result.error for result in events)
        assert list(store.records()) == []


def test_relative_paths_reach_workers_whose_working_folder_is_another(cluster, library, redis_url, tmp_path,
                                                                     monkeypatch):
    """Workers got the path as typed (`../lib/t0.flac`) and resolved it against their
    own working folder: every good file was a recorded "no such file" failure, skipped
    by later local runs too. They now get the path the store identified."""
    import json

    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    worker_folders = set(client.run(os.getcwd).values())
    client.close()
    (tmp_path / "client").mkdir()
    monkeypatch.chdir(tmp_path / "client")
    assert not any(os.path.exists(os.path.join(folder, "../lib/t0.flac")) for folder in worker_folders)

    def run(store, *options):
        result = runner.invoke(app, ["--store", store, "analyze", "../lib", "--json", *options])
        assert result.exit_code == EXIT_SOME_FAILED, result.output  # the broken file alone
        return {line["path"]: line for line in map(json.loads, result.stdout.splitlines())}

    on_dask = run(redis_url, "--executor", "dask", "--scheduler", cluster.scheduler_address)
    local = run(str(tmp_path / "local"))
    assert on_dask.keys() == local.keys() and len(on_dask) == 7
    for path, line in on_dask.items():
        facts = ("status", "error", "streaming")
        assert [line.get(key) for key in facts] == [local[path].get(key) for key in facts], path
    with FingerprintStore.open(redis_url) as store:
        assert [failure.path for failure in store.failures()] == [os.path.realpath(library / "broken.flac")]
    again = runner.invoke(app, ["--store", redis_url, "analyze", "../lib"])
    assert "analysed 0, from cache 6, failed 1 (1 failed before, skipped)" in again.stderr


def test_path_map_matches_relative_and_symlinked_client_paths(tmp_path, monkeypatch):
    """A client prefix is matched against the absolute and the symlink-free path
    (`--path-map lib=...` never matched `lib/a.flac` as typed, nor the store's resolved
    path of a library reached through a link); unmapped, a worker gets the resolved
    path; a relative worker prefix would be read in each worker's own folder."""
    from fpcli.errors import ParameterError
    from fpcli.executors.dask import PathMap

    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "music")
    monkeypatch.chdir(tmp_path)
    assert PathMap.parse([f"{tmp_path / 'music'}=/mnt/music"]).to_worker("music/a.flac") == "/mnt/music/a.flac"
    assert PathMap.parse(["music=/mnt/music"]).to_worker(str(tmp_path / "data" / "a.flac")) == "/mnt/music/a.flac"
    linked = PathMap.parse([f"{tmp_path / 'music'}=/mnt/music"])
    assert linked.to_worker("x", resolved=str(tmp_path / "data" / "a.flac")) == "/mnt/music/a.flac"
    assert PathMap.parse(["elsewhere=/mnt"]).to_worker("music/a.flac") == str(tmp_path / "data" / "a.flac")
    assert PathMap().to_worker("music/b.flac#02") == str(tmp_path / "data" / "b.flac#02")
    with pytest.raises(ParameterError, match="WORKER_PREFIX must be an absolute path"):
        PathMap.parse(["music=mnt/music"])
    # Nested prefixes: the longest decides, in any order (the first given won).
    (tmp_path / "data" / "live").mkdir()
    nested = [f"{tmp_path / 'data'}=/mnt/all", f"{tmp_path / 'data' / 'live'}=/mnt/live"]
    for order in (nested, nested[::-1]):
        assert PathMap.parse(order).to_worker(str(tmp_path / "data" / "live" / "a.flac")) == "/mnt/live/a.flac"
        assert PathMap.parse(order).to_worker(str(tmp_path / "data" / "b.flac")) == "/mnt/all/b.flac"


def test_killed_worker_costs_no_result(cluster, redis_url, tmp_path):
    root = tmp_path / "long"
    root.mkdir()
    for i in range(8):
        write(root / f"l{i}.wav", synth.sine(220 + 20 * i, 60.0, 44100, channels=2), 44100)
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    pids = list(client.run(os.getpid).values())
    client.close()
    events = []

    def on_event(kind, payload):
        events.append(kind)
        if events.count("track") == 1:  # tasks are running on both workers now
            threading.Thread(target=os.kill, args=(pids[0], signal.SIGKILL)).start()

    with FingerprintStore.open(redis_url) as store:
        summary = run_library([str(root)], store, RunOptions(executor="dask", scheduler=cluster.scheduler_address),
                              on_event)
        assert (summary.analysed, summary.failed) == (8, 0)   # each track counted once
        assert len(list(store.records())) == 8 and verify(store) == []
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_unreachable_scheduler_is_a_clear_error(library, redis_url, monkeypatch):
    import fpcli.executors.dask

    monkeypatch.setattr(fpcli.executors.dask, "CONNECT_TIMEOUT", "2s")
    options = RunOptions(executor="dask", scheduler="tcp://127.0.0.1:1")
    with FingerprintStore.open(redis_url) as store, pytest.raises(FpcliError, match="cannot reach the Dask"):
        run_library([str(library)], store, options)


def test_dask_needs_a_scheduler(library):
    result = runner.invoke(app, ["analyze", str(library), "--executor", "dask"])
    assert result.exit_code == 2 and "needs --scheduler" in result.output


def test_reanalysis_on_dask_keeps_batch_values_and_verdicts(cluster, library, redis_url):
    """The Dask task runs the same save as a local run: merged with the stored record."""
    with FingerprintStore.open(redis_url) as store:
        from fpcli.validate import validate_library

        validate_library([str(library)], store, RunOptions(jobs=2))  # local: batch values + verdicts
        before = {r.digest: r for r in store.records()}
        assert all(r.batch is not None and r.validation is not None for r in before.values())
        options = RunOptions(executor="dask", scheduler=cluster.scheduler_address, force=True)
        summary = run_library([str(library)], store, options)
        assert summary.analysed == 6
        after = {r.digest: r for r in store.records()}
        assert after.keys() == before.keys()
        for digest, record in after.items():
            assert record.batch == before[digest].batch and record.validation == before[digest].validation
            assert record.analysed_at > before[digest].analysed_at  # it was analysed again
            assert record.paths == before[digest].paths              # under the client's paths


def test_a_worker_keeps_its_store_open_until_the_directory_is_replaced(tmp_path):
    """Dask tasks reuse the worker's open store; a store directory removed and made
    again (a fresh run on a long-lived cluster) is opened again, so results land where
    the client reads them."""
    import shutil

    from fpcli.executors.dask import _worker_store
    from fpcli.store import StoreSpec

    spec = StoreSpec(str(tmp_path / "store"))
    first = _worker_store(spec)
    assert _worker_store(spec) is first
    shutil.rmtree(tmp_path / "store")
    again = _worker_store(spec)
    assert again is not first and (tmp_path / "store").is_dir()
    assert _worker_store(spec) is again
    again.close()


def _sleep_then(value, seconds):
    import time

    time.sleep(seconds)
    return value


def test_a_cluster_without_workers_is_a_clear_error_not_a_hang(monkeypatch):
    """With no worker, or once every worker has died, tasks waited for one forever and
    the command printed nothing: now a missing worker is an error within
    WORKER_WAIT_S, and the tasks of workers that all died fail with the reason."""
    import functools

    import fpcli.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "WORKER_WAIT_S", 2.0)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None, silence_logs=50) as empty:
        with pytest.raises(FpcliError, match="no Dask worker joined the scheduler"):
            list(dask_executor.run_on_dask([("a", functools.partial(_sleep_then, 1, 0.0))], empty.scheduler_address))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as dying:
        calls = [(f"t{i}", functools.partial(_sleep_then, i, 0.5)) for i in range(6)]
        outcomes = {}
        # One error for the cluster, not each file left "failed" (exit 3, as if broken).
        with pytest.raises(FpcliError, match="no Dask worker left at .* for 2 s: the tracks reported before are "
                                             "stored"):
            for label, outcome in dask_executor.run_on_dask(calls, dying.scheduler_address):
                outcomes[label] = outcome
                if len(outcomes) == 1:
                    dying.scale(0)          # every worker leaves after the first result
        first = next(iter(outcomes))
        assert outcomes[first] == int(first[1:])
        assert all(not isinstance(outcome, tuple) for outcome in outcomes.values())


def _listening(reply: bytes | None):
    """A loopback server that takes connections and answers each with ``reply`` (an
    HTTP error page, say), or that never accepts them (None: the kernel completes the
    connection anyway, and nothing is ever said); returns (address, close)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(reply)

    if reply is not None:
        threading.Thread(target=answer, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}", server.close


def test_a_server_that_is_no_dask_scheduler_is_one_clear_error_in_bounded_time(monkeypatch, cluster):
    """--scheduler at an HTTP server or a dashboard's port waited without limit (10
    minutes and more), a server answering other bytes gave a traceback ending in
    "Unable to allocate 3.07 EiB", and http:// or tls:// a traceback from inside Dask."""
    import functools

    import fpcli.executors.dask as dask_executor
    from fpcli.errors import ParameterError

    monkeypatch.setattr(dask_executor, "ANSWER_S", 1.5)
    call = [("x", functools.partial(_sleep_then, 1, 0.0))]
    silent, close_silent = _listening(None)
    talker, close_talker = _listening(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
    try:
        started = time.monotonic()
        with pytest.raises(FpcliError, match="took the connection but did not answer as a Dask scheduler"):
            list(dask_executor.run_on_dask(call, silent))
        assert time.monotonic() - started < 10
        with pytest.raises(FpcliError, match="does not speak Dask's protocol|did not answer"):
            list(dask_executor.run_on_dask(call, talker))
    finally:
        close_silent()
        close_talker()
    worker = next(iter(cluster.scheduler_info["workers"]))
    with pytest.raises(FpcliError, match="is no Dask scheduler \\(it says it is Worker\\)"):
        list(dask_executor.run_on_dask(call, worker))
    for address, says in (("http://127.0.0.1:8786", "is no Dask scheme"),
                          ("tls://127.0.0.1:8786", "Dask's TLS settings")):   # none are set here
        with pytest.raises(ParameterError, match=says):
            list(dask_executor.run_on_dask(call, address))
    assert list(dask_executor.run_on_dask(call, cluster.scheduler_address)) == [("x", 1)]

    import dask

    with dask.config.set({"distributed.comm.require-encryption": True}), \
            pytest.raises(ParameterError, match="requires encryption"):   # it said "not Dask"
        list(dask_executor.run_on_dask(call, cluster.scheduler_address))

    async def from_async_code():   # a notebook's running loop: asyncio.run refused, "not Dask"
        return list(dask_executor.run_on_dask(call, cluster.scheduler_address))

    import asyncio

    assert asyncio.run(from_async_code()) == [("x", 1)]


def test_a_scheduler_address_without_a_port_is_a_usage_error_and_nothing_to_do_needs_none(tmp_path):
    """`--scheduler nonsense` gave a 60-line traceback after 30 s (Dask raised its
    ValueError inside its connection attempts); a run whose every file came from the
    store still connected, and exited 1 when the scheduler was down."""
    import functools

    import fpcli.executors.dask as dask_executor
    from fpcli.errors import ParameterError

    started = time.monotonic()
    with pytest.raises(ParameterError, match="not a scheduler address"):
        list(dask_executor.run_on_dask([("x", functools.partial(_sleep_then, 1, 0.0))], "nonsense"))
    with pytest.raises(ParameterError, match="the port must be a number from 1 to 65535"):   # tried 15 s
        list(dask_executor.run_on_dask([("x", functools.partial(_sleep_then, 1, 0.0))], "tcp://127.0.0.1:99999"))
    assert time.monotonic() - started < 5
    assert list(dask_executor.run_on_dask([], "tcp://127.0.0.1:1")) == []
    song = write(tmp_path / "s.flac", synth.music_like(2.0, 22050, seed=1), 22050)
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "analyze", str(song)]).exit_code == 0
    cached = runner.invoke(app, ["--store", store, "analyze", str(song), "--executor", "dask", "--scheduler",
                                 "tcp://127.0.0.1:1"])
    assert cached.exit_code == 0, cached.output
    bad = subprocess.run([sys.executable, "-m", "fpcli", "--store", str(tmp_path / "other"), "analyze", str(song),
                          "--executor", "dask", "--scheduler", "nonsense"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--scheduler" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_the_time_limit_counts_only_the_time_a_task_computes(monkeypatch):
    """A worker holds more tasks than it has threads: a task waiting there behind a
    long one had its clock running, and 3 of 10 files that each took 1.1 s "took
    longer than 2 s". The clock starts when the worker starts computing it."""
    import functools

    import fpcli.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "CLOCK_S", 0.2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as local:
        # Counted from submission the last task would take 8 s; 5 s leaves 3 s for a
        # loaded machine (with 3.5 s a run beside other jobs once failed).
        calls = [(f"t{i}", functools.partial(_sleep_then, i, 2.0)) for i in range(4)]
        outcomes = dict(dask_executor.run_on_dask(calls, local.scheduler_address, timeout_s=5.0))
    assert outcomes == {"t0": 0, "t1": 1, "t2": 2, "t3": 3}


def test_the_time_limit_applies_on_dask(monkeypatch):
    """--timeout was ignored on Dask: a decode that hung held its file (and the run's
    end) forever. A task running longer than the limit is now reported as a Timeout
    and the run goes on."""
    import functools

    import fpcli.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "CLOCK_S", 0.2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                                  silence_logs=50) as local:
        calls = [("slow", functools.partial(_sleep_then, 1, 30.0)), ("quick", functools.partial(_sleep_then, 2, 0.0))]
        # 5 s, not 1: on a loaded machine a task that sleeps 0 s was once "processing" for
        # more than 1 s (its transfer and start count), and timed out.
        outcomes = dict(dask_executor.run_on_dask(calls, local.scheduler_address, timeout_s=5.0))
    assert outcomes["quick"] == 2
    kind, message = outcomes["slow"]
    assert kind == "Timeout" and "longer than 5 s on a Dask worker" in message


def test_a_file_that_outruns_the_time_limit_on_dask_is_recorded(monkeypatch, cluster, redis_url, tmp_path):
    """A Dask timeout was reported but not recorded: every later run analysed the file
    again, and waited for the limit again, where a local run skips it."""
    import numpy as np

    import fpcli.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "CLOCK_S", 0.2)
    long = tmp_path / "long.wav"   # about 2 s of analysis, far beyond the limit
    write(long, np.random.default_rng(0).uniform(-0.5, 0.5, (600 * 22050, 1)).astype(np.float32), 22050)
    options = RunOptions(executor="dask", scheduler=cluster.scheduler_address, timeout_s=0.3)
    with FingerprintStore.open(redis_url) as store:
        (first,) = [r for kind, r in _events(store, [str(long)], options) if kind == "track"]
        assert first.error_type == "Timeout"
        (failure,) = store.failures()
        assert failure.error_type == "Timeout" and failure.limit_s == 0.3
        (again,) = [r for kind, r in _events(store, [str(long)], options) if kind == "track"]
        assert again.error_type == "Timeout" and again.cached   # skipped, not analysed again


def _events(store, paths, options):
    events = []
    run_library(paths, store, options, lambda kind, payload: events.append((kind, payload)))
    return events


def test_a_scheduler_lost_mid_run_is_one_clear_error(monkeypatch, caplog):
    """The scheduler stopped mid-run: each running file failed with Dask's own words
    ("FutureCancelledError: ... scheduler-connection-lost.\\nClient lost ..."), Dask
    logged its failed reconnection, and a 60-line traceback ("ConnectionPool is
    closed") ended the run without a summary. It is now one error naming the scheduler."""
    import functools

    import fpcli.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "CLOCK_S", 0.2)
    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", "3s")   # the client's reconnection gives up sooner
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as local:
        caplog.set_level(logging.ERROR, logger="distributed.client")   # as a command's logging shows it
        address = local.scheduler_address
        calls = [(f"t{i}", functools.partial(_sleep_then, i, 1.0)) for i in range(6)]
        outcomes = []
        started = time.monotonic()
        with pytest.raises(FpcliError, match=f"lost the Dask scheduler at {address}"):
            for label, outcome in dask_executor.run_on_dask(calls, address, timeout_s=60.0):
                outcomes.append((label, outcome))
                if len(outcomes) == 1:
                    local.sync(local.scheduler.close)   # the scheduler stops
        assert outcomes == [("t0", 0)] and time.monotonic() - started < 60
        # Closing the cut-off client cancelled its reconnection, which logged a traceback.
        assert [r.getMessage()[:60] for r in caplog.records if r.name == "distributed.client"] == []


def test_an_inproc_scheduler_on_the_command_line_is_a_usage_error(tmp_path):
    """`--scheduler inproc://x` gave a traceback after 31 s ("not enough values to
    unpack"): a command is never inside the process of such a cluster."""
    song = write(tmp_path / "s.flac", synth.music_like(2.0, 22050, seed=1), 22050)
    refused = runner.invoke(app, ["--store", "redis://127.0.0.1:1/0", "analyze", str(song), "--executor", "dask",
                                  "--scheduler", "inproc://x"])
    assert refused.exit_code == 2 and "inproc:// names a cluster inside one Python process" in refused.stderr


def test_a_redis_password_given_in_the_environment_reaches_the_workers(cluster, library, tmp_path, monkeypatch):
    """FPCLI_REDIS_PASSWORD on the client (the README's Dask example) never reached the
    workers, whose environment is their own: every file failed "authentication failed"
    after 15 s of retries. (These workers started before the variable was set.)"""
    from tests.conftest import RedisServer

    server = RedisServer(tmp_path / "auth", password="s3 cr@t")
    try:
        monkeypatch.setenv("FPCLI_REDIS_PASSWORD", "s3 cr@t")
        url = f"redis://127.0.0.1:{server.port}/0"
        with FingerprintStore.open(url) as store:
            summary = run_library([str(library)], store, RunOptions(executor="dask",
                                                                   scheduler=cluster.scheduler_address))
            assert (summary.analysed, summary.failed) == (6, 1)   # the broken file
            assert len(list(store.records())) == 6
    finally:
        server.stop()


def test_a_folder_store_the_workers_do_not_share_is_said_so(library, tmp_path, monkeypatch):
    """A folder store that the workers see as another folder (another machine's of that
    name) took every result: "analysed 6, failed 0", exit 0, and nothing stored here,
    run after run. The first result not found in the client's store stops the run.
    (Workers of another machine are played by results computed and not kept here.)"""
    import fpcli.executors.dask as dask_executor
    from fpcli.analyze import compute

    def elsewhere(jobs, scheduler, spec, want, path_map, timeout_s=None, on_not_stored=None):
        for path, identity in jobs:
            yield compute(path, want, identity)[1]

    monkeypatch.setattr(dask_executor, "analyse_on_dask", elsewhere)
    with FingerprintStore.open(tmp_path / "store") as store:
        with pytest.raises(FpcliError, match="is not a folder they share with it"):
            run_library([str(library)], store, RunOptions(executor="dask", scheduler="tcp://127.0.0.1:1"))


def test_a_file_whose_workers_all_died_on_dask_is_a_recorded_crash(library, tmp_path, monkeypatch):
    """A file that killed every worker that ran it (KilledWorker) said Dask's text and
    was not recorded: the next run killed as many workers again. It is a crash, said
    and recorded as a local run records one (skipped until it changes)."""
    import types

    from distributed.scheduler import KilledWorker

    import fpcli.executors.dask as dask_executor
    from fpcli.analyze import failed

    class Dead:
        def result(self):
            raise KilledWorker("fpcli-x", types.SimpleNamespace(address="tcp://w:1"), 3)

    kind, message = dask_executor._outcome(Dead())
    assert (kind, message) == ("WorkerCrashed", "the analysis process died on each of the Dask workers that ran "
                                                "it (4): out of memory, a decoder's crash, or killed from outside")

    def crashing(jobs, scheduler, spec, want, path_map, timeout_s=None, on_not_stored=None):
        for path, _ in jobs:
            yield failed(path, kind, message)

    monkeypatch.setattr(dask_executor, "analyse_on_dask", crashing)
    with FingerprintStore.open(tmp_path / "store") as store:
        run_library([str(library / "t0.flac")], store, RunOptions(executor="dask", scheduler="tcp://127.0.0.1:1"))
        assert [(f.error_type, f.message) for f in store.failures()] == [(kind, message)]


def test_an_empty_password_in_the_url_is_no_password_for_the_workers(monkeypatch):
    """"redis://alice:@host" went to the workers as "alice::PASSWORD@host"."""
    from fpcli.executors.dask import _for_workers
    from fpcli.store import StoreSpec
    from fpcli.store.redis_address import RedisAddress

    monkeypatch.setenv("FPCLI_REDIS_PASSWORD", "p:w@d")
    for url, user in (("redis://alice:@h:1/0", "alice"), ("redis://h:1/0", None), ("redis://bob@h:1/0", "bob")):
        address = RedisAddress.parse(_for_workers(StoreSpec(url)).location or "")
        assert (address.user, address.password, address.host, address.port) == (user, "p:w@d", "h", 1), url


def test_a_forced_run_holds_a_workers_copy_to_the_clients_digest(tmp_path):
    """A worker reading another mount's copy is held to the client's digest when the
    times differ within a mount's precision. A forced run that sent no digest let a
    copy with another middle (same size, head and tail) be stored as the client's file."""
    import shutil

    from fpcli.analyze import Want, look_up
    from fpcli.executors.dask import _compute_mapped

    client = write(tmp_path / "a.wav", synth.music_like(4.0, 22050, seed=1), 22050)
    worker = shutil.copy(client, tmp_path / "worker_a.wav")
    with open(worker, "r+b") as middle:
        middle.seek(os.path.getsize(worker) // 2)
        middle.write(b"\x55" * 4096)
    st = os.stat(client)
    os.utime(worker, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))   # a mount showing whole seconds
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(client)], store, RunOptions(jobs=1))
        identity = look_up(store, str(client), Want(), force=True).identity
    _, result = _compute_mapped(str(client), str(worker), Want(), identity)
    assert result.failed and "holds other content than the client's file" in result.error


def test_a_worker_whose_file_at_the_clients_path_is_another_inode_checks_it_as_a_copy(tmp_path):
    """A node with its own copy at the client's path (or a mount with other inode
    numbers), no --path-map: held to the client's inode, every file failed as "changed
    while it was analysed", on every run. It is a copy now, checked as one."""
    from fpcli.analyze import Want
    from fpcli.executors.dask import compute_and_keep
    from fpcli.store import StoreSpec

    track = write(tmp_path / "t.wav", synth.music_like(2.0, 22050, seed=5), 22050)
    with FingerprintStore.open(tmp_path / "s") as store:
        identity = store.identify(track, digest=False)
    elsewhere = dataclasses.replace(identity, inode=identity.inode + 1)   # the client's file, not the worker's
    result = compute_and_keep(str(track), str(track), elsewhere, StoreSpec(str(tmp_path / "s")), Want())
    assert not result.failed, result.error
    with FingerprintStore.open(tmp_path / "s") as store:
        assert store._read_path_entry(identity.path)["inode"] == identity.inode + 1   # the client's, kept


def test_a_file_gone_or_replaced_at_the_clients_own_path_names_no_path_map(tmp_path, monkeypatch):
    """No path map given: a file deleted or replaced after the client found it was
    said as "... (check the path map)", an option the user never gave; a local run
    says "no such file" or "changed"."""
    import shutil

    from fpcli.analyze import Want, look_up
    from fpcli.executors.dask import compute_and_keep
    from fpcli.store import StoreSpec

    gone = write(tmp_path / "gone.wav", synth.music_like(2.0, 22050, seed=1), 22050)
    replaced = write(tmp_path / "replaced.wav", synth.music_like(2.0, 22050, seed=2), 22050)
    with FingerprintStore.open(tmp_path / "s") as store:
        found = {path: look_up(store, str(path), Want()).identity for path in (gone, replaced)}
    os.unlink(gone)
    shutil.copy(replaced, tmp_path / "new.wav")
    with open(tmp_path / "new.wav", "ab") as longer:
        longer.write(bytes(100))
    os.replace(tmp_path / "new.wav", replaced)
    spec = StoreSpec(str(tmp_path / "s"))
    monkeypatch.chdir(tmp_path)   # the paths as typed, relative; the worker's resolved (no map applies)
    errors = {os.path.basename(path): compute_and_keep(os.path.basename(path), str(path), found[path], spec,
                                                       Want()).error
              for path in (gone, replaced)}
    assert errors["gone.wav"].startswith("no such file or folder on the worker (deleted since the run found it?")
    assert errors["replaced.wav"].startswith("the file the worker reads is not the one the run found (its size")
    assert not any("path map" in error for error in errors.values())
