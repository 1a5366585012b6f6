"""The persistent fingerprint store (ARCHITECTURE.md, "The store").

``spec`` turns a location into a backend (``diskcache_backend`` or ``redis_backend``,
both implementing ``protocol.Backend``); ``records`` holds the typed record, identity
and JSON; ``core`` the store itself; ``maintenance`` prune, verify, repair, export and
import.

Names are loaded on first use (PEP 562): ``from fpcli.store import StoreSpec`` imports
``spec`` alone, so the command line can name the store's options without importing the
store (start-up time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fpcli.errors import BadEntryError, StoreError

if TYPE_CHECKING:
    from fpcli.store.core import FingerprintStore, Lookup, Need
    from fpcli.store.maintenance import (
        ImportReport,
        Problem,
        Pruned,
        export_store,
        forget_orphans,
        import_store,
        prune,
        repair,
        verify,
    )
    from fpcli.store.records import Failure, FileIdentity, Record, file_digest
    from fpcli.store.spec import DEFAULT_SIZE_LIMIT_MB, StoreSpec, default_store_path, is_redis_url

_MODULE_OF = {
    **dict.fromkeys(("FingerprintStore", "Lookup", "Need"), "core"),
    **dict.fromkeys(("ImportReport", "Problem", "Pruned", "export_store", "forget_orphans", "import_store", "prune",
                     "repair", "verify"), "maintenance"),
    **dict.fromkeys(("Failure", "FileIdentity", "Record", "file_digest"), "records"),
    **dict.fromkeys(("DEFAULT_SIZE_LIMIT_MB", "StoreSpec", "default_store_path", "is_redis_url"), "spec"),
}

__all__ = [
    "BadEntryError", "DEFAULT_SIZE_LIMIT_MB", "Failure", "FileIdentity", "FingerprintStore", "ImportReport",
    "Lookup", "Need", "Problem", "Pruned", "Record", "StoreError", "StoreSpec", "default_store_path",
    "export_store", "file_digest", "forget_orphans", "import_store", "is_redis_url", "prune", "repair", "verify",
]


# Hidden from type checkers: to them a module __getattr__ made every name, a misspelt
# one too, an Any; they see the names imported under TYPE_CHECKING above.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
