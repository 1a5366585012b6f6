"""Saved search indexes: the arrays of an ``Index`` as ``.npy`` files (no pickle) and a
JSON header in the store's index folder, memory-mapped when loaded; ``current_index``
loads, refreshes from the store's journal (or builds) and saves, and a process keeps
the index it last loaded or saved while the header on disk is unchanged."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fpcli.errors import FpcliError
from fpcli.files import write_text
from fpcli.search.index import Index, build_index, feature_dims, pending_changes, refresh
from fpcli.search.patch import folder_lock, header_signature, patch_saved
from fpcli.search.timbre import TimbreFit
from fpcli.store import FingerprintStore

INDEX_FORMAT = 3         # 3: timbre rows and fit


def save_index(index: Index, folder: Path) -> bool:
    """Write the arrays (.npy, no pickle) then the JSON header, each atomically.
    Returns False when the folder is not writable: the index is then rebuilt in
    memory on every query, slower but correct."""
    stem = f"{index.kind}-{index.params_key}"
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
    for name, array in arrays.items():
        handle, temporary = tempfile.mkstemp(prefix=".fpcli-", suffix=".npy", dir=folder)
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(temporary, folder / f"{stem}.{name}.npy")
    header = {"format": INDEX_FORMAT, "kind": index.kind, "params_key": index.params_key, "rows": len(index),
              "generation": index.generation, "epoch": list(index.epoch),
              "changed_since_fit": index.changed_since_fit,
              "timbre_scales": None if index.timbre_fit is None
              else [index.timbre_fit.embed_scale, index.timbre_fit.js_scale],
              # The derived arrays this save wrote: a file left by another save (an
              # older fpcli writes fewer) is then never read as current.
              "derived": sorted(derived)}
    write_text(folder / f"{stem}.json", json.dumps(header))


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


def _load_timbre_fit(folder: Path, stem: str, scales: list[float] | None) -> TimbreFit | None:
    if scales is None:
        return None
    parts = {name: np.load(folder / f"{stem}.timbre_{name}.npy", allow_pickle=False) for name in TIMBRE_FIT_ARRAYS}
    return TimbreFit(parts["whiten"], parts["centre"], parts["axes"], float(scales[0]), float(scales[1]))


def load_index(folder: Path, kind: str, params_key: str) -> Index | None:
    """The saved index, or None when missing or inconsistent (a rebuild follows)."""
    stem = f"{kind}-{params_key}"
    try:
        header = json.loads((folder / f"{stem}.json").read_text())
        if header.get("format") != INDEX_FORMAT:
            return None
        # Memory-mapped: a query reads the pages it touches (1,000 rows of the timbre,
        # none of the keys), not every file. A later save replaces the files (a new
        # inode), so a mapping stays valid.
        arrays = {name: np.load(folder / f"{stem}.{name}.npy", allow_pickle=False,
                                mmap_mode=None if name in ("low", "high") else "r")
                  for name in ("values", "keys", "paths", "contents", "low", "high", "timbre")}
        timbre_fit = _load_timbre_fit(folder, stem, header.get("timbre_scales"))
    except (OSError, ValueError, TypeError, IndexError):
        return None
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
    shapes = _derived_shapes(index)
    # A header without the list was written by a save that always wrote the embedding.
    for name in header.get("derived", ["embedded"]):
        if name in shapes:
            setattr(index, f"_{DERIVED_ATTRIBUTES.get(name, name)}", _optional(folder / f"{stem}.{name}.npy",
                                                                             *shapes[name]))
    return index


DERIVED_ATTRIBUTES = {"timbre_logdets": "logdets"}   # the Index attribute of a derived array, when named otherwise


def _optional(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray | None:
    """A saved per-row array that the index can recompute, memory-mapped, its first
    ``shape[0]`` rows (None when missing, shorter, or of another shape or type:
    recomputed on the first query)."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
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


def current_index(store: FingerprintStore, kind: str, params_key: str) -> tuple[Index, dict[str, Any]]:
    """Load, refresh and save the index of ``kind``; returns it and what was done."""
    started = time.perf_counter()
    folder = store.backend.index_dir
    signature = header_signature(folder, kind, params_key)
    index = loaded_index(folder, kind, params_key)
    pending, patched = None, None
    if index is not None:
        pending = pending_changes(index, store)
        patched = patch_saved(index, store, folder, signature, pending)
    if patched is not None:
        # A few records added or changed, written into the saved files: map them again.
        index, reread, action = load_index(folder, kind, params_key), patched, "patched"
    if index is None:
        index = build_index(store, kind, params_key)
        reread, action = len(index), "built"
    elif patched is None:
        index, reread, action = refresh(index, store, pending)
    saved = save_index(index, folder) if action not in ("loaded", "patched") else True
    _RECENT[(str(folder), kind, params_key)] = (header_signature(folder, kind, params_key), index)
    return index, {"index": action, "records_read": reread, "rows": len(index),
                   "index_seconds": time.perf_counter() - started, "index_saved": saved}
