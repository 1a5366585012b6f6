"""A saved search index copied to and from the store, for stores whose clients do not
share a folder (Redis; ``store.protocol.SharedFiles``).

Every client of a Redis store keeps its search index in its own cache folder. Without
a shared copy, a client with no index (a new machine, a second user) reads every
record over the network to build one: 19 s at 100,000 records, about 3 minutes at
1,000,000. Once a client runs ``fpcli cache share-index``, the store holds the
index's files (in the meta space: never evicted), and a client that would otherwise
build copies them and replays the journal from there. Clients share it again when
theirs is rebuilt or SHARE_LAG changes ahead (``saved.py`` decides when). This
module only copies the files of one saved index, made smaller for the store: the
arrays a client derives in a fraction of a second (LOCAL_DERIVED) stay out, and text
columns go as ASCII bytes instead of 4-byte characters (Redis memory is the scarce
resource of a shared store; the embedding, 3.7 s per 100,000 rows, is shared).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fpcli.files import write_text
from fpcli.search.patch import array_path, folder_lock, new_token, read_header, regular_file, remove_other_arrays
from fpcli.store import FingerprintStore
from fpcli.store.protocol import JOURNAL_LIMIT, SharedFiles

SHARE_LAG = JOURNAL_LIMIT // 2   # changes a client's index may be ahead before it shares it again
LOCAL_DERIVED = ("terms", "content_words")   # derived arrays a client recomputes (~0.1 s per 100,000 rows)


def file_sets(store: FingerprintStore) -> SharedFiles | None:
    """The store's shared file sets, or None when its clients share the index folder."""
    backend = store.backend
    return backend if isinstance(backend, SharedFiles) else None


def shared_state(store: FingerprintStore, stem: str) -> dict[str, Any] | None:
    """The saved-index header (JSON data) of the shared copy of index ``stem``, or None."""
    sets = file_sets(store)
    header = sets.shared_header(stem) if sets is not None else None
    index_header = header.get("index") if header is not None else None
    return index_header if isinstance(index_header, dict) else None


def share(store: FingerprintStore, folder: Path, stem: str,
          files_of: Callable[[Path, dict[str, Any]], dict[str, Path]]) -> int:
    """Copy the saved index ``stem`` of ``folder`` (its header and the array files
    ``files_of(folder, header)`` names) into the store; returns the bytes stored (0:
    nothing saved to share)."""
    sets = file_sets(store)
    if sets is None:
        return 0
    with folder_lock(folder):      # no save or patch of the folder meanwhile: one consistent set
        try:
            header = read_header(folder, stem)
            files = {name: path for name, path in files_of(folder, header).items() if name not in LOCAL_DERIVED}
        except (OSError, ValueError):
            return 0
        if not all(path.is_file() for path in files.values()):
            return 0
        with tempfile.TemporaryDirectory(prefix=".fpcli-share-", dir=folder) as scratch:
            narrowed = [name for name in files if _narrow(files[name], Path(scratch) / f"{name}.npy")]
            files.update({name: Path(scratch) / f"{name}.npy" for name in narrowed})
            return sets.share_files(stem, files, {"index": header, "ascii": narrowed})


def _narrow(source: Path, target: Path) -> bool:
    """Write the array of ``source`` to ``target`` as ASCII bytes when it is text that
    is all ASCII (a key, a content digest); False (nothing written) otherwise."""
    array = np.load(regular_file(source), mmap_mode="r", allow_pickle=False)
    if array.dtype.kind != "U":
        return False
    try:
        narrow = array.astype(f"S{max(1, array.dtype.itemsize // 4)}")
    except UnicodeEncodeError:
        return False
    np.save(target, narrow, allow_pickle=False)
    return True


def _widen(path: Path) -> None:
    """Back from ``_narrow``: the ASCII bytes of ``path`` as text again, in place."""
    array = np.load(path, allow_pickle=False)
    if array.dtype.kind != "S":
        raise ValueError(f"{path.name} is not ASCII text")
    np.save(path, array.astype(f"U{max(1, array.dtype.itemsize)}"), allow_pickle=False)


def fetch(store: FingerprintStore, folder: Path, stem: str) -> bool:
    """Replace the saved index ``stem`` of ``folder`` with the store's shared copy;
    False (the folder unchanged) when there is none or it is incomplete or damaged.
    What the copy holds is checked by ``saved.load_index`` like any saved index."""
    sets = file_sets(store)
    header = sets.shared_header(stem) if sets is not None else None
    if sets is None or header is None or not isinstance(header.get("index"), dict):
        return False
    with folder_lock(folder):
        copies = sets.fetch_files(stem, header, folder)
        if copies is None:
            return False
        try:
            for name in header.get("ascii", []):
                _widen(copies[name])
        except (OSError, ValueError, TypeError, KeyError):
            for copy in copies.values():
                copy.unlink(missing_ok=True)
            return False
        index_header = {**header["index"], "token": new_token()}
        # Only the derived arrays copied: the others are computed by this client.
        derived = index_header.get("derived")
        index_header["derived"] = [name for name in derived if name in copies] if isinstance(derived, list) else []
        # Under a new token, as a save writes (patch.array_path): until the header is
        # written, the folder's previous index is whole.
        for name, copy in copies.items():
            os.replace(copy, array_path(folder, stem, index_header, name))
        write_text(folder / f"{stem}.json", json.dumps(index_header))   # last: the commit point
        remove_other_arrays(folder, stem, index_header)
    return True


def unshare(store: FingerprintStore, stem: str) -> int:
    """Remove the shared copy of index ``stem``; returns the bytes freed."""
    sets = file_sets(store)
    return sets.unshare(stem) if sets is not None else 0
