"""Small changes to a saved index, written into its files in place.

A full refresh copies every array of the index and saves it again: at 1,000,000 rows,
one new record cost about 12 s (7.5 s of copies, 4.7 s writing about 1 GB). When the
store's journal names a few records that were added or changed (no removal, no refit
of the scaling due), ``patch_saved`` computes only their rows, overwrites changed rows
and appends new ones in each saved ``.npy`` file, then rewrites the JSON header, and
maps the files again.

The JSON header is the commit point: ``load_index`` reads the number of rows it names
and ignores any rows after them (an interrupted patch leaves such rows; the next patch
cuts them off). A changed row is overwritten in place, so a reader of the previous
header may see its new values early; they are the store's current values, which that
reader's own refresh would read. Every save and patch of a folder holds its lock.

The saved files' names and safe reading live here too, for ``saved`` and ``shared``:
``array_path`` (each save's arrays under its own token), ``read_header`` and
``regular_file`` (a FIFO or device in the folder is never opened).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fpcli.errors import FpcliError
from fpcli.files import write_text
from fpcli.search.index import (
    REFIT_SHARE,
    Index,
    Pending,
    content_words_of,
    encode,
    encode_paths,
    index_stem,
    prefilter_terms,
    row_of,
)
from fpcli.search.timbre import TIMBRE_COLUMNS, embed, logdets, pack
from fpcli.store import FingerprintStore, Record
from fpcli.store.records import record_key

PATCH_MOST = 1000                  # journal entries a patch applies; more take the full refresh
PER_ROW = ("values", "keys", "paths", "contents", "timbre")


def array_path(folder: Path, stem: str, header: dict[str, Any], name: str) -> Path:
    """The file of array ``name`` of the saved index whose JSON header is ``header``.

    Every save writes its arrays under a new token named by the header it writes last,
    and removes the previous token's files after it: until that header is written the
    previous one still names a complete set of files, so a save that fails half way
    (a full disk, a kill) or a reader in the middle of a save never pairs a header with
    another save's arrays. Headers written before tokens (none: ``<stem>.<array>.npy``)
    still read. ValueError for a token that is not one.
    """
    token = header.get("token", "")
    if not isinstance(token, str) or (token and not (len(token) == 8 and set(token) <= HEX_DIGITS)):
        raise ValueError(f"{stem}: not a saved index token: {str(token)[:20]!r}")
    return folder / (f"{stem}.{token}.{name}.npy" if token else f"{stem}.{name}.npy")


HEX_DIGITS = frozenset("0123456789abcdef")


def regular_file(path: Path) -> Path:
    """``path`` when it is a regular file (links followed); OSError otherwise. A FIFO put
    in the index folder would block a read forever, a device would be read endlessly."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
    return path


def read_header(folder: Path, stem: str) -> Any:
    """The JSON header of the saved index ``stem`` (OSError or ValueError when unreadable)."""
    return json.loads(regular_file(folder / f"{stem}.json").read_text())


def new_token() -> str:
    """A new save's token (``array_path``)."""
    return secrets.token_hex(4)


def remove_other_arrays(folder: Path, stem: str, header: dict[str, Any]) -> None:
    """Remove the array files of index ``stem`` that ``header`` does not name (the
    previous saves'), then the leftovers of killed writers (``remove_leftovers``). A
    process that mapped an array keeps its mapping."""
    keep = f"{stem}.{header['token']}."
    for path in folder.glob(f"{stem}.*.npy"):
        if not path.name.startswith(keep):
            path.unlink(missing_ok=True)
    remove_leftovers(folder)


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files (``.fpcli-*``) of writers killed mid-write: a kill -9
    during a save left a 4 MB one for good. Only under the folder's lock, which every
    writer of the folder holds, so that none of them is being written now."""
    for path in folder.glob(".fpcli-*"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the index folder's lock (an advisory lock on its ``.lock`` file): saves and
    patches of one folder run one at a time, across processes. OSError if the folder
    cannot be written."""
    folder.mkdir(parents=True, exist_ok=True)
    # Not followed if a link, never blocking (a FIFO put there), and only a regular file.
    descriptor = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{folder / '.lock'} is not a regular file")
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def header_signature(folder: Path, kind: str, params_key: str) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of the saved header; None when there is none."""
    try:
        info = (folder / f"{index_stem(kind, params_key)}.json").stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


@dataclasses.dataclass
class NpyFile:
    """Where the rows of one saved ``.npy`` array are: its header and data offsets."""

    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    header_start: int      # first byte of the header text (after magic, version and length)
    data_start: int
    encoding: str

    @classmethod
    def read(cls, path: Path) -> NpyFile:
        with open(regular_file(path), "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(handle)
            if fortran:
                raise ValueError(f"{path.name}: Fortran order")
            return cls(path, dtype, tuple(shape), 10 if major == 1 else 12, handle.tell(),
                       "utf8" if major >= 3 else "latin1")

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def header_text(self, rows: int) -> bytes | None:
        """The header for ``rows`` rows, padded to the present header's length (None if
        it does not fit: the file is then saved in full)."""
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (rows, *self.shape[1:])}).encode(self.encoding)
        room = self.data_start - self.header_start - 1
        return None if len(text) > room else text + b" " * (room - len(text)) + b"\n"

    def fits(self, rows: np.ndarray) -> bool:
        """Whether ``rows`` can be written here without loss (same numbers; strings no wider)."""
        if rows.shape[1:] != self.shape[1:]:
            return False
        if self.dtype.kind in "SU":
            return rows.dtype.kind == self.dtype.kind and rows.dtype.itemsize <= self.dtype.itemsize
        return rows.dtype == self.dtype

    def write(self, committed: int, updates: dict[int, np.ndarray], appended: np.ndarray) -> None:
        """Overwrite rows at the positions of ``updates``, cut the file after the
        ``committed`` rows, append ``appended`` and rewrite the header (one open)."""
        header = self.header_text(committed + len(appended))
        assert header is not None  # checked by the caller before any file is touched
        with open(self.path, "r+b") as handle:
            for position, row in updates.items():
                handle.seek(self.data_start + position * self.row_bytes)
                handle.write(np.ascontiguousarray(row, dtype=self.dtype).tobytes())
            handle.truncate(self.data_start + committed * self.row_bytes)
            handle.seek(0, os.SEEK_END)
            handle.write(np.ascontiguousarray(appended, dtype=self.dtype).tobytes())
            handle.flush()
            handle.seek(self.header_start)
            handle.write(header)


@dataclasses.dataclass
class Plan:
    """What a patch writes: rows to overwrite (by position) and rows to append, for every array."""

    updates: list[int]
    records: list[Record]          # the update rows' records first, then the appended ones
    rows: list[np.ndarray]

    @property
    def appended(self) -> int:
        return len(self.records) - len(self.updates)


def plan_patch(index: Index, store: FingerprintStore, keys: list[str]) -> Plan | None:
    """The rows of the records ``keys`` name, or None when one of them left the index
    (a removal: the full refresh handles it)."""
    updates: list[tuple[int, Record, np.ndarray]] = []
    appends: list[tuple[Record, np.ndarray]] = []
    for key in keys:
        record = store.read_record(key)
        row = row_of(record, index.kind, index.params_key) if record is not None else None
        position = row_of_key(index, key)
        if row is None:
            if position is not None:
                return None
        elif position is not None:
            updates.append((position, record, row))  # type: ignore[arg-type]
        else:
            appends.append((record, row))  # type: ignore[arg-type]
    return Plan([p for p, _, _ in updates], [r for _, r, _ in updates] + [r for r, _ in appends],
                [row for _, _, row in updates] + [row for _, row in appends])


def row_of_key(index: Index, key: str) -> int | None:
    """The position of record ``key`` in ``index`` (keys are ``rec:<digest>:<params>``,
    so its digest finds it without a dictionary of every key)."""
    parts = key.split(":")
    if len(parts) != 3 or len(parts[1]) != 32 or record_key(parts[1], index.params_key) != key:
        return None
    found = np.flatnonzero(index.rows_with_content(parts[1]))
    found = found[index.keys[found] == key]
    return int(found[0]) if len(found) else None


def patch_arrays(index: Index, plan: Plan) -> dict[str, np.ndarray]:
    """Every saved array's rows for ``plan`` (update rows first), computed as a full
    build computes them, with the index's scaling and timbre fit."""
    values = np.array(plan.rows, dtype=np.float32).reshape(len(plan.rows), len(index.dims))
    timbre = np.array([pack(r.timbre) for r in plan.records], dtype=np.float32).reshape(len(plan.rows),
                                                                                          TIMBRE_COLUMNS)
    contents = np.array([r.digest for r in plan.records], dtype=str)
    fit = index.timbre_fit
    embedded = embed(timbre, fit) if fit is not None else np.zeros((len(values), 0), dtype=np.float32)
    arrays = {
        "values": values, "timbre": timbre, "contents": contents,
        "keys": np.array([r.key for r in plan.records], dtype=str),
        "paths": encode_paths(np.array([r.path for r in plan.records], dtype=str)),
        "terms": prefilter_terms(encode(values, index.dims, index.low, index.high), embedded),
        "timbre_logdets": logdets(timbre), "content_words": content_words_of(contents),
    }
    if fit is not None:
        arrays["embedded"] = embedded
    return arrays


def patch_saved(index: Index, store: FingerprintStore, folder: Path,
                signature: tuple[int, int, int] | None, pending: Pending) -> int | None:
    """Apply ``pending``, the store's changes since ``index`` (the saved one, whose
    header had ``signature``), to its files; the records read, or None when a patch
    does not apply (nothing written: the full refresh must run). Load the index again
    after it."""
    if not pending.changes or signature is None:
        return None
    generation = pending.generation
    keys = list(dict.fromkeys(pending.changes))
    if len(keys) > PATCH_MOST or index.changed_since_fit + len(keys) > REFIT_SHARE * max(len(index), 1):
        return None
    plan = plan_patch(index, store, keys)
    if plan is None:
        return None
    arrays = patch_arrays(index, plan)
    try:
        with folder_lock(folder):
            if header_signature(folder, index.kind, index.params_key) != signature:
                return None  # saved again meanwhile: refresh what is there now
            return len(keys) if _write_patch(folder, index, plan, arrays, generation, len(keys)) else None
    except (OSError, ValueError, KeyError, TypeError, FpcliError):
        # A damaged or unreadable saved file, a full disk: the full refresh saves every file anew.
        return None


def _write_patch(folder: Path, index: Index, plan: Plan, arrays: dict[str, np.ndarray], generation: int,
                 changes: int) -> bool:
    """Write ``plan`` into the saved files of ``index`` and commit it (the JSON header);
    False, with nothing written, when a file cannot take it (another shape or type, a
    string too wide, a header without room)."""
    stem = index_stem(index.kind, index.params_key)
    header = read_header(folder, stem)
    files = {name: NpyFile.read(array_path(folder, stem, header, name)) for name in (*PER_ROW, *header["derived"])}
    rows = len(index) + plan.appended
    if set(files) - set(arrays) or any(not f.fits(arrays[name]) or f.shape[0] < len(index)
                                       or f.header_text(rows) is None for name, f in files.items()):
        return False
    u = len(plan.updates)
    for name, f in files.items():
        f.write(len(index), dict(zip(plan.updates, arrays[name][:u], strict=True)), arrays[name][u:])
    header.update(rows=rows, generation=generation, changed_since_fit=index.changed_since_fit + changes)
    write_text(folder / f"{stem}.json", json.dumps(header))
    return True
