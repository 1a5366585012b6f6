"""Every exception type fpcli raises on purpose.

Everything the user can cause (a bad file, a bad option, a broken store or record)
is an ``FpcliError``; the CLI turns it into one ``error: ...`` line and an exit code.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class FpcliError(Exception):
    """Base class of every error fpcli reports to the user."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its message and attributes, not through ``__init__``: the
        subclasses' own signatures (a path and a reason, a key and its problems) are
        not ``self.args``, and unpickling called ``__init__(*args)``, which failed: one
        unreadable file in a ``ProcessPoolExecutor`` broke the pool for every file."""
        return (_rebuilt, (type(self), self.args), self.__dict__)


def _rebuilt(kind: type[FpcliError], args: tuple[Any, ...]) -> FpcliError:
    """An error of ``kind`` with ``args``, made without its ``__init__`` (pickle then
    restores its attributes)."""
    error = kind.__new__(kind)
    error.args = args
    return error


class AudioReadError(FpcliError):
    """A file could not be decoded at all (empty, not audio, bad header, unreadable).

    The message always names the file and the reason.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class AnalysisError(FpcliError):
    """A decodable file the analyzers cannot fingerprint (e.g. a sample rate they do
    not support); recorded as a failure like an unreadable file."""


class ParameterError(FpcliError, ValueError):
    """A parameter value breaks a rule. ``parameter`` names it as the Python API does
    ("weights", "strategy"); the command line shows its option instead, so the core
    never names a --flag."""

    def __init__(self, reason: str, parameter: str | None = None) -> None:
        super().__init__(f"{parameter}: {reason}" if parameter else reason)
        self.reason = reason
        self.parameter = parameter


class UnstorableError(ParameterError):
    """A result or record the store could not read back, so it is not stored (a value
    out of its domain, a name no path can have). A ParameterError to a caller of the
    library, who passed it; a failure of that one file to a run over files, whose
    analysis made it from a damaged file."""


class StoreError(FpcliError):
    """The store cannot be opened, read or written, or holds something unsafe.
    ``repairable``: the store's database is damaged and a repair may save it (the
    command line says how)."""

    def __init__(self, message: str, *, repairable: bool = False) -> None:
        super().__init__(message)
        self.repairable = repairable


class DamagedStoreError(StoreError):
    """The store's database is too damaged to open at all; ``cache verify --repair``
    moves it aside and rebuilds it from the rows that can still be read."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message, repairable=True)
        self.location = location


class StoreFullError(StoreError):
    """The store refused a write for lack of room (a Redis at its maxmemory whose policy
    evicts nothing); reads and deletes still work."""


class StoreReadOnlyError(StoreError):
    """The store refused a write because this user may only read it (a Redis ACL
    without write commands); reads still work."""


class BadEntryError(StoreError):
    """One entry of the store (or one line of an import) cannot be used: not JSON, a
    pickle, or a value that breaks the record schema. One bad entry is one bad entry:
    commands skip it with a warning; ``cache verify --repair`` removes it."""

    def __init__(self, key: str, problems: list[str]) -> None:
        super().__init__(f"{key}: " + "; ".join(problems[:3]))
        self.key = key
        self.problems = problems


class SearchError(FpcliError):
    """A search that cannot be answered (empty store, undecodable query, ...)."""


class InputFailed(FpcliError):
    """The one input a command was given failed, as a failed file in ``analyze`` does:
    not a fatal error (the command exits 3, not 1)."""


class QueryError(SearchError, InputFailed):
    """The query file itself cannot be analysed (missing, empty, not audio)."""


class NotStoredError(InputFailed):
    """``cache show`` of a file or stream the store holds no record of."""
