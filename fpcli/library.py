"""Analyse files and libraries: one decode feeding the streaming (and, on request,
batch) analyzer; scanning folders; deciding what the store can answer; running the
rest in worker processes.

Results are plain data (``TrackResult``, ``RunSummary``); nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from fpcli.audio import AUDIO_EXTENSIONS, DEFAULT_BLOCK_FRAMES, AudioReader
from fpcli.batch import BatchAnalyzer
from fpcli.errors import AudioReadError, FpcliError
from fpcli.memory import keep_buffers_on_heap
from fpcli.params import AnalysisParams
from fpcli.results import TrackResult
from fpcli.store import FileIdentity, FingerprintStore, Lookup, record_key, result_from_record
from fpcli.streaming import StreamingAnalyzer

DEFAULT_TIMEOUT_S = 600.0  # per file; a 60-minute track streams in well under 30 s


def analyze_file(path: str | os.PathLike, *, params: AnalysisParams | None = None, batch: bool = False,
                 block_frames: int = DEFAULT_BLOCK_FRAMES) -> TrackResult:
    """Decode ``path`` once, streaming every block into the 13D analyzer (and the 25D
    batch analyzer when ``batch``). Undecodable files give a result with status
    ``error``; this function does not raise for bad audio."""
    params = params or AnalysisParams()
    path = os.fspath(path)
    started = time.perf_counter()
    try:
        reader = AudioReader(path, block_frames=block_frames)
        info = reader.info
        streaming = StreamingAnalyzer(info.samplerate, info.channels, params,
                                      expected_frames=reader.expected_frames or None)
        reference = BatchAnalyzer(info.samplerate, info.channels, params) if batch else None
        for block in reader:
            streaming.push(block)
            if reference is not None:
                reference.push(block)
    except AudioReadError as exc:
        return TrackResult(path=path, status="error", error=str(exc), error_type=type(exc).__name__,
                           seconds_taken=time.perf_counter() - started)
    return TrackResult(
        path=path,
        status="partial" if reader.partial else "ok",
        duration_s=reader.frames_read / info.samplerate,
        samplerate=info.samplerate,
        channels=info.channels,
        format=info.format,
        subtype=info.subtype,
        partial_reason=reader.partial_reason,
        streaming=streaming.finish(),
        batch=reference.finish() if reference is not None else None,
        seconds_taken=time.perf_counter() - started,
    )


# -- whole libraries -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScanProblem:
    path: str
    message: str


def scan(paths: list[str | os.PathLike]) -> tuple[list[str], list[ScanProblem]]:
    """Audio files (by extension) under ``paths``, recursively, in a stable order.

    Files given explicitly are taken whatever their extension. Symlinked folders are
    followed once (a loop is reported, not followed again); unreadable folders and
    missing paths are reported as problems, never fatal.
    """
    files: list[str] = []
    problems: list[ScanProblem] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def add(path: str) -> None:
        resolved = os.path.realpath(path)
        if resolved in seen_files:
            return
        seen_files.add(resolved)
        try:
            regular = stat.S_ISREG(os.stat(resolved).st_mode)
        except OSError as exc:
            problems.append(ScanProblem(path, f"cannot read: {exc.strerror or exc}"))
            return
        if regular:  # a FIFO or device named *.wav would block the reader forever
            files.append(path)
        else:
            problems.append(ScanProblem(path, "not a regular file"))

    for root in map(os.fspath, paths):
        if os.path.isdir(root):
            _walk(root, add, problems, seen_dirs)
        elif os.path.exists(root):
            add(root)
        else:
            problems.append(ScanProblem(root, "no such file or folder"))
    return files, problems


def _walk(root: str, add, problems: list[ScanProblem], seen_dirs: set[tuple[int, int]]) -> None:
    def on_error(exc: OSError) -> None:
        problems.append(ScanProblem(exc.filename or root, f"cannot list folder: {exc.strerror or exc}"))

    for folder, subfolders, names in os.walk(root, onerror=on_error, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError as exc:
            problems.append(ScanProblem(folder, f"cannot read: {exc.strerror or exc}"))
            subfolders[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            problems.append(ScanProblem(folder, "symlink loop or repeated folder: skipped"))
            subfolders[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        subfolders.sort()
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                add(os.path.join(folder, name))


@dataclasses.dataclass
class RunSummary:
    """Counts of one library run (plain data for the CLI to render)."""

    analysed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0          # known failures of unchanged files
    problems: int = 0         # scan problems (missing paths, unreadable folders, loops)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def audio_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "audio_per_second": self.audio_per_second}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How ``run_library`` treats each file."""

    params: AnalysisParams = dataclasses.field(default_factory=AnalysisParams)
    batch: bool = False
    force: bool = False
    retry_failed: bool = False
    jobs: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    executor: str = "local"          # "local" (worker processes) or "dask"
    scheduler: str | None = None     # tcp://host:port of the Dask scheduler
    path_map: tuple[str, ...] = ()   # CLIENT_PREFIX=WORKER_PREFIX rewrites for Dask workers


# A callback receives ("start", (total, description)) once, then ("track", TrackResult)
# per file and ("skip", (path, message)) for known failures and scan problems.
Event = Callable[[str, Any], None]


def run_library(paths: list[str | os.PathLike], store: FingerprintStore, options: RunOptions,
                on_event: Event = lambda kind, payload: None) -> RunSummary:
    """Analyse every audio file under ``paths`` that the store cannot answer, saving
    each result as it arrives; answer the others from the store without decoding.

    Interrupting (KeyboardInterrupt) keeps every finished track and returns a summary
    with ``interrupted`` set.
    """
    started = time.perf_counter()
    summary = RunSummary()
    files, problems = scan(paths)
    summary.problems = len(problems)
    on_event("start", (len(files), "analysing"))
    for problem in problems:
        on_event("skip", (problem.path, problem.message))
    todo: list[tuple[str, Lookup]] = []
    try:
        for path in files:
            found = store.lookup(path, options.params.key(), need_batch=options.batch) if not options.force \
                else Lookup(None, _identity_or_none(store, path))
            if found.failure is not None and not options.retry_failed:
                summary.skipped += 1
                on_event("skip", (path, f"failed before ({found.failure['message']}); unchanged, skipped"))
            elif found.record is not None:
                result = result_from_record(found.record, path)
                summary.cached += 1
                summary.audio_seconds += result.duration_s or 0.0
                on_event("track", result)
            else:
                todo.append((path, found))
        previous = {path: found for path, found in todo}
        for result in _analyse_all([path for path, _ in todo], options, store):
            if options.executor != "dask":  # Dask workers save into the shared store themselves
                _save(store, result, previous[result.path])
            if result.failed:
                summary.failed += 1
            else:
                summary.analysed += 1
                summary.audio_seconds += result.duration_s or 0.0
            on_event("track", result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        store.flush_stats()
        summary.wall_seconds = time.perf_counter() - started
    return summary


def _identity_or_none(store: FingerprintStore, path: str) -> FileIdentity | None:
    try:
        return store.identify(path)
    except OSError:
        return None


def _save(store: FingerprintStore, result: TrackResult, found: Lookup) -> None:
    identity = found.identity
    if result.failed:
        reason = (result.error or "failed").removeprefix(f"{result.path}: ")  # the record names the file
        store.save_failure(identity, result.path, result.error_type or "Error", reason)
        return
    if identity is None:
        identity = store.identify(result.path)
    old = store.backend.get(record_key(identity.content_key, result.streaming.params_key))
    store.save(identity, result, previous=old)


def _analyse_all(paths: list[str], options: RunOptions, store: FingerprintStore) -> Iterator[TrackResult]:
    """Results in completion order: on local worker processes (see ``run_tasks``), or on
    a Dask cluster whose workers save into the shared store."""
    if options.executor == "dask":
        from fpcli.dask_executor import PathMap, StoreSpec, analyse_on_dask

        if not options.scheduler:
            raise FpcliError("--executor dask needs --scheduler tcp://HOST:PORT")
        spec = StoreSpec(**store.opened_with)
        yield from analyse_on_dask(paths, options.scheduler, spec, options.params, options.batch,
                                   PathMap.parse(list(options.path_map)))
        return
    tasks = [Task(path, functools.partial(analyze_file, path, params=options.params, batch=options.batch))
             for path in paths]
    for task, outcome in run_tasks(tasks, jobs=options.jobs, timeout_s=options.timeout_s):
        yield outcome if isinstance(outcome, TrackResult) else _failure(task.label, *outcome)


@dataclasses.dataclass(frozen=True)
class Task:
    """A unit of work: ``call()`` runs in a worker (a picklable module-level function,
    or a functools.partial of one); ``label`` names it (a path)."""

    label: str
    call: Callable[[], Any]


def run_tasks(tasks: list[Task], *, jobs: int, timeout_s: float) -> Iterator[tuple[Task, Any]]:
    """(task, outcome) in completion order. The outcome is the call's return value, or
    a (error_type, message) tuple when its worker crashed or exceeded ``timeout_s``.
    Several tasks go to worker processes; a single task runs in this process."""
    if not tasks:
        return
    if len(tasks) == 1:
        yield tasks[0], tasks[0].call()
        return
    with WorkerPool(max(1, min(jobs, len(tasks))), timeout_s=timeout_s) as pool:
        yield from pool.run(tasks)


def _worker_main(connection: Connection) -> None:
    """A worker process: run the calls sent by the parent until it sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    keep_buffers_on_heap()
    connection.send("ready")  # imports done: time limits start counting from here
    while True:
        call = connection.recv()
        if call is None:
            return
        connection.send(call())


class WorkerPool:
    """Worker processes that each run one task at a time.

    The parent knows which task each worker holds, so a worker that dies (a crash in
    a decoder) or exceeds ``timeout_s`` is replaced and costs only that task, whose
    outcome is then an (error_type, message) tuple.
    """

    def __init__(self, size: int, *, timeout_s: float) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context("spawn")  # no fork with live threads
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
        process = self._context.Process(target=_worker_main, args=(child,), daemon=True)
        with _single_threaded_blas():
            process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, Any]]:
        pending = list(reversed(tasks))
        while pending or any(w.task for w in self._workers):
            for worker in self._workers:
                if worker.task is None and pending:
                    worker.assign(pending.pop())
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
                        worker.task = None
                        yield task, outcome
                        continue
                if worker.process.sentinel in ready or not worker.process.is_alive():
                    code = worker.process.exitcode
                    yield task, ("WorkerCrashed", f"the analysis process died (exit code {code})")
                    self._workers[index] = self._replace(worker)
                elif time.monotonic() - worker.started > self.timeout_s:
                    yield task, ("Timeout", f"analysis took longer than {self.timeout_s:g} s")
                    self._workers[index] = self._replace(worker)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        replacement = self._spawn()
        replacement.wait_ready()
        return replacement


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

    def assign(self, task: Task) -> None:
        self.task, self.started = task, time.monotonic()
        self.connection.send(task.call)

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


def _failure(path: str, error_type: str, message: str) -> TrackResult:
    return TrackResult(path=path, status="error", error=f"{path}: {message}", error_type=error_type)
