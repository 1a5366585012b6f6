"""Saved search indexes: the arrays of an ``Index`` as ``.npy`` files (no pickle), named
by a token of their save, and a JSON header naming that token (``patch.array_path``) in
the store's index folder, memory-mapped when loaded; ``current_index``
loads, refreshes from the store's journal (or copies the store's shared one, or
builds) and saves, and a process keeps the index it last loaded or saved while the
header on disk is unchanged. ``share_indexes`` starts sharing an index through the
store (search/shared.py), ``keep_shared_current`` keeps the shared copy current."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fpcli.errors import FpcliError
from fpcli.files import write_text
from fpcli.search.index import (
    KINDS,
    Index,
    build_index,
    changes_since,
    feature_dims,
    index_stem,
    pending_changes,
    refresh,
)
from fpcli.search.patch import (
    array_path,
    folder_lock,
    header_signature,
    new_token,
    patch_saved,
    read_header,
    regular_file,
    remove_other_arrays,
)
from fpcli.search.shared import SHARE_LAG, fetch, file_sets, share, shared_state, unshare
from fpcli.search.timbre import TimbreFit
from fpcli.store import FingerprintStore

INDEX_FORMAT = 3         # 3: timbre rows and fit
SAVED_ARRAYS = ("values", "keys", "paths", "contents", "low", "high", "timbre")   # besides the fit and derived ones


def save_index(index: Index, folder: Path) -> bool:
    """Write the arrays (.npy, no pickle) then the JSON header, each atomically.
    Returns False when the folder is not writable: the index is then rebuilt in
    memory on every query, slower but correct."""
    stem = index_stem(index.kind, index.params_key)
    try:
        with folder_lock(folder):
            _save_locked(index, folder, stem)
    except (OSError, FpcliError):
        return False
    return True


def _save_locked(index: Index, folder: Path, stem: str) -> None:
    arrays = {name: getattr(index, name) for name in ("values", "keys", "contents", "low", "high")}
    arrays["paths"] = _with_headroom(index.encoded_paths())
    arrays.update(_timbre_arrays(index))
    derived = _derived_arrays(index)
    arrays.update(derived)
    header = {"format": INDEX_FORMAT, "kind": index.kind, "params_key": index.params_key, "rows": len(index),
              "generation": index.generation, "epoch": list(index.epoch),
              "changed_since_fit": index.changed_since_fit,
              "timbre_scales": None if index.timbre_fit is None
              else [index.timbre_fit.embed_scale, index.timbre_fit.js_scale],
              # The derived arrays this save wrote: a file left by another save (an
              # older fpcli writes fewer) is then never read as current.
              "derived": sorted(derived), "token": new_token()}
    written: list[Path] = []
    try:
        for name, array in arrays.items():
            written.append(array_path(folder, stem, header, name))
            _save_array(written[-1], array)
        write_text(folder / f"{stem}.json", json.dumps(header))   # the commit point
    except BaseException:
        for path in written:                                      # the previous save stays whole
            path.unlink(missing_ok=True)
        raise
    remove_other_arrays(folder, stem, header)


def _save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` (no pickle) atomically: to a new file in the folder, then renamed."""
    handle, temporary = tempfile.mkstemp(prefix=".fpcli-", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)      # a full disk leaves no partial file behind
        raise


def _with_headroom(paths: np.ndarray) -> np.ndarray:
    """Fixed-width path bytes with 16-48 bytes to spare, so that a patch (search.patch)
    can append a somewhat longer path than the longest saved (trailing NULs read back
    as nothing)."""
    width = (paths.dtype.itemsize + 16 + 31) // 32 * 32
    return paths.astype(f"S{width}")


TIMBRE_FIT_ARRAYS = ("whiten", "centre", "axes")


def _timbre_arrays(index: Index) -> dict[str, np.ndarray]:
    arrays = {"timbre": index.timbre_rows()}
    if index.timbre_fit is not None:
        arrays.update({f"timbre_{name}": getattr(index.timbre_fit, name) for name in TIMBRE_FIT_ARRAYS})
    return arrays


def _derived_arrays(index: Index) -> dict[str, np.ndarray]:
    """What a query computes from the rows, saved so that a cold query reads (maps) it
    instead: the embedding (an eigendecomposition per row), the log-determinants (a
    factorisation per row), the prefilter terms and the content words (a pass over
    every row each, ~0.3 s at 100,000 rows). Costs ~350 more bytes per row on disk."""
    arrays = {"timbre_logdets": index.timbre_logdets(), "terms": index.terms(), "content_words": index.content_words()}
    if index.timbre_fit is not None:
        arrays["embedded"] = index.embedded()
    return arrays


def _derived_shapes(index: Index) -> dict[str, tuple[tuple[int, ...], type]]:
    """The shape and dtype each derived array of ``index`` must have to be used."""
    n, e = len(index), index.timbre_fit.axes.shape[1] if index.timbre_fit is not None else 0
    return {"timbre_logdets": ((n,), np.float64), "terms": ((n, 3 * len(feature_dims(index.dims)) + e + 2), np.float32),
            "content_words": ((n, 4), np.uint64), "embedded": ((n, e), np.float32)}


def _load_timbre_fit(folder: Path, stem: str, header: dict[str, Any]) -> TimbreFit | None:
    scales = header.get("timbre_scales")
    if scales is None:
        return None
    parts = {name: np.load(regular_file(array_path(folder, stem, header, f"timbre_{name}")), allow_pickle=False)
             for name in TIMBRE_FIT_ARRAYS}
    return TimbreFit(parts["whiten"], parts["centre"], parts["axes"], float(scales[0]), float(scales[1]))


def index_files(folder: Path, header: dict[str, Any]) -> dict[str, Path]:
    """The array files of the saved index this header describes (what ``load_index``
    may read), by array name."""
    names = list(SAVED_ARRAYS)
    if header.get("timbre_scales") is not None:
        names += [f"timbre_{name}" for name in TIMBRE_FIT_ARRAYS]
    derived = header.get("derived", [])
    names += [name for name in DERIVED_NAMES if isinstance(derived, list) and name in derived]
    stem = index_stem(str(header.get("kind")), str(header.get("params_key")))
    return {name: array_path(folder, stem, header, name) for name in names}


def load_index(folder: Path, kind: str, params_key: str) -> Index | None:
    """The saved index, or None when missing or inconsistent (a rebuild follows)."""
    stem = index_stem(kind, params_key)
    try:
        header = read_header(folder, stem)
        if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
            return None
        # Memory-mapped: a query reads the pages it touches (1,000 rows of the timbre,
        # none of the keys), not every file. A later save replaces the files (a new
        # inode), so a mapping stays valid.
        arrays = {name: np.load(regular_file(array_path(folder, stem, header, name)), allow_pickle=False,
                                mmap_mode=None if name in ("low", "high") else "r")
                  for name in SAVED_ARRAYS}
        timbre_fit = _load_timbre_fit(folder, stem, header)
        rows = header.get("rows")
        per_row = ("values", "keys", "paths", "contents", "timbre")
        # Rows after the header's count are an interrupted patch's (search.patch): ignored.
        if not isinstance(rows, int) or any(len(arrays[n]) < rows for n in per_row):
            return None
        arrays.update({n: arrays[n][:rows] for n in per_row})
        index = Index(kind, params_key, arrays["values"].astype(np.float32, copy=False), arrays["keys"],
                      arrays["paths"], arrays["contents"], arrays["low"], arrays["high"],
                      int(header["generation"]), tuple(header["epoch"]), int(header.get("changed_since_fit", 0)),
                      timbre=arrays["timbre"].astype(np.float32, copy=False), timbre_fit=timbre_fit)
    except (OSError, ValueError, TypeError, IndexError, KeyError):
        # A header or array another program (or a shared copy) made wrong: built anew.
        return None
    shapes = _derived_shapes(index)
    # A header without the list was written by a save that always wrote the embedding.
    derived = header.get("derived", ["embedded"])
    for name in derived if isinstance(derived, list) else []:
        if name in shapes:
            setattr(index, f"_{DERIVED_ATTRIBUTES.get(name, name)}", _optional(array_path(folder, stem, header, name),
                                                                             *shapes[name]))
    return index


DERIVED_NAMES = ("timbre_logdets", "terms", "content_words", "embedded")
DERIVED_ATTRIBUTES = {"timbre_logdets": "logdets"}   # the Index attribute of a derived array, when named otherwise


def _optional(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray | None:
    """A saved per-row array that the index can recompute, memory-mapped, its first
    ``shape[0]`` rows (None when missing, shorter, or of another shape or type:
    recomputed on the first query)."""
    try:
        array = np.load(regular_file(path), allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError):
        return None
    fits = array.shape[1:] == shape[1:] and len(array) >= shape[0] and array.dtype == dtype
    return array[: shape[0]] if fits else None


# The index each (folder, kind, params) was last loaded or saved as in this process, with
# the signature of its header file then. A process that searches many times (the API,
# `fpcli bench`, a player) reuses it instead of mapping 14 files per query; refresh()
# still brings it up to date from the store's journal, so it is never stale.
_RECENT: dict[tuple[str, str, str], tuple[tuple[int, int, int] | None, Index]] = {}


def loaded_index(folder: Path, kind: str, params_key: str) -> Index | None:
    """This process's copy when the saved header is the one it came with, else the saved one."""
    recent = _RECENT.get((str(folder), kind, params_key))
    if recent is not None and recent[0] == header_signature(folder, kind, params_key):
        return recent[1]
    return load_index(folder, kind, params_key)


IndexProgress = Callable[[str, int, int | None], None]   # (kind, rows read, records in the store or None)


def current_index(store: FingerprintStore, kind: str, params_key: str,
                  progress: IndexProgress | None = None) -> tuple[Index, dict[str, Any]]:
    """Load, refresh and save the index of ``kind``; returns it and what was done.
    ``progress`` hears of a build from every record (``index.build_index``)."""
    build_progress = None if progress is None else functools.partial(progress, kind)
    started = time.perf_counter()
    store.remove_expired()   # their removal moves the epoch: the index is refreshed without them
    folder = store.backend.index_dir
    index, signature = _saved(folder, kind, params_key)
    pending = pending_changes(index, store) if index is not None else None
    fetched = (index is None or pending is None or pending.needs_rebuild(len(index))) \
        and _fetch_shared(store, folder, kind, params_key)
    if fetched:
        signature = header_signature(folder, kind, params_key)
        index = load_index(folder, kind, params_key)
        pending = pending_changes(index, store) if index is not None else None
    patched = None
    if index is not None and pending is not None:
        patched = patch_saved(index, store, folder, signature, pending)
    if patched is not None:
        # A few records added or changed, written into the saved files: map them again.
        index, reread, action = load_index(folder, kind, params_key), patched, "patched"
    if index is None:
        index = build_index(store, kind, params_key, build_progress)
        reread, action = len(index), "built"
    elif patched is None:
        index, reread, action = refresh(index, store, pending, build_progress)
    saved = save_index(index, folder) if action not in ("loaded", "patched") else True
    shared = keep_shared_current(store, index, rebuilt=action in ("built", "rebuilt")) \
        if saved and action != "loaded" else 0
    _RECENT[(str(folder), kind, params_key)] = (header_signature(folder, kind, params_key), index)
    return index, {"index": action, "records_read": reread, "rows": len(index),
                   "index_seconds": time.perf_counter() - started, "index_saved": saved,
                   "index_fetched": fetched, "index_shared_bytes": shared}


def _saved(folder: Path, kind: str, params_key: str) -> tuple[Index | None, tuple[int, int, int] | None]:
    """The saved index of ``kind`` (this process's copy while current) and the signature
    of its header as read before it."""
    signature = header_signature(folder, kind, params_key)
    index = loaded_index(folder, kind, params_key)
    if index is None and header_signature(folder, kind, params_key) != signature:
        # Saved again while this read it (the previous save's files are removed): read the new one.
        signature = header_signature(folder, kind, params_key)
        index = loaded_index(folder, kind, params_key)
    return index, signature


# -- the index shared through the store (Redis; search/shared.py) ---------------------------

def _fetch_shared(store: FingerprintStore, folder: Path, kind: str, params_key: str) -> bool:
    """Copy the store's shared index of ``kind`` into ``folder`` when there is one that
    the journal can bring up to date, with the derived arrays the copy leaves out
    computed and saved; False when there is none (or it would be built again anyway,
    or cannot be copied)."""
    stem = index_stem(kind, params_key)
    try:
        state = shared_state(store, stem)
        if state is None or not _replayable(store, state) or not fetch(store, folder, stem):
            return False
    except (OSError, FpcliError):
        return False   # an unwritable folder, a Redis error: this client builds its own
    copied = load_index(folder, kind, params_key)
    if copied is not None:
        _save_missing_derived(copied, folder)
    return True


def _save_missing_derived(index: Index, folder: Path) -> None:
    """Compute and save the derived arrays the saved ``index`` lacks (a shared copy
    leaves out the cheap ones), so later processes map them instead."""
    stem = index_stem(index.kind, index.params_key)
    try:
        with folder_lock(folder):
            header = read_header(folder, stem)
            have = header.get("derived", [])
            missing = {name: array for name, array in _derived_arrays(index).items() if name not in have}
            if not missing or header.get("generation") != index.generation or header.get("rows") != len(index):
                return
            for name, array in missing.items():
                _save_array(array_path(folder, stem, header, name), array)
            write_text(folder / f"{stem}.json", json.dumps({**header, "derived": sorted([*have, *missing])}))
    except (OSError, ValueError, TypeError, FpcliError):
        return   # the index works without them: they are computed in memory instead


def _replayable(store: FingerprintStore, state: dict[str, Any]) -> bool:
    """Whether an index saved with header ``state`` can be refreshed instead of rebuilt."""
    generation, epoch, rows = state.get("generation"), state.get("epoch"), state.get("rows")
    if state.get("format") != INDEX_FORMAT or not isinstance(generation, int) or not isinstance(rows, int) \
            or not isinstance(epoch, list):
        return False
    return not changes_since(store, generation, tuple(epoch)).needs_rebuild(rows)


def keep_shared_current(store: FingerprintStore, index: Index, *, rebuilt: bool) -> int:
    """Share ``index`` (saved in the store's index folder) again when the store shares
    one of its kind and this one was rebuilt, is of another epoch or is SHARE_LAG
    changes ahead; returns the bytes shared (0: none, or sharing is off). A failure
    to share leaves the shared copy as it was: it is an optimisation for others."""
    stem = index_stem(index.kind, index.params_key)
    try:
        state = shared_state(store, stem)
        if state is None:
            return 0
        generation = state.get("generation")
        if not rebuilt and state.get("epoch") == list(index.epoch) and isinstance(generation, int) \
                and index.generation - generation < SHARE_LAG:
            return 0
        return share(store, store.backend.index_dir, stem, index_files)
    except (OSError, FpcliError):
        return 0


def share_indexes(store: FingerprintStore, params_key: str,
                  progress: IndexProgress | None = None) -> list[dict[str, Any]]:
    """Bring the index of every kind up to date and share it through the store (an
    empty list when the store's clients share its index folder already)."""
    if file_sets(store) is None:
        return []
    shared = []
    folder = store.backend.index_dir
    for kind in KINDS:
        index, info = current_index(store, kind, params_key, progress)
        if not info["index_saved"]:
            raise FpcliError(f"the search index could not be saved in {folder} (is it writable?): "
                             "nothing was shared")
        try:
            size = share(store, folder, index_stem(kind, params_key), index_files)
        except OSError as exc:
            raise FpcliError(f"cannot read the saved search index in {folder}: {exc.strerror or exc}") from None
        shared.append({"kind": kind, "rows": len(index), "generation": index.generation, "bytes": size})
    return shared


def unshare_indexes(store: FingerprintStore, params_key: str) -> list[dict[str, Any]]:
    """Stop sharing the index of every kind; what each freed."""
    return [{"kind": kind, "bytes": unshare(store, index_stem(kind, params_key))} for kind in KINDS]
