"""Whole libraries: scanning folders, asking the store what it can answer, running
the rest on an executor (local worker processes or Dask) and saving each result as
it arrives, through the halves of ``fpcli.analyze.fingerprint_of``.

Results are plain data (``TrackResult``, ``RunSummary``); nothing here prints.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

from fpcli.analyze import Want, answer, compute, failed, keep, look_up
from fpcli.audio import AUDIO_EXTENSIONS
from fpcli.errors import FpcliError
from fpcli.executors.local import Task, run_tasks
from fpcli.params import AnalysisParams
from fpcli.results import TrackResult
from fpcli.store import FileIdentity, FingerprintStore
from fpcli.store.core import os_reason, stat_regular

DEFAULT_TIMEOUT_S = 600.0  # per file; a 60-minute track streams in well under 30 s


# -- whole libraries -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScanProblem:
    path: str
    message: str


def scan(paths: list[str]) -> tuple[list[str], list[ScanProblem]]:
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
            stat_regular(resolved)  # a FIFO or device named *.wav would block the reader forever
        except OSError as exc:
            problems.append(ScanProblem(path, os_reason(exc)))
            return
        files.append(path)

    for root in map(os.fsdecode, paths):
        try:
            is_folder = stat.S_ISDIR(os.stat(root).st_mode)
        except OSError as exc:
            problems.append(ScanProblem(root, os_reason(exc)))
            continue
        if is_folder:
            _walk(root, add, problems, seen_dirs)
        else:
            add(root)
    return files, problems


def _walk(root: str, add: Callable[[str], None], problems: list[ScanProblem], seen_dirs: set[tuple[int, int]]) -> None:
    def on_error(exc: OSError) -> None:
        problems.append(ScanProblem(exc.filename or root, f"cannot list folder: {exc.strerror or exc}"))

    for folder, subfolders, names in os.walk(root, onerror=on_error, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError as exc:
            problems.append(ScanProblem(folder, f"cannot read: {os_reason(exc)}"))
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
    failed: int = 0           # failed now, or before and unchanged (then also counted in ``skipped``)
    skipped: int = 0          # known failures of unchanged files, not retried
    problems: int = 0         # scan problems (missing paths, unreadable folders, loops)
    audio_seconds: float = 0.0  # of the tracks analysed in this run (not those from the store)
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def audio_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def count(self, result: TrackResult) -> None:
        if result.failed:
            self.failed += 1
            self.skipped += result.cached
        elif result.cached:
            self.cached += 1
        else:
            self.analysed += 1
            self.audio_seconds += result.duration_s or 0.0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "audio_per_second": self.audio_per_second}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How ``run_library`` treats each file."""

    params: AnalysisParams = dataclasses.field(default_factory=AnalysisParams)
    batch: bool = False
    seconds: float | None = None     # a preview of the first N seconds (None: whole tracks)
    force: bool = False
    retry_failed: bool = False
    jobs: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    executor: str = "local"          # "local" (worker processes) or "dask"
    scheduler: str | None = None     # tcp://host:port of the Dask scheduler
    path_map: tuple[str, ...] = ()   # CLIENT_PREFIX=WORKER_PREFIX rewrites for Dask workers

    @property
    def want(self) -> Want:
        return Want(self.params, batch=self.batch, seconds=self.seconds)


# A callback receives ("start", (total, description)) once, then ("track", TrackResult)
# per file and per scan problem (a failed result of type ScanError, not stored).
Event = Callable[[str, Any], None]


def run_library(paths: list[str], store: FingerprintStore, options: RunOptions,
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
    on_event("start", (len(files) + len(problems), "analysing"))
    for problem in problems:
        on_event("track", failed(problem.path, "ScanError", problem.message))
    todo: list[tuple[str, FileIdentity]] = []
    try:
        for path in files:
            found = look_up(store, path, options.want, force=options.force)
            known = answer(path, found, retry_failed=options.retry_failed)
            if known is not None:
                if found.error is not None and not known.cached:  # unreadable: recorded, skipped until it changes
                    store.save_failure(path, None, known.error_type or "OSError", known.error or "unreadable")
                summary.count(known)
                on_event("track", known)
            elif found.identity is not None:
                todo.append((path, found.identity))
        for result in _analyse_all(todo, options, store):
            summary.count(result)
            on_event("track", result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        store.flush_stats()
        summary.wall_seconds = time.perf_counter() - started
    return summary


def _analyse_all(todo: list[tuple[str, FileIdentity]], options: RunOptions,
                 store: FingerprintStore) -> Iterator[TrackResult]:
    """Results in completion order: computed on local worker processes and kept here,
    or computed and kept by Dask workers in the shared store."""
    if options.executor == "dask":
        from fpcli.executors.dask import PathMap, analyse_on_dask

        if not options.scheduler:
            raise FpcliError("the Dask executor needs a scheduler address (tcp://HOST:PORT)")
        yield from analyse_on_dask(todo, options.scheduler, store.spec, options.want,
                                   PathMap.parse(list(options.path_map)))
        return
    identities = dict(todo)
    tasks = [Task(path, functools.partial(compute, path, options.want, identity)) for path, identity in todo]
    for task, outcome in run_tasks(tasks, jobs=options.jobs, timeout_s=options.timeout_s):
        if isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[1], TrackResult):
            identity, result = outcome
            yield keep(store, task.label, identity, result)
        else:  # the worker crashed or timed out: a failure of this file
            yield keep(store, task.label, identities[task.label], failed(task.label, *outcome))
