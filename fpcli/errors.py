"""The few exception types fpcli raises on purpose.

Everything the user can cause (a bad file, a bad option, a broken store) is an
``FpcliError``; the CLI turns it into one red line and exit code 1. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class FpcliError(Exception):
    """Base class of every error fpcli reports to the user."""


class AudioReadError(FpcliError):
    """A file could not be decoded at all (empty, not audio, bad header, unreadable).

    The message always names the file and the reason.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ParameterError(FpcliError, ValueError):
    """An analysis parameter or option value breaks a rule (the message names both)."""
