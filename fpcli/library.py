"""Whole libraries: scanning folders, asking the store what it can answer, running
the rest on an executor (local worker processes or Dask) and saving each result as
it arrives, through the halves of ``fpcli.analyze.fingerprint_of``.

Results are plain data (``TrackResult``, ``RunSummary``); nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Generator
from typing import Any

from fpcli.analyze import TRANSIENT_FAILURES, Want, answer, compute, failed, keep, look_up_all, not_stored, preload
from fpcli.cue import is_entry
from fpcli.errors import FpcliError, ParameterError, StoreError, StoreReadOnlyError
from fpcli.executors import DEFAULT_TIMEOUT_S
from fpcli.executors.local import Task, run_tasks
from fpcli.params import AnalysisParams
from fpcli.results import TIMEOUT_ERROR_TYPE, WORKER_CRASHED, TrackResult
from fpcli.scan import scan
from fpcli.store import FileIdentity, FingerprintStore, Record, is_redis_url
from fpcli.store.records import ACCESS_ERROR_TYPE, entry_file, record_key, resolve


@dataclasses.dataclass
class RunSummary:
    """Counts of one library run (plain data for the CLI to render)."""

    analysed: int = 0
    cached: int = 0
    failed: int = 0           # failed now, or before and unchanged (then also counted in ``skipped``)
    skipped: int = 0          # known failures of unchanged files, not retried
    problems: int = 0         # scan problems (missing or unreadable paths, a symlink loop given)
    ignored: str = ""         # what the scan did not analyse and why ("ignored 3 files: .jpg 2, ...")
    skipped_new: int = 0      # --upgrade: files with no record of their content now (new or changed), left
    audio_seconds: float = 0.0  # heard by this run's analyses (a preview: its seconds, not the track's)
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
            # What was decoded: a preview's seconds heard, not its track's length (a
            # --seconds 5 pass over 2-minute tracks reported 495 s analysed per second).
            heard = result.streaming.seconds if result.streaming is not None else result.duration_s
            self.audio_seconds += heard or 0.0

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
    exclude: tuple[str, ...] = ()    # gitignore-style patterns, relative to each path given
    upgrade: bool = False            # only finish previews (files without a record are left alone)

    @property
    def want(self) -> Want:
        return Want(self.params, batch=self.batch, seconds=self.seconds)


# A callback receives ("start", (total, description)) once, then ("track", TrackResult)
# per file and per scan problem (a failed result of type ScanError, not stored),
# ("advance", n) for n files passed over without a result (--upgrade's files without a
# preview), and ("stopped", RunSummary) when an error ends a run that had reported a track.
Event = Callable[[str, Any], None]


Todo = list[tuple[float, str, FileIdentity]]  # (how well known, path, identity) of files to analyse


def run_library(paths: list[str], store: FingerprintStore, options: RunOptions,
                on_event: Event = lambda kind, payload: None) -> RunSummary:
    """Analyse every audio file under ``paths`` that the store cannot answer, saving
    each result as it arrives; answer the others from the store without decoding.
    Files that look like copies of one another (hard links, duplicates) are analysed
    once: the others wait, and are then answered from the store when their content
    is the same.

    Interrupting (KeyboardInterrupt) keeps every finished track and returns a summary
    with ``interrupted`` set. An error that ends the run after it reported a track (the
    store failed, the cluster was lost) is raised as it came, after a "stopped" event
    whose payload is the summary of what the run did before it (a Redis gone mid-run
    printed the error alone, and the user could not tell how much was done).

    Events (kind, payload): "start" (files and problems to go through, a description),
    "track" (a ``TrackResult``), "advance" (how many files were passed over without a
    result: --upgrade's files with no preview) and "stopped" (the summary).
    """
    started, began = time.perf_counter(), time.time()
    summary = RunSummary()
    found = scan(paths, exclude=options.exclude)
    files, problems = found.files, found.problems
    summary.problems = len(problems)
    summary.ignored = found.ignored_summary()
    on_event("start", (len(files) + len(problems), "analysing"))
    for problem in problems:
        on_event("track", failed(problem.path, "ScanError", problem.message))
    stopped: FpcliError | None = None
    try:
        _forget_split_images(store, files, options.params.key())
        missed: set[str] = set()
        first, copies = split_copies(_answer_known(files, store, options, summary, on_event, missed=missed))
        failed_contents = _analyse(first, store, options, summary, on_event)
        copies = _share_failures(copies, failed_contents, store, options, summary, on_event)
        if copies:  # their content is stored now (unless only the content keys were equal)
            # Looked up again: counted by their second answer.
            store.take_back_misses(sum(1 for _, path, _ in copies if path in missed))
            # A forced run's copies are answered only by what it analysed, never by a failure
            # recorded before it (a file sharing only a content key with another waited
            # here, and its old failure answered it where the run was to analyse it).
            again = dataclasses.replace(options, force=False, retry_failed=options.retry_failed or options.force)
            rest = _answer_known([path for _, path, _ in copies], store, again, summary, on_event,
                                 analysed_since=began if options.force else None)
            _analyse(rest, store, options, summary, on_event)
    except KeyboardInterrupt:
        summary.interrupted = True
    except FpcliError as exc:
        stopped = None if isinstance(exc, ParameterError) else exc
        raise
    finally:
        # A store that failed cannot take the run's statistics: its error is the one to say.
        with contextlib.suppress(StoreError) if stopped else contextlib.nullcontext():
            store.flush_stats()
        summary.wall_seconds = time.perf_counter() - started
        if stopped is not None and summary.analysed + summary.cached + summary.failed + summary.problems:
            on_event("stopped", summary)   # an error before any track (a cluster never reached): itself alone
    return summary


def _forget_split_images(store: FingerprintStore, files: list[str], params_key: str) -> None:
    """Forget the whole-track record of each album image this run splits into tracks
    (``files`` as the scan gave them, ``image#NN``): an image analysed whole (its sheet
    unusable then, or left out) kept that record once its sheet split it, a search hit
    beside its own tracks that no prune dropped. Only the run knows which sheets split
    (--exclude and ignore files leave a sheet out on purpose, and the image whole).
    Read from the images' path entries, never the images themselves."""
    images = sorted({resolve(entry_file(path)[0]) for path in files if is_entry(path)})
    for image, digest in store.digests_of(images).items() if images else ():
        record = store.read_record(record_key(digest, params_key))
        if record is not None and any(seen.path == image for seen in record.paths):
            with contextlib.suppress(StoreReadOnlyError):   # a user who may only read: kept, as before
                store.forget_paths(record, [image])


def _answer_known(files: list[str], store: FingerprintStore, options: RunOptions, summary: RunSummary,
                  on_event: Event, *, analysed_since: float | None = None, missed: set[str] | None = None) -> Todo:
    """Report each file the store can answer (a hit, a known failure, an unreadable
    file); the others are returned to be analysed. ``analysed_since``: only records
    analysed since then answer (a forced run's copies, served what it analysed).
    ``missed`` gets the files returned whose look-up was counted as a miss (not one
    forced, nor a known failure tried again: those are not counted)."""
    todo: Todo = []
    left_alone = 0
    for path, lookup in zip(files, look_up_all(store, files, options.want, force=options.force), strict=True):
        if analysed_since is not None and lookup.record is not None and lookup.record.analysed_at < analysed_since:
            lookup = dataclasses.replace(lookup, record=None)
        known = answer(path, lookup, retry_failed=options.retry_failed, limit_s=options.timeout_s)
        if known is not None:
            if lookup.error is not None and not known.cached:  # unreadable: recorded (and tried again next run)
                store.save_failure(path, None, known.error_type or "OSError", known.error or "unreadable")
            summary.count(known)
            on_event("track", known)
        elif lookup.identity is not None and (lookup.previous is not None or not options.upgrade):
            todo.append((_heard(lookup.previous), path, lookup.identity))
            if missed is not None and not options.force and lookup.failure is None:
                missed.add(path)
        else:
            left_alone += 1
    summary.skipped_new += left_alone
    if left_alone:   # counted in the bar's total: an --upgrade bar stopped at 2/40 for 38 left alone
        on_event("advance", left_alone)
    return todo


def _analyse(todo: Todo, store: FingerprintStore, options: RunOptions, summary: RunSummary,
             on_event: Event) -> dict[tuple[str, str], TrackResult]:
    """Analyse ``todo``, reporting each result; returns the failures by content (of
    the content itself: a file that could not be read is no news of its copies)."""
    content_of = {path: _content(identity) for _, path, identity in todo}
    failures: dict[tuple[str, str], TrackResult] = {}
    for result in analyse_all(dispatch_order(todo), options, store):
        summary.count(result)
        on_event("track", result)
        if result.failed and result.error_type not in PATH_FAILURES and result.path in content_of:
            failures[content_of[result.path]] = result
    return failures


# Failures of a path, not of a content: its copies may still be read.
PATH_FAILURES = TRANSIENT_FAILURES | {ACCESS_ERROR_TYPE}


def _share_failures(copies: Todo, failures: dict[tuple[str, str], TrackResult], store: FingerprintStore,
                    options: RunOptions, summary: RunSummary, on_event: Event) -> Todo:
    """Answer the copies of a content whose first file failed with its failure (saved
    for each, as for any failed file); the others are returned. A copy of a file that
    timed out was analysed again, to the same timeout: N copies of a file that hangs
    a decoder cost N time limits, though copies are analysed once."""
    left: Todo = []
    digests: dict[str, str | None] = {}   # each file read whole once, however many copies it has
    for item in copies:
        _, path, identity = item
        first = failures.get(_content(identity))
        if first is None or not _same_bytes(first.path, path, identity, digests):
            left.append(item)
            continue
        result = keep(store, path, identity, failed(path, first.error_type or "Error", first.error or "failed"),
                      options.timeout_s)
        summary.count(result)
        on_event("track", result)
    return left


def _same_bytes(first: str, copy: str, identity: FileIdentity, digests: dict[str, str | None]) -> bool:
    """Whether ``copy`` holds what ``first`` holds: by its digest when known, else by
    reading both whole (a content key, the file's ends, only looked the same; reading
    runs at about 1 GB/s, far below a time limit). ``digests`` keeps what was read."""
    if identity.digest:
        return True   # grouped by digest: the same bytes
    ours, theirs = _digest_of(first, digests), _digest_of(copy, digests)
    return ours is not None and ours == theirs


def _digest_of(path: str, digests: dict[str, str | None]) -> str | None:
    """The digest of the file of ``path`` (its album image for a CUE track), read once;
    None when it cannot be read."""
    from fpcli.store import file_digest
    from fpcli.store.records import entry_file

    if path not in digests:
        try:
            digests[path] = file_digest(entry_file(path)[0])
        except OSError:
            digests[path] = None
    return digests[path]


def _content(identity: FileIdentity) -> tuple[str, str]:
    """What ``split_copies`` groups files by: the digest, or the content key before one is known."""
    return ("digest", identity.digest) if identity.digest else ("content", identity.content_key)


def split_copies(todo: Todo) -> tuple[Todo, Todo]:
    """(the first file of each content, the others): files whose digest, or when it is
    not known yet (a content never stored) whose content key, another file has. Ten
    thousand links to one file are one analysis, not ten thousand; a file whose
    content key only looked the same is analysed after the others."""
    first: Todo = []
    copies: Todo = []
    seen: set[tuple[str, str]] = set()
    for item in todo:
        content = _content(item[2])
        (copies if content in seen else first).append(item)
        seen.add(content)
    return first, copies


def dispatch_order(todo: list[tuple[float, str, FileIdentity]]) -> list[tuple[str, FileIdentity]]:
    """(path, identity) of the files to analyse, in the order workers take them: the
    least known first (nothing heard, then the lowest preview confidence), and among
    equals the largest file first. A large file started last runs alone on one worker
    while the others idle (the real-music library's largest file sorted last by name);
    started first, the small ones fill in around it. Size stands in for duration."""
    ordered = sorted(todo, key=lambda item: (item[0], -item[2].size))
    return [(path, identity) for _, path, identity in ordered]


def _heard(previous: Record | None) -> float:
    """How well a file is known already: -1 with no record, else the mean confidence of
    its preview (0..1), so that an upgrade pass finishes the least known first."""
    if previous is None:
        return -1.0
    confidence = previous.streaming.confidence
    return sum(confidence.values()) / len(confidence) if confidence else 0.0


def _check_shared(store: FingerprintStore, path: str, params_key: str) -> None:
    """FpcliError unless the record a Dask worker stored for ``path`` is in ``store``: a
    folder store the workers do not share (another machine's folder of that name) took
    every result, and the run said "analysed 10, failed 0" with nothing stored here."""
    try:
        found = store.record_for_path(path, params_key) is not None
    except OSError:   # the file is gone meanwhile: nothing to tell by
        return
    if not found:
        raise FpcliError(f"the Dask workers store their results where this machine does not see them: "
                         f"{store.location} is not a folder they share with it (give a Redis store, redis://..., "
                         "or a folder on storage every worker and this machine mount at that path)")


def analyse_all(todo: list[tuple[str, FileIdentity]], options: RunOptions,
                store: FingerprintStore) -> Generator[TrackResult, None, None]:
    """Results of files the store cannot answer ((path, identity) from ``look_up``), in
    completion order: computed on ``options.jobs`` local worker processes and kept
    here, or computed and kept by Dask workers in the shared store."""
    if options.executor == "dask":
        from fpcli.executors.dask import PathMap, analyse_on_dask

        if not options.scheduler:
            raise FpcliError("the Dask executor needs a scheduler address (tcp://HOST:PORT)")
        identities = dict(todo)
        shared = is_redis_url(store.location)   # a folder: seen shared once a worker's record is found here
        for result in analyse_on_dask(todo, options.scheduler, store.spec, options.want,
                                      PathMap.parse(list(options.path_map)), options.timeout_s,
                                      lambda refusal: not_stored(store, refusal.reason, full=refusal.full)):
            if not shared and not result.failed and not store.unsaved:
                _check_shared(store, result.path, options.params.key())
                shared = True
            if result.error_type in (TIMEOUT_ERROR_TYPE, WORKER_CRASHED):
                # Workers keep what they compute; a time limit is the client's verdict, and
                # recorded as a local one is (a later result of the worker's thread, if it
                # finishes, still serves: a record outranks a failure), as is a crash of
                # every worker that ran it, which no worker lived to record.
                result = keep(store, result.path, identities[result.path], result, options.timeout_s)
            yield result
        return
    identities = dict(todo)
    tasks = [Task(path, functools.partial(compute, path, options.want, identity)) for path, identity in todo]
    for task, outcome in run_tasks(tasks, jobs=options.jobs, timeout_s=options.timeout_s, warm_up=preload):
        if isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[1], TrackResult):
            identity, result = outcome
            yield keep(store, task.label, identity, result)
        else:  # the worker crashed or timed out: a failure of this file
            yield keep(store, task.label, identities[task.label], failed(task.label, *outcome), options.timeout_s)
