"""What the store holds, as types: file identity, the ``Record`` of an analysed track
and the ``Failure`` of a file that could not be analysed. ``schema.py`` beside it is the one
place that turns them to and from JSON and checks every field.

Identity (ARCHITECTURE.md, "The store"):

* ``path_key``: a path is data, not text: keys use a hash of its bytes, so a name that
  is not UTF-8, holds a newline or is very long is as good as any other.
* ``content_key``: blake2b of the size and the first and last 64 KiB; cheap, it only
  proposes *candidates* for a path not seen before (equal heads and tails are common:
  silence-padded WAVs, files damaged in the middle).
* ``file_digest``: blake2b of the whole file, the identity of a record; a candidate
  is served only when the digests are equal.

Paths are ``str`` with undecodable bytes as lone surrogates (``os.fsdecode``,
surrogateescape); JSON text escapes them as ``\\udcXX`` (``ensure_ascii``), so a
record round-trips byte for byte: ``os.fsencode(json.loads(text)["paths"][0]["path"])``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from fpcli.cue import salted, track_of_entry
from fpcli.errors import ParameterError
from fpcli.files import special_file_kind
from fpcli.fingerprint import Fingerprint
from fpcli.params import FINGERPRINT_VERSION
from fpcli.results import INTERNAL_ERROR_TYPE, TIMEOUT_ERROR_TYPE, TrackResult
from fpcli.store.limits import STREAM_PREFIX, storable_path

if TYPE_CHECKING:  # numpy and scipy come with them: the CLI's start-up does not pay for them
    from fpcli.dsp.dupes import DupeKey
    from fpcli.dsp.timbre import Timbre

RECORD_SCHEMA = 3          # 3: the timbre block stored packed; 2: v2 fields (timbre, dupe_key) as lists
READABLE_SCHEMAS = (2, 3)  # what a read, an import or verify accepts (fingerprints of version 1 still parse)
ACCESS_ERROR_TYPE = "OSError"  # a Failure's error_type when the file could not be opened or read
CONTENT_SAMPLE_BYTES = 64 * 1024
# Paths a record lists (the most recently seen): ten thousand links to one file made a
# record of a megabyte, parsed and rewritten on every look-up. Identity does not need
# the list (each path's own entry names its content), so a path dropped from it is
# still answered unread.
MAX_PATHS = 64
DIGEST_CHUNK_BYTES = 1 << 20


# -- identity --------------------------------------------------------------------------------

def path_key(path: str) -> str:
    """32 hex digits naming a path in keys, whatever bytes the path holds."""
    return hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest()


def stream_identity(name: str) -> FileIdentity:
    """The identity a named stream is stored under (the name is its content). A name
    given with the prefix it is listed under (``stream:radio``) is that name (it was
    stored as ``stream:stream:radio``, which ``cache show stream:radio`` never found)."""
    if isinstance(name, str) and name.startswith(STREAM_PREFIX):
        name = name[len(STREAM_PREFIX):]
    if not name or "\n" in name:
        raise ParameterError(f"{name!r}: a non-empty name on one line", "name")
    if not storable_path(f"{STREAM_PREFIX}{name}"):
        # The record was stored, then every read of it rejected its path (a bad entry).
        raise ParameterError(f"{name!r}: a name without NUL characters or lone surrogates (it is stored as a "
                             "path)", "name")
    digest = hashlib.blake2b(f"{STREAM_PREFIX}{name}".encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return FileIdentity(f"{STREAM_PREFIX}{name}", 0, 0, digest, digest)


def content_key(path: str, size: int) -> str:
    """blake2b of the size and the first and last 64 KiB (reads at most 128 KiB)."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        digest.update(fh.read(CONTENT_SAMPLE_BYTES))
        if size > CONTENT_SAMPLE_BYTES:
            fh.seek(max(size - CONTENT_SAMPLE_BYTES, CONTENT_SAMPLE_BYTES))
            digest.update(fh.read(CONTENT_SAMPLE_BYTES))
    return digest.hexdigest()


def file_digest(path: str) -> str:
    """blake2b (128 bits) of the whole file, read in 1 MiB blocks (about 1 GB/s here:
    benchmarks/store.md), far cheaper than decoding it."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def entry_file(path: str) -> tuple[str, str]:
    """(the file holding an entry's audio, what sets the entry apart within it): a
    plain path is itself with no salt; a CUE track ``album.flac#03`` is the image with
    the track's number and bounds (see ``fpcli.cue``)."""
    track = track_of_entry(path)
    return (track.image, track.salt) if track else (path, "")


def entry_identity_keys(path: str, size: int, *, digest: bool) -> tuple[str, str | None]:
    """(content key, full digest or None) of an entry, salted for a CUE track."""
    file, salt = entry_file(path)
    content = salted(content_key(file, size), salt)
    if not digest:
        return content, None
    return content, salted(_image_digest(file) if salt else file_digest(file), salt)


def _image_digest(image: str) -> str:
    """``file_digest`` of an album image, read whole once per version of the file (its
    inode, size and time) in a process: every track of the image was digested from
    the whole image again, and a 300-track image of 11 MB read 3.3 GB."""
    st = os.stat(image)
    key = (image, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _IMAGE_DIGESTS_LOCK:   # a Dask worker runs its tasks in threads
        known = _IMAGE_DIGESTS.get(key)
    if known is None:
        known = file_digest(image)
        with _IMAGE_DIGESTS_LOCK:
            _IMAGE_DIGESTS[key] = known
            while len(_IMAGE_DIGESTS) > IMAGE_DIGESTS_KEPT:
                del _IMAGE_DIGESTS[next(iter(_IMAGE_DIGESTS))]
    return known


IMAGE_DIGESTS_KEPT = 16   # album images whose digest a process keeps (their tracks come together)
_IMAGE_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}
_IMAGE_DIGESTS_LOCK = threading.Lock()


def resolve(path: str | os.PathLike[str]) -> str:
    """The absolute, symlink-free path as ``str`` (undecodable bytes as surrogates).
    A link whose target is no path (``/dev/fd/63`` of a shell's ``<(cmd)``, a link to
    ``pipe:[123]``) stays as given: it was "no such file or folder" where it is a pipe."""
    text = os.fsdecode(path)
    real = os.path.realpath(text)
    return real if os.path.lexists(real) or not os.path.exists(text) else os.path.abspath(text)


def resolve_all(paths: Iterable[str | os.PathLike[str]], folders: dict[str, str]) -> list[str]:
    """``resolve`` of each path, each folder's real path made once (kept in ``folders``,
    folder as given -> real path): realpath looks at every component of every path,
    and the files of an album share one folder. A path that is itself a symlink (or
    ends in . or ..) is resolved whole, as ``resolve`` does."""
    resolved = []
    for path in paths:
        text = os.fsdecode(path)
        head, tail = os.path.split(text)
        if tail in ("", ".", "..") or os.path.islink(text):
            resolved.append(os.path.realpath(text))
            continue
        real = folders.get(head)
        if real is None:
            real = folders[head] = os.path.realpath(head or ".")
        resolved.append(os.path.join(real, tail))
    return resolved


GONE_FILE, CHANGED_FILE = "gone", "changed"


def stored_file_state(path: str, size: int, mtime_ns: int, digest: str | None = None,
                      content_key: str | None = None) -> str | None:
    """``file_state``'s verdict alone: None while the file of a stored path is still the
    one analysed, else GONE_FILE or CHANGED_FILE."""
    return file_state(path, size, mtime_ns, digest, content_key).why


@dataclasses.dataclass(frozen=True)
class FileState:
    """What a stored path's file is now: ``why`` None while it is the one analysed,
    else GONE_FILE or CHANGED_FILE; ``touched_ns`` its modification time now when only
    that moved (its bytes confirmed by the digest between two equal stats), which a
    record may take so that the file is not read whole again."""

    why: str | None
    touched_ns: int | None = None


def file_state(path: str, size: int, mtime_ns: int, digest: str | None = None,
               content_key: str | None = None) -> FileState:
    """Whether the file of a stored path is still the one analysed, as a look-up
    confirms it: ``cache prune`` and search called a touched file changed (prune dropped
    its record, batch values and verdict with it) and a CUE track whose sheet moved its
    bounds unchanged, while ``analyze`` served the one and analysed the other again. One
    stat when the size and modification time are those stored; then, for a CUE track,
    the salted ``content_key`` (128 KiB read: its sheet's bounds are the salt). A file
    of the same size whose time moved (touched, copied without its times, restored) is
    read whole and compared by ``digest`` (the record's, salted for a CUE track). A
    named stream has no file that could be gone."""
    if path.startswith(STREAM_PREFIX):
        return FileState(None)
    try:
        file, salt = entry_file(path)
        st = os.stat(file)
    except OSError:
        return FileState(GONE_FILE)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return FileState(CHANGED_FILE)
    # A file there that cannot be read now (permissions, a network share's hiccup) is
    # left as it is, as a look-up leaves its record: taken for gone, prune dropped every
    # track of an album whose image was unreadable for a moment.
    if st.st_mtime_ns == mtime_ns:
        if not salt or content_key is None:
            return FileState(None)
        try:
            same = entry_identity_keys(path, size, digest=False)[0] == content_key
        except OSError:
            return FileState(None)
        return FileState(None if same else CHANGED_FILE)
    if digest is None:
        return FileState(CHANGED_FILE)
    try:
        same = entry_identity_keys(path, size, digest=True)[1] == digest
        after = os.stat(file)
    except OSError:
        return FileState(None)
    if not same:
        return FileState(CHANGED_FILE)
    # Its time is taken only if the file stood still while it was read.
    steady = (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    return FileState(None, st.st_mtime_ns if steady else None)


def stat_regular(path: str, *, named: bool = True) -> os.stat_result:
    """``os.stat`` of a regular file (for a CUE track ``album.flac#03``, of its image);
    OSError with a clear message otherwise (a FIFO or a device would block a reader
    forever). ``named``: on the command line, where a pipe is said to be a stream's
    way in to stdin (`fpcli analyze <(cmd)`), not one a folder's walk found."""
    st = os.stat(entry_file(path)[0])
    kind = special_file_kind(st)
    if kind == "a FIFO":
        raise OSError(0, "is a FIFO (a pipe), not an audio file" + (": a stream is read from stdin, as -"
                                                                      if named else ""))
    if kind is not None:
        raise OSError(0, f"is {kind}, not an audio file")
    return st


def os_reason(exc: OSError) -> str:
    """An OSError in words: "symlink loop" rather than errno's "Too many levels..."."""
    import errno

    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "no such file or folder"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


@dataclasses.dataclass(frozen=True)
class FileIdentity:
    """Who a file is: its resolved path, size, mtime_ns, content key, (once read) its
    full digest, and its inode number when it was stat'ed (None: not known)."""

    path: str
    size: int
    mtime_ns: int
    content_key: str
    digest: str | None = None
    inode: int | None = None


# -- the typed record ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PathSeen:
    """A path where the record's content was found, with the mtime seen there."""

    path: str
    mtime_ns: int


class SeenFacts(Protocol):
    """A path and the mtime seen there (``PathSeen``, or an imported line's struct)."""

    @property
    def path(self) -> str: ...

    @property
    def mtime_ns(self) -> int: ...


class RecordFacts(Protocol):
    """What a census tag, path entries and candidate lists read of a record: a parsed
    ``Record``, or the checked struct of an import's line (``fast_schema.Record``),
    which an import stores as it came without building a ``Record``."""

    @property
    def digest(self) -> str: ...

    @property
    def content_key(self) -> str: ...

    @property
    def params_key(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def fingerprint_version(self) -> int: ...

    @property
    def complete(self) -> bool: ...

    @property
    def paths(self) -> Sequence[SeenFacts]: ...

    @property
    def analysed_at(self) -> float: ...

    @property
    def batch(self) -> object | None: ...

    @property
    def validation(self) -> object | None: ...


@dataclasses.dataclass(frozen=True)
class AudioFacts:
    """What decoding found: seconds decoded, rate in Hz, channels, container and codec,
    and whether the file is damaged (``partial``, with the reason)."""

    duration_s: float
    samplerate: int
    channels: int
    format: str
    subtype: str
    partial: bool
    partial_reason: str | None


@dataclasses.dataclass(frozen=True)
class StreamingValues:
    """The 13 streaming dims with their confidences (0..1), null reasons, chunks pushed
    and seconds heard."""

    values: dict[str, float | None]
    confidence: dict[str, float]
    reasons: dict[str, str]
    chunks: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class BatchValues:
    """The 25 batch dims (always of the whole track) and null reasons."""

    values: dict[str, float | None]
    reasons: dict[str, str]


# The record's timbre block is a ``fpcli.dsp.timbre.Timbre``: ``mean`` (13,), ``cov``
# (13, 13) symmetric positive semi-definite, ``frames`` >= 1 (the streaming analysis's,
# which equals the batch reference's up to rounding).


@dataclasses.dataclass(frozen=True)
class Validation:
    """A stored streaming-vs-batch verdict (``fpcli validate``)."""

    status: str                      # valid or invalid
    similarity: float | None
    threshold: float
    confidence_quality: str          # high, medium or low
    failed_metrics: tuple[str, ...]
    errors: dict[str, float | None]
    validated_at: float


@dataclasses.dataclass(frozen=True)
class Record:
    """One analysed content under one set of analysis parameters.

    ``complete`` is False for a preview (the analysis stopped before the end of the
    track; ``streaming.seconds`` says how much was heard): a partial record is never
    served where a complete one is asked for, and is replaced only by one that heard
    more. ``paths`` lists the paths where this content was seen (copies, library
    roots), the most recent last, at most MAX_PATHS of them.
    """

    digest: str
    content_key: str
    params_key: str
    fingerprint_version: int
    size: int
    paths: tuple[PathSeen, ...]
    complete: bool
    audio: AudioFacts
    streaming: StreamingValues
    batch: BatchValues | None
    validation: Validation | None
    analysed_at: float
    last_used_at: float
    timbre: Timbre | None = None           # v2: None in v1 records and for all-silent tracks
    dupe_key: DupeKey | None = None        # v2: None in v1 records and tracks under 1 s

    @property
    def key(self) -> str:
        return record_key(self.digest, self.params_key)

    @property
    def path(self) -> str:
        """The path seen most recently (the last of ``paths``)."""
        return self.paths[-1].path if self.paths else ""

    def covers(self, other: Record) -> bool:
        """Whether this record heard at least as much of the track as ``other``."""
        if self.complete:
            return True
        return not other.complete and self.streaming.seconds >= other.streaming.seconds

    def with_path(self, path: str, mtime_ns: int) -> Record:
        """This record with ``path`` as the path seen most recently (the oldest are
        dropped beyond MAX_PATHS)."""
        kept = tuple(p for p in self.paths if p.path != path)
        return dataclasses.replace(self, paths=(*kept, PathSeen(path, mtime_ns))[-MAX_PATHS:])

    def seen_at(self, path: str) -> PathSeen | None:
        """The listed sighting of ``path`` (None when the record does not list it)."""
        return next((seen for seen in self.paths if seen.path == path), None)

    def without_path(self, path: str) -> Record:
        return dataclasses.replace(self, paths=tuple(p for p in self.paths if p.path != path))

    def to_result(self, path: str | None = None) -> TrackResult:
        """A ``TrackResult`` (cached=True) rebuilt from the record."""
        s, audio = self.streaming, self.audio
        return TrackResult(
            path=path or self.path, status="partial" if audio.partial else "ok",
            duration_s=audio.duration_s, samplerate=audio.samplerate, channels=audio.channels,
            format=audio.format, subtype=audio.subtype, partial_reason=audio.partial_reason,
            streaming=Fingerprint(kind="streaming", values=dict(s.values), reasons=dict(s.reasons),
                                  params_key=self.params_key, seconds=s.seconds, complete=self.complete,
                                  confidence=dict(s.confidence), chunks=s.chunks, version=self.fingerprint_version,
                                  timbre=self.timbre, dupe_key=self.dupe_key),
            batch=None if self.batch is None else Fingerprint(
                kind="batch", values=dict(self.batch.values), reasons=dict(self.batch.reasons),
                params_key=self.params_key, seconds=audio.duration_s, complete=True,
                version=self.fingerprint_version, timbre=self.timbre),
            cached=True,
        )


def merged_record(existing: Record, fresh: Record) -> Record:
    """The record to keep when ``fresh`` (a new analysis, or an imported record) is of
    content already stored as ``existing``; saves and imports both keep this one rule.

    The one that heard more of the track keeps its streaming values (a tie goes to
    the fresh analysis); paths are united; batch values and a verdict on complete
    values survive from the existing record when the fresh one has none. A named
    stream's name holds its latest stream as far as it was heard: a new stream of the
    name is other audio, which no earlier one covers (an interrupted stream's
    snapshots, kept "so that kill -9 keeps what was heard", were dropped for an
    earlier complete stream of the name); "latest" by ``analysed_at``, so that an old
    export imported does not replace a newer stream.
    """
    if fresh.path.startswith(STREAM_PREFIX):
        base = fresh if fresh.analysed_at >= existing.analysed_at else existing
    else:
        heard_more = existing.complete and not fresh.complete or (
            not existing.complete and not fresh.complete and existing.streaming.seconds > fresh.streaming.seconds)
        base = existing if heard_more else fresh
    validation = existing.validation if existing.complete and base.complete else None
    merged = dataclasses.replace(base, paths=existing.paths, batch=fresh.batch or existing.batch,
                                 validation=base.validation or validation)
    for seen in fresh.paths:
        merged = merged.with_path(seen.path, seen.mtime_ns)
    return merged


def record_key(digest: str, params_key: str) -> str:
    return f"rec:{digest}:{params_key}"


def record_from_result(identity: FileIdentity, result: TrackResult, now: float) -> Record:
    """The record of a freshly analysed file (``identity.digest`` must be known)."""
    assert identity.digest is not None and result.streaming is not None
    fp = result.streaming
    return Record(
        digest=identity.digest, content_key=identity.content_key, params_key=fp.params_key,
        fingerprint_version=FINGERPRINT_VERSION, size=identity.size,
        paths=(PathSeen(identity.path, identity.mtime_ns),), complete=fp.complete,
        audio=AudioFacts(result.duration_s or 0.0, result.samplerate or 0, result.channels or 0,
                         result.format or "", result.subtype or "", result.status == "partial",
                         result.partial_reason),
        streaming=StreamingValues(dict(fp.values), dict(fp.confidence or {}), dict(fp.reasons), fp.chunks,
                                  fp.seconds),
        batch=None if result.batch is None else BatchValues(dict(result.batch.values), dict(result.batch.reasons)),
        validation=None, analysed_at=now, last_used_at=now, timbre=fp.timbre, dupe_key=fp.dupe_key,
    )


@dataclasses.dataclass(frozen=True)
class Failure:
    """A file that could not be analysed: skipped until its size or mtime change."""

    path: str
    error_type: str
    message: str
    size: int
    mtime_ns: int
    failed_at: float
    limit_s: float | None = None   # a timeout's: the time limit, s, the analysis outran

    def unchanged(self, st: os.stat_result) -> bool:
        """Whether the file (as ``os.stat`` gives it) is as it was when it failed: then
        analyze skips it. Never for a failure to reach the file (``access_failure``)."""
        return not self.access_failure and (self.size, self.mtime_ns) == (st.st_size, st.st_mtime_ns)

    @property
    def access_failure(self) -> bool:
        """Whether the file could not be opened or read at all (permission denied, gone
        mid-run): a fact about the moment, not the content. A ``chmod`` or a file put
        back with its mtime (``mv`` away and back, ``cp -p``, ``rsync -a``) changes
        neither size nor mtime, so such a failure was served as unchanged and the
        readable file skipped ("permission denied") for good. Opening again is cheap."""
        return self.error_type == ACCESS_ERROR_TYPE

    def retried_under(self, limit_s: float | None) -> bool:
        """Whether a run whose analyses may take ``limit_s`` seconds (None: no limit)
        tries the file again: a timeout under a shorter limit than this one (a run's
        --timeout 1, or a machine busy with other work) says nothing of the file, and
        was skipped as a broken file until --retry-failed; a run with the same or a
        shorter limit skips it (a file that hangs a decoder costs its limit once).
        A fault of fpcli's is tried by every run: it says nothing of the file, and a
        fixed fpcli skipped the file for good (``--seconds 1e308`` once overflowed)."""
        if self.error_type == INTERNAL_ERROR_TYPE:
            return True
        if self.error_type != TIMEOUT_ERROR_TYPE:
            return False
        return limit_s is None or self.limit_s is None or limit_s > self.limit_s
