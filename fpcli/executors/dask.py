"""Run the per-file analysis on a Dask distributed cluster (``--executor dask``).

The client (this process) scans, asks the store what it already has and submits the
rest in bounded batches, so its memory does not grow with the library. Each task runs
on a worker the same two halves of ``fpcli.analyze.fingerprint_of`` as a local run:
digest and decode the file (at its worker-side path, see ``PathMap``), then save the
result merged with the stored record (or the failure) into the shared store under
the client's path; only the result travels back. A task whose worker dies is re-run by Dask on another worker; saving is
idempotent (same key, merged record), and the client counts each task once, when its
future completes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fpcli.analyze import Want, compute, failed, keep
from fpcli.errors import FpcliError, ParameterError, StoreError, StoreFullError, StoreReadOnlyError
from fpcli.memory import keep_buffers_on_heap
from fpcli.results import TIMEOUT_ERROR_TYPE, WORKER_CRASHED, TrackResult
from fpcli.store import FileIdentity, FingerprintStore, StoreSpec, is_redis_url
from fpcli.store.records import ACCESS_ERROR_TYPE, entry_file, entry_identity_keys, os_reason, resolve, stat_regular
from fpcli.store.redis_address import RedisAddress

IN_FLIGHT_PER_WORKER = 4   # tasks submitted ahead per worker thread (bounds the client's memory)
TASK_RETRIES = 2           # Dask re-runs a task that raised; a lost worker's tasks are rescheduled anyway
CONNECT_TIMEOUT = "15s"    # to reach the scheduler
WORKER_WAIT_S = 60.0       # with no worker for this long (none joined, or all died), the run stops
POLL_S = 0.01              # how often the client looks for finished tasks (cheap: no blocking call)
CLOCK_S = 1.0              # how often it asks the scheduler which tasks run, for --timeout


@dataclasses.dataclass(frozen=True)
class PathMap:
    """Rewrite client paths to the paths workers see: ``--path-map /music=/mnt/music``.

    A worker never gets a path as the user typed it: it would resolve a relative one
    against its own working folder, where ``../lib/a.flac`` is another file or none
    (each such file was recorded as failed, and skipped by later local runs too)."""

    pairs: tuple[tuple[str, str], ...] = ()   # (absolute client prefix, worker prefix), each ending in a separator

    @classmethod
    def parse(cls, items: list[str] | None) -> PathMap:
        """Pairs of ``CLIENT_PREFIX=WORKER_PREFIX`` items. The client prefix is made
        absolute here, on the client, and kept also symlink-free, as the store names
        files (``/music`` may be a link to ``/data/music``); the worker prefix must be
        absolute, for the reason above."""
        pairs = []
        for item in items or []:
            local, sep, remote = item.partition("=")
            if not sep or not local or not remote:
                raise ParameterError(f"{item!r}: expected CLIENT_PREFIX=WORKER_PREFIX", "path_map")
            if not os.path.isabs(remote):
                raise ParameterError(f"{item!r}: WORKER_PREFIX must be an absolute path (a worker's working "
                                     "folder is not the client's)", "path_map")
            for client in dict.fromkeys((os.path.abspath(local), resolve(local))):
                pairs.append((os.path.join(client, ""), os.path.join(remote, "")))
        return cls(tuple(pairs))

    def to_worker(self, path: str, resolved: str | None = None) -> str:
        """Where a worker reads the client's file ``path`` (absolute, or relative to the
        client's working folder; ``resolved``: its symlink-free path when known, the
        store identity's): its absolute path, else its resolved one, rewritten by the
        pair of the longest client prefix that starts it, as mounts nest (/music and
        /music/live: the first given won, and its order decided a run); with none, the
        resolved path itself. Called on the client."""
        resolved = resolved or resolve(path)
        for candidate in dict.fromkeys((os.path.abspath(path), resolved)):
            matching = [(local, remote) for local, remote in self.pairs if candidate.startswith(local)]
            if matching:
                local, remote = max(matching, key=lambda pair: len(pair[0]))
                return remote + candidate[len(local):]
        return resolved


@dataclasses.dataclass(frozen=True)
class NotStored:
    """A worker's result the shared store refused: ``reason`` in the server's words,
    ``full`` for a store full under noeviction (else this user may only read)."""

    result: TrackResult
    reason: str
    full: bool


def compute_and_keep(path: str, worker_path: str, identity: FileIdentity, spec: StoreSpec,
                     want: Want) -> TrackResult | NotStored:
    """The task a worker runs: the two halves of ``fingerprint_of`` (digest and decode
    at the worker's path, then save merged into the shared store under the path the
    client knows), returning the result, or it wrapped in ``NotStored``: a refusal
    raised here failed the task (three times, as Dask retries), and the file was
    reported as a StoreFullError of its own, where a local run says what it could not
    store or stops."""
    if worker_path in (path, identity.path) and _same_inode(worker_path, identity):
        identity, result = compute(worker_path, want, identity)   # no map applies: the client's own file
    else:
        # Mapped, or at the same path but another file than the client's (a node's own
        # copy, a mount with other inode numbers): a copy, checked as one. Held to the
        # client's inode, every file of such a worker failed as "changed while analysed".
        # No map applied when the worker reads the client's path (as typed, or resolved:
        # a relative or linked path given was said "check the path map" all the same).
        mapped = worker_path not in (path, identity.path)
        identity, result = _compute_mapped(path, worker_path, want, identity, mapped=mapped)
    store = _worker_store(spec)
    try:
        return keep(store, path, identity, result, refused_ok=False)
    except (StoreReadOnlyError, StoreFullError) as exc:
        return NotStored(dataclasses.replace(result, path=path), str(exc), isinstance(exc, StoreFullError))
    finally:
        with contextlib.suppress(StoreReadOnlyError, StoreFullError):
            store.flush_stats()


MTIME_PRECISION_NS = 2 * 10**9   # the coarsest a mount shows modification times (FAT: 2 s)


def _same_inode(worker_path: str, identity: FileIdentity) -> bool:
    """Whether the worker's file at ``worker_path`` is the one the client identified (its
    inode, when the client knew it); a file the worker cannot stat is left to the copy's
    checks, which say why."""
    if identity.inode is None:
        return True
    try:
        return stat_regular(worker_path).st_ino == identity.inode
    except OSError:
        return False


def _compute_mapped(path: str, worker_path: str, want: Want, identity: FileIdentity,
                    mapped: bool = True) -> tuple[FileIdentity, TrackResult]:
    """``compute`` of a file the worker reads at another path (--path-map): a copy that
    must have the client's size, modification time and content key (for a CUE track,
    salted with its bounds in the worker's sheet). A mount that shows times to the
    second (SMB, NFS, FUSE) failed every file as "changed while it was analysed", on
    every run: a time that differs by less than MTIME_PRECISION_NS is the mount's
    precision, and the worker then reads its copy whole for its digest, which must be
    the client's when the client knows it (a copy of the same size with other content
    was stored as the client's file, and served for every true copy). A copy missing on the
    worker of a file whose digest was known was "deleted while it was analysed".
    ``mapped``: a path map gave ``worker_path``; else it is the client's own path, whose
    file the worker finds gone or another (deleted or replaced since the client saw it,
    or a worker machine's own file): "check the path map" then named an option never
    given."""
    say = _CopyWords(worker_path, mapped)
    try:
        seen = stat_regular(entry_file(worker_path)[0])
    except OSError as exc:
        # The client's file exists (it was stat'ed there): the worker's copy is what is
        # missing, and saying "no such file" of the client's path blamed the wrong one.
        return identity, failed(path, ACCESS_ERROR_TYPE, say.missing(os_reason(exc)))
    if seen.st_size != identity.size or abs(seen.st_mtime_ns - identity.mtime_ns) >= MTIME_PRECISION_NS:
        return identity, failed(path, ACCESS_ERROR_TYPE, say.changed())
    # The content key (the first 128 KiB, salted for a CUE track with its bounds in the
    # worker's sheet): a copy with other audio, or a sheet that splits the image
    # otherwise, was analysed and stored as the client's file on its first analysis.
    if entry_identity_keys(worker_path, seen.st_size, digest=False)[0] != identity.content_key:
        return identity, failed(path, ACCESS_ERROR_TYPE, say.other_content(sheet=True))
    # The worker's copy is checked for a change while read by its own inode; the client's
    # stays in the identity returned (its path entry keeps the client's file's).
    here = dataclasses.replace(identity, inode=seen.st_ino)
    if seen.st_mtime_ns == identity.mtime_ns:
        as_seen, result = compute(worker_path, want, here)
        return dataclasses.replace(as_seen, inode=identity.inode), result
    as_seen, result = compute(worker_path, want, dataclasses.replace(here, mtime_ns=seen.st_mtime_ns, digest=None))
    if identity.digest is not None and as_seen.digest is not None and as_seen.digest != identity.digest:
        return identity, failed(path, ACCESS_ERROR_TYPE, say.other_content(sheet=False))
    return dataclasses.replace(identity, digest=as_seen.digest), result


@dataclasses.dataclass(frozen=True)
class _CopyWords:
    """How a worker says its file at ``worker_path`` is missing or not the client's:
    a path map's copy (``mapped``), or the client's own path, where the file was
    deleted or replaced since the client found it (or a worker machine holds another)."""

    worker_path: str
    mapped: bool

    def missing(self, reason: str) -> str:
        if self.mapped:
            return f"{reason} on the worker, as {self.worker_path} (check the path map)"
        return f"{reason} on the worker (deleted since the run found it? A worker on another machine must see " \
               "the file at this path)"

    def changed(self) -> str:
        if self.mapped:
            return f"the worker's copy, {self.worker_path}, is not the client's file (its size or time differs: " \
                   "check the path map, or copy it again)"
        return f"the file the worker reads is not the one the run found (its size or time differs: {self._since}"

    def other_content(self, *, sheet: bool) -> str:
        if self.mapped:
            return f"the worker's copy, {self.worker_path}, holds other content than the client's file " + (
                "(or its CUE sheet other tracks: check the path map)" if sheet else
                "(check the path map, or copy it again)")
        return f"the file the worker reads holds other content than the one the run found ({self._since}"

    @property
    def _since(self) -> str:
        return "changed since? Analyse it again when it is written; a worker on another machine must see the " \
               "same file at this path)"


# The stores this worker process has open, by spec, each with the identity of its
# directory then: opening one (SQLite's settings, the census table; a Redis connection)
# took ~20 ms a task, more than analysing a short file.
_OPEN_STORES: dict[StoreSpec, tuple[tuple[int, int] | None, FingerprintStore]] = {}
_OPEN_LOCK = threading.Lock()


def _worker_store(spec: StoreSpec) -> FingerprintStore:
    """The store for ``spec`` that this worker process keeps open for its tasks (worker
    threads share it: diskcache and redis-py are thread-safe). A store directory that
    was removed or replaced since (``rm -rf`` and a fresh run on a long-lived cluster) is
    opened again: an open database of a deleted directory would take the results where
    nobody can read them."""
    identity = _directory_identity(spec)
    with _OPEN_LOCK:
        kept = _OPEN_STORES.get(spec)
        if kept is not None and kept[0] == identity:
            return kept[1]
        if kept is not None:
            with contextlib.suppress(StoreError):  # "removed while in use": known, and why it is opened again
                kept[1].close()
        store = FingerprintStore.from_spec(spec)
        _OPEN_STORES[spec] = (_directory_identity(spec), store)
        return store


def _directory_identity(spec: StoreSpec) -> tuple[int, int] | None:
    """(device, inode) of a directory store; None for Redis or a directory not there."""
    if is_redis_url(spec.location):
        return None
    try:
        info = os.stat(spec.resolved().location or "")
    except (OSError, StoreError):
        return None
    return info.st_dev, info.st_ino


def analyse_on_dask(jobs: list[tuple[str, FileIdentity]], scheduler: str, spec: StoreSpec, want: Want,
                    path_map: PathMap, timeout_s: float | None = None,
                    on_not_stored: Callable[[NotStored], None] = lambda refusal: None) -> Iterator[TrackResult]:
    """Results in completion order for (client path, identity) pairs; workers save
    them into the shared store, and a result the store refused goes to
    ``on_not_stored`` (which may raise to stop the run) before it is yielded."""
    if not (is_redis_url(spec.location) or os.path.isabs(spec.location or "")):
        raise FpcliError("a Dask cluster needs a store its workers can reach: a Redis store (redis://...) "
                         "or an absolute path on shared storage")
    spec = _for_workers(spec)
    calls = [(path, functools.partial(compute_and_keep, path, path_map.to_worker(path, identity.path), identity,
                                      spec, want))
             for path, identity in jobs]
    for path, outcome in run_on_dask(calls, scheduler, timeout_s=timeout_s):
        if isinstance(outcome, NotStored):
            on_not_stored(outcome)
            outcome = outcome.result
        yield failed(path, *outcome) if isinstance(outcome, tuple) else outcome


def _for_workers(spec: StoreSpec) -> StoreSpec:
    """``spec`` as the workers open it: a Redis password the client took from
    FPCLI_REDIS_PASSWORD goes with it, in its URL, as one written there does. Workers
    do not share the client's environment: each file failed "authentication failed"
    after 15 s of retries, the README's own example among them."""
    location = spec.resolved().location or ""
    password = os.environ.get("FPCLI_REDIS_PASSWORD")
    if not (is_redis_url(location) and password) or RedisAddress.parse(location).password is not None:
        return spec
    scheme, _, rest = location.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user = userinfo.partition(":")[0] if at else ""   # "alice:@host": an empty password is none
    return dataclasses.replace(spec, location=f"{scheme}://{user}:{urllib.parse.quote(password, safe='')}@{host}")


def run_on_dask(calls: Sequence[tuple[str, Callable[[], Any]]], scheduler: str, *,
                timeout_s: float | None = None) -> Iterator[tuple[str, Any]]:
    """(label, outcome) in completion order for picklable zero-argument calls; an outcome
    is the call's value, or (error_type, message) when it failed on every try or ran
    on a worker longer than ``timeout_s``. At most IN_FLIGHT_PER_WORKER x threads calls
    are submitted at once."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise FpcliError("running on a Dask cluster needs the dask extra: pip install 'fpcli[dask]'") from None
    if not calls:   # everything was answered from the store: no scheduler is needed
        return
    _check_address(scheduler)
    _check_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise FpcliError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    # The loss is said around the client's own exit: closing a client cut off from its
    # scheduler cancels its reconnection, which logged a 35-line traceback.
    with _scheduler_loss_said(client, scheduler), client:
        _wait_for_a_worker(client, scheduler)
        flight = _Flight(client, iter(calls), as_completed(loop=client.loop))
        flight.submit(IN_FLIGHT_PER_WORKER * max(sum(client.nthreads().values()), 1))
        watch = _Watch(timeout_s)
        while not flight.running.is_empty():
            for key in watch.overdue(client, flight.labels):
                # The task's thread cannot be stopped (Python threads cannot be killed):
                # the file is reported and the run goes on, as with the local time limit.
                late = (TIMEOUT_ERROR_TYPE, f"analysis took longer than {timeout_s:g} s on a Dask worker (whose "
                                            "thread may still be busy with it)")
                yield flight.finish(key, cancel=True), late
            done = flight.running.next_batch(block=False)
            if not done and watch.workers_gone(client):
                # Every worker is gone: the tasks would wait for one forever, silently. One
                # error for the cluster (each file left was "failed", exit 3, as if broken).
                flight.abandon()
                raise FpcliError(f"no Dask worker left at {scheduler} for {WORKER_WAIT_S:g} s: the tracks "
                                 f"reported before are stored; start workers (dask worker {scheduler}) and run "
                                 "again to resume")
            if not done:
                time.sleep(POLL_S)
            for future in done:
                if future.key in flight.labels:   # else timed out and reported already
                    outcome = _outcome(future)
                    if _cancelled_by_a_lost_scheduler(outcome):
                        raise SchedulerLost(scheduler)
                    yield flight.finish(future.key), outcome


@dataclasses.dataclass
class _Flight:
    """The calls on the cluster: futures by key with their labels, and the calls not
    submitted yet (one goes out for each that finishes: bounded memory)."""

    client: Any
    pending: Iterator[tuple[str, Callable[[], Any]]]
    running: Any                                    # distributed.as_completed
    labels: dict[str, tuple[Any, str]] = dataclasses.field(default_factory=dict)  # key -> (future, label)

    def submit(self, n: int) -> None:
        for label, call in _take(self.pending, n):
            future = self.client.submit(_invoke, call, retries=TASK_RETRIES, pure=False,
                                        key=f"fpcli-{os.urandom(8).hex()}")
            self.labels[future.key] = (future, label)
            self.running.add(future)

    def finish(self, key: str, *, cancel: bool = False) -> str:
        """The label of a finished (or, with ``cancel``, abandoned) task; the next call goes out."""
        future, label = self.labels.pop(key)
        if cancel:
            future.cancel()
        self.submit(1)
        return label

    def abandon(self) -> list[str]:
        """Cancel every task; the labels of those submitted and of those never submitted."""
        self.client.cancel([future for future, _ in self.labels.values()])
        return [label for _, label in self.labels.values()] + [label for label, _ in self.pending]


@dataclasses.dataclass
class _Watch:
    """What the client asks the scheduler at most every CLOCK_S: which tasks run (for
    the per-file time limit: when each was first seen running) and whether any worker
    is left (none for WORKER_WAIT_S ends the run)."""

    timeout_s: float | None
    started: dict[str, float] = dataclasses.field(default_factory=dict)
    next_look: float = 0.0
    next_count: float = 0.0
    workers_seen: float = dataclasses.field(default_factory=time.monotonic)

    def overdue(self, client: Any, labels: dict[str, tuple[Any, str]]) -> list[str]:
        now = time.monotonic()
        if self.timeout_s is None or now < self.next_look:
            return []
        self.next_look = now + CLOCK_S
        for key in _computing(client) & labels.keys():
            self.started.setdefault(key, now)
        return [key for key, since in self.started.items() if key in labels and now - since > self.timeout_s]

    def workers_gone(self, client: Any) -> bool:
        now = time.monotonic()
        if now >= self.next_count:
            self.next_count = now + CLOCK_S
            if client.nthreads():
                self.workers_seen = now
        return now - self.workers_seen > WORKER_WAIT_S


def _check_address(scheduler: str) -> None:
    """ParameterError for an address Dask cannot parse ("nonsense": no port), found
    before connecting: Dask raised it from inside its connection attempts, as a
    60-line traceback after 30 s."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        if scheme in ("tcp", "tls") and not 0 < parse_host_port(location)[1] < 65536:
            # Port 99999 was tried for 15 s, then "timed out"; a mistyped port is a usage error.
            raise ValueError("the port must be a number from 1 to 65535")
    except ValueError as exc:
        raise ParameterError(f"{scheduler!r}: not a scheduler address such as tcp://host:8786 ({exc})",
                             "scheduler") from None
    if scheme not in ("tcp", "tls", "ws", "wss", "inproc"):   # http://, say: a traceback from inside Dask
        raise ParameterError(f"{scheduler!r}: not a scheduler address such as tcp://host:8786 ({scheme}:// is no "
                             "Dask scheme)", "scheduler")


ANSWER_S = 20.0   # for a server that took the connection to answer as a Dask scheduler


def _check_scheduler(scheduler: str) -> None:
    """FpcliError unless a Dask scheduler answers at ``scheduler`` within ANSWER_S.
    Dask's client, pointed at another server (the dashboard's port, an HTTP server, a
    Redis), waited without limit, or raised from inside its connection attempts (a
    reply read as frames of 3 EiB: MemoryError), as tracebacks; asked who it is, the
    server here answers or is given up on in bounded time."""
    import asyncio

    from dask.utils import parse_timedelta
    from distributed.comm import connect
    from distributed.security import Security

    if scheduler.startswith("inproc://"):   # a cluster in this process (the API's LocalCluster(processes=False))
        return
    # Dask's own TLS settings, as its client reads them (without them, tls:// raised a
    # TypeError from inside Dask after 30 s).
    settings = Security().get_connection_args("client")
    secure = scheduler.startswith(("tls://", "wss://"))
    if settings.get("require_encryption") and not secure:   # Dask refuses it: "not Dask" said the probe
        raise ParameterError(f"{scheduler!r}: Dask's configuration requires encryption "
                             "(distributed.comm.require-encryption): give the scheduler's tls:// address", "scheduler")
    if secure and not settings.get("ssl_context"):
        raise ParameterError(f"{scheduler!r}: TLS needs Dask's TLS settings (distributed.comm.tls in Dask's "
                             "configuration, or DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ..._CLIENT__CERT and "
                             "..._CLIENT__KEY)", "scheduler")
    timeout_s = parse_timedelta(CONNECT_TIMEOUT)
    try:
        reply = _in_its_own_loop(lambda: asyncio.wait_for(_identity(connect, scheduler, timeout_s, settings),
                                                          ANSWER_S))
    except TimeoutError:
        raise FpcliError(f"the server at {scheduler} took the connection but did not answer as a Dask scheduler "
                         f"within {ANSWER_S:g} s (a dashboard's or another service's port?)") from None
    except OSError as exc:
        raise FpcliError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (whatever another protocol's bytes make of Dask's reader)
        raise FpcliError(f"the server at {scheduler} does not speak Dask's protocol ({type(exc).__name__}): "
                         "is it a Dask scheduler's address?") from None
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise FpcliError(f"the server at {scheduler} is no Dask scheduler (it says it is {kind or 'nothing'!s}): "
                         "give the scheduler's address")


def _in_its_own_loop(make: Callable[[], Any]) -> Any:
    """The value of the coroutine ``make()`` gives, run to its end in a new event loop
    on a thread of its own: ``asyncio.run`` refuses to start inside a running loop (a
    notebook, a program calling fpcli from async code), and the probe then called a
    real scheduler "not Dask"."""
    import asyncio

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(make())
        except BaseException as exc:  # noqa: BLE001 (raised again in the caller's thread)
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fpcli-dask-probe", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def _identity(connect: Any, scheduler: str, timeout_s: float, settings: dict[str, Any]) -> Any:
    """What the server at ``scheduler`` says it is (Dask's "identity" request), reached
    with ``connect`` (distributed.comm.connect) and Dask's connection ``settings``
    within ``timeout_s``."""
    comm = await connect(scheduler, timeout=timeout_s, **settings)
    try:
        await comm.write({"op": "identity"})
        return await comm.read()
    finally:
        comm.abort()


def _computing(client: Any) -> set[str]:
    """The keys the workers are computing now. Not the scheduler's "processing": a
    worker holds more tasks than it has threads (Dask's worker saturation), and a task
    waiting there behind a long one had its clock running (3 of 10 files of 1.1 s each
    "took longer than 2 s" on a worker of one thread). Asked of each worker, outside
    its task threads; the scheduler's view if a worker cannot say."""
    try:
        found = client.run(_executing_keys)
    except Exception:  # noqa: BLE001 (a worker gone meanwhile: the coarser view, not a failed run)
        found = {}
    if found and all(keys is not None for keys in found.values()):
        return {key for keys in found.values() for key in keys}
    return {key for keys in client.processing().values() for key in keys}


def _executing_keys(dask_worker: Any) -> list[str] | None:
    """On a worker: the keys of the tasks it is computing (None: this version of the
    worker does not say)."""
    executing = getattr(getattr(dask_worker, "state", None), "executing", None)
    return None if executing is None else [str(task.key) for task in executing]


def _wait_for_a_worker(client: Any, scheduler: str) -> None:
    """FpcliError unless a worker joins within WORKER_WAIT_S: with none, the tasks would
    wait for one forever, with no output."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except (TimeoutError, OSError):
        raise FpcliError(f"no Dask worker joined the scheduler at {scheduler} within {WORKER_WAIT_S:g} s: "
                         f"start workers (dask worker {scheduler})") from None


def _take(iterator: Iterator[Any], n: int) -> list[Any]:
    return [item for _, item in zip(range(n), iterator, strict=False)]


def _invoke(call: Callable[[], Any]) -> Any:
    keep_buffers_on_heap()  # undoes Dask's MALLOC_TRIM_THRESHOLD_ (fpcli/memory.py)
    return call()


def _outcome(future) -> Any:
    try:
        return future.result()
    except Exception as exc:  # the task failed on every try, or its workers kept dying
        if getattr(exc, "reason", None) == LOST_SCHEDULER:   # distributed's FutureCancelledError
            return LOST_SCHEDULER, str(exc)
        if type(exc).__name__ == "KilledWorker":
            # Every worker that ran it died (a decoder's crash, the OOM killer): a crash, as
            # a local run says and records it. It was Dask's text, unrecorded, and the next
            # run killed as many workers again.
            tries = getattr(exc, "allowed_failures", None)
            return WORKER_CRASHED, ("the analysis process died on each of the Dask workers that ran it"
                                    + (f" ({tries + 1})" if isinstance(tries, int) else "")
                                    + ": out of memory, a decoder's crash, or killed from outside")
        return "DaskTaskFailed", f"{type(exc).__name__}: {exc}"


LOST_SCHEDULER = "scheduler-connection-lost"   # why distributed cancels every future of a client cut off


def _cancelled_by_a_lost_scheduler(outcome: Any) -> bool:
    return isinstance(outcome, tuple) and len(outcome) == 2 and outcome[0] == LOST_SCHEDULER


class SchedulerLost(FpcliError):
    """The client lost its scheduler mid-run: each running file failed with Dask's own
    words ("FutureCancelledError: ... scheduler-connection-lost.\\nClient lost ..."), then
    a traceback ("ConnectionPool is closed") ended the run without a summary."""

    def __init__(self, scheduler: str) -> None:
        super().__init__(f"lost the Dask scheduler at {scheduler} (stopped, or the network to it cut): the "
                         "tracks reported before are stored; run again when it is back to resume")


@contextlib.contextmanager
def _scheduler_loss_said(client: Any, scheduler: str) -> Iterator[None]:
    """``SchedulerLost`` for whatever the client raises once it is cut off from its
    scheduler (a closed connection pool, a closed comm), and Dask's own log line of
    its failed reconnection kept off the user's screen (the error says it)."""
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    except FpcliError:   # said already (no worker joined, a lost scheduler): the client's exit comes after
        raise
    except Exception:
        if client.status in ("running", "connecting", "newly-created"):
            raise
        raise SchedulerLost(scheduler) from None
    finally:
        logger.setLevel(level)
