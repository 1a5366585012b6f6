"""The persistent fingerprint store (ARCHITECTURE.md, "The store").

``spec`` turns a location into a backend (``diskcache_backend`` or ``redis_backend``,
both implementing ``protocol.Backend``); ``records`` holds the typed record, identity
and JSON; ``core`` the store itself; ``maintenance`` prune, verify, repair, export and
import.
"""

from fpcli.errors import BadEntryError, StoreError
from fpcli.store.core import FingerprintStore, Lookup, Need
from fpcli.store.maintenance import ImportReport, Problem, Pruned, export_store, import_store, prune, repair, verify
from fpcli.store.records import Failure, FileIdentity, Record, file_digest, printable_path
from fpcli.store.spec import DEFAULT_SIZE_LIMIT_MB, StoreSpec, default_store_path, is_redis_url

__all__ = [
    "BadEntryError", "DEFAULT_SIZE_LIMIT_MB", "Failure", "FileIdentity", "FingerprintStore", "ImportReport",
    "Lookup", "Need", "Problem", "Pruned", "Record", "StoreError", "StoreSpec", "default_store_path",
    "export_store", "file_digest", "import_store", "is_redis_url", "printable_path", "prune", "repair", "verify",
]
