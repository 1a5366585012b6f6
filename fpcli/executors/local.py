"""Local worker processes: each runs one task at a time, in its own process.

A worker that crashes (a decoder's segfault) or exceeds the time limit costs only its
task; even a single file runs in a worker, so one file gets the same protection as
many. Workers start with single-threaded BLAS (see ``_single_threaded_blas``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from fpcli.errors import FpcliError
from fpcli.memory import keep_buffers_on_heap
from fpcli.results import INTERNAL_ERROR_TYPE, TIMEOUT_ERROR_TYPE, WORKER_CRASHED


@dataclasses.dataclass(frozen=True)
class Task:
    """A unit of work: ``call()`` runs in a worker (a picklable module-level function,
    or a functools.partial of one); ``label`` names it (a path)."""

    label: str
    call: Callable[[], Any]


def run_tasks(tasks: list[Task], *, jobs: int, timeout_s: float,
              warm_up: Callable[[], None] | None = None) -> Iterator[tuple[Task, Any]]:
    """(task, outcome) in completion order. The outcome is the call's return value, or
    a (error_type, message) tuple when its worker crashed or exceeded ``timeout_s``."""
    if not tasks:
        return
    with WorkerPool(max(1, min(jobs, len(tasks))), timeout_s=timeout_s, warm_up=warm_up) as pool:
        yield from pool.run(tasks)


def _worker_main(connection: Connection, warm_up: Callable[[], None] | None) -> None:
    """A worker process: run the calls sent by the parent until it sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    keep_buffers_on_heap()
    _quiet_native_stderr()
    if warm_up is not None:
        warm_up()  # heavy imports before "ready": a time limit measures work, not start-up
    try:
        connection.send("ready")  # imports done: time limits start counting from here
        while True:
            call = connection.recv()
            if call is None:
                return
            connection.send(_outcome_of(call))
    except (EOFError, OSError):  # the parent is gone (killed): nothing to report to
        return


def _outcome_of(call: Callable[[], Any]) -> Any:
    """The call's result; for an exception, an (error_type, message) tuple as for a
    worker that crashed. Bad input comes back as a failed result from the call itself:
    an exception here is a fault of fpcli's, which costs that task only. The worker
    stays up, and no traceback reaches the user's terminal (the message names where)."""
    try:
        return call()
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return INTERNAL_ERROR_TYPE, (f"{type(exc).__name__}: {exc} (at {os.path.basename(where.filename)}:"
                                 f"{where.lineno}; a fault of fpcli: please report it)")


def _quiet_native_stderr() -> None:
    """Decoders' C libraries write their own notes to file descriptor 2 (libmpg123:
    "Note: Trying to resync...", "error: dequantization failed!"), which would reach
    the user's terminal as stray lines; the reason of a failure comes back with its
    result instead. Python's ``sys.stderr`` keeps a copy of the real stderr."""
    try:
        kept = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = open(kept, "w", buffering=1, errors="backslashreplace")  # noqa: SIM115 - for the process
    except OSError:
        pass



def _death(code: int | None) -> str:
    """Why a worker process ended, in words. It said "died (exit code -9)": a signal
    is named, and SIGKILL is how the kernel's out-of-memory killer (or a user's
    kill -9) ends a process, which the file may not be to blame for."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"the analysis process died of {name}{hint}"
    return f"the analysis process died (exit code {code})"

class WorkerPool:
    """Worker processes that each run one task at a time.

    The parent knows which task each worker holds, so a worker that dies (a crash in
    a decoder) or exceeds ``timeout_s`` is replaced and costs only that task, whose
    outcome is then an (error_type, message) tuple.
    """

    def __init__(self, size: int, *, timeout_s: float, warm_up: Callable[[], None] | None = None) -> None:
        self.warm_up = warm_up
        self.size = size
        self.timeout_s = timeout_s
        self._context = _worker_context()
        self._workers: list[_Worker] = []

    def __enter__(self) -> WorkerPool:
        self._workers = [self._spawn() for _ in range(self.size)]
        for worker in self._workers:
            worker.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self._workers:
            worker.stop()

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self.warm_up), daemon=True)
        with _single_threaded_blas():
            _start_fork_server(self._context)
            process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, Any]]:
        pending = list(reversed(tasks))
        while pending or any(w.task for w in self._workers):
            for index, worker in enumerate(self._workers):
                if worker.task is None and pending:
                    self._give(index, pending.pop())
            busy = [w for w in self._workers if w.task is not None]
            ready = multiprocessing.connection.wait(
                [w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=0.25)
            for index, worker in enumerate(self._workers):
                task = worker.task
                if task is None:
                    continue
                if worker.connection in ready:
                    try:
                        outcome = worker.connection.recv()
                    except (EOFError, OSError):
                        outcome = None
                    if outcome is not None:
                        # The next task goes out before the caller stores this result: the
                        # worker decodes while the parent writes (a preview takes ~0.1 s).
                        worker.task = None
                        if pending:
                            self._give(index, pending.pop())
                        yield task, outcome
                        continue
                if worker.process.sentinel in ready or not worker.process.is_alive():
                    yield task, (WORKER_CRASHED, _death(worker.process.exitcode))
                    self._workers[index] = self._replace(worker)
                elif time.monotonic() - worker.started > self.timeout_s:
                    yield task, (TIMEOUT_ERROR_TYPE, f"analysis took longer than {self.timeout_s:g} s")
                    self._workers[index] = self._replace(worker)

    def _give(self, index: int, task: Task) -> None:
        """Hand ``task`` to worker ``index``. A worker killed while idle (the OOM
        killer, a user's kill) cannot take it: the task never started, so it is not its
        file's fault; the worker is replaced and the task handed to the new one, up to
        ``UNDELIVERED_RETRIES`` times. Should that fail too, the worker keeps the task
        and the pool's next look reports it as a crash."""
        for _ in range(UNDELIVERED_RETRIES):
            if self._workers[index].assign(task):
                return
            self._workers[index] = self._replace(self._workers[index])
        self._workers[index].assign(task)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        replacement = self._spawn()
        replacement.wait_ready()
        return replacement


# A task that could not be sent to an idle worker (which had died) goes to a fresh
# worker instead, at most this many times: workers that die as soon as they start
# must not loop a run forever.
UNDELIVERED_RETRIES = 2

# What every analysis task imports: the fork server imports it once for all workers.
PRELOAD = ["numpy", "scipy.fft", "fpcli.analyze", "fpcli.batch", "fpcli.streaming"]


def _worker_context() -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """Workers are forks of a fork server that has imported ``PRELOAD``: a worker is
    ready in milliseconds instead of a fresh interpreter importing numpy and scipy
    (about a second of CPU per worker, which a 2-core machine pays while the parent is
    starting too). The server is a fresh single-threaded process, so forking it is safe
    (forking the parent, which may run threads, is not). It starts with the first
    worker, inside ``_single_threaded_blas``, so its workers inherit one BLAS thread.
    Spawn where there is no fork server (not Linux/macOS)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _start_fork_server(context: Any) -> None:
    """Start the fork server (once) with Ctrl-C ignored, which it inherits: it imports
    ``PRELOAD`` before it ignores SIGINT itself, so a Ctrl-C in a run's first second
    printed its KeyboardInterrupt traceback (40 lines) under the run's own clean end.
    The parent ignores SIGINT only while the server is spawned (milliseconds)."""
    import multiprocessing.forkserver

    if not isinstance(context, multiprocessing.context.ForkServerContext) or \
            threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Environment for a child process: one BLAS/OpenMP thread. The per-frame matrix
    products are small; with a thread pool per worker, the idle threads spin and
    double the CPU time of every worker (measured: 1.44 s vs 0.76 s per track)."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    task: Task | None = None
    started: float = 0.0

    @property
    def path(self) -> str | None:
        return self.task.label if self.task else None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        if not self.connection.poll(timeout_s) or self.connection.recv() != "ready":
            raise FpcliError("a worker process did not start")

    def assign(self, task: Task) -> bool:
        """Give the worker a task; False when it could not be sent (the worker died
        while idle). The worker holds the task either way, so that a pool which keeps
        it finds the process gone and reports a crash, as for one during the task."""
        self.task, self.started = task, time.monotonic()
        try:
            self.connection.send(task.call)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def stop(self) -> None:
        try:
            if self.task is None:
                self.connection.send(None)
                self.process.join(timeout=2)
        except (OSError, ValueError):
            pass
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()
