"""Reading and writing user-named files: ``-`` is stdin / stdout. A written file goes to a
new temporary file in the target's folder (``mkstemp``: O_EXCL, never following a
planted symlink) and renamed over the target, which must be a regular file if it
exists (a device or a FIFO is never replaced)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

from fpcli.errors import FpcliError
from fpcli.extensions import AUDIO_EXTENSIONS


def printable_path(path: str) -> str:
    """A path for people: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = _path_bytes(path).decode("utf-8", "backslashreplace")
    if text.isprintable():  # the common case, at C speed (a library run prints every path)
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _path_bytes(text: str) -> bytes:
    """The bytes of a path, or of text that never was one (a message, a table cell) in
    UTF-8 when the file-system encoding cannot hold it (a dash under a Latin-1 locale)."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape")  # an undecodable byte of a name stays that byte
    except UnicodeEncodeError:  # a surrogate that no byte gave: shown as its escape
        return text.encode("utf-8", "backslashreplace")


@contextlib.contextmanager
def atomic_text(destination: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A text stream whose content replaces ``destination`` only when the block ends
    without an error (or stdout for ``-``). Raises FpcliError naming the file."""
    target = os.fspath(destination)
    if target == "-":
        if sys.stdout is None:  # closed when the process started (``>&-``)
            raise FpcliError("cannot write stdout: it is closed")
        yield sys.stdout
        sys.stdout.flush()
        return
    _refuse_non_regular(target)
    folder = os.path.dirname(os.path.abspath(target))
    _remove_orphans(folder)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{_temporary_prefix()}{os.getpid()}-", suffix=".tmp",
                                             dir=folder)
    except OSError as exc:
        raise FpcliError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as exc:
        _unlink_quietly(temporary)
        raise FpcliError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(temporary)
        raise


def _mode_for(target: str) -> int:
    """The permissions a file written in place of ``target`` gets: those of the file it
    replaces (an export over a file kept private, mode 600, was left readable by all,
    644), else 644 less the umask, as a new file gets."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o644 & ~_umask()


PID_MAX = 1 << 22   # Linux's largest process id; a larger number in a name is no process's


def _temporary_prefix() -> str:
    """The start of this host's temporary files' names; the process id follows it."""
    host = "".join(c if c.isalnum() else "_" for c in os.uname().nodename)[:32] or "host"
    return f".fpcli-{host}-"


def _remove_orphans(folder: str) -> None:
    """Remove this host's temporary files in ``folder`` whose process is gone: a
    process killed outright (kill -9, a power cut) during a write left its partial
    copy (40 MB for an export of 10,000 records) behind, hidden. Another host's are
    left alone: its process ids mean nothing here (a shared network folder)."""
    prefix = _temporary_prefix()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(prefix):].partition("-")[0]
            if pid.isdigit() and 0 < int(pid) <= PID_MAX and not _process_alive(int(pid)):
                _unlink_quietly(entry.path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # alive, but another user's
        return True
    return True


def read_text(source: str | os.PathLike[str]) -> str:
    """The whole text of ``source`` (stdin for ``-``). Raises FpcliError naming it."""
    name = os.fspath(source)
    try:
        if name == "-":
            return sys.stdin.read()
        with open(name, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FpcliError(f"cannot read {'stdin' if name == '-' else name}: {reason}") from None


def write_text(destination: str | os.PathLike[str], text: str) -> None:
    with atomic_text(destination) as out:
        out.write(text)


def special_file_kind(st: os.stat_result) -> str | None:
    """What a file that is not a regular one is ("a folder", "a FIFO", "a device",
    "a socket or other special file"); None for a regular file. A FIFO or a device
    would block a reader forever, and says nothing of audio by its size."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file"


def read_regular(path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file ``path``; an OSError (strerror "is a
    FIFO, not a file", ...) for any other kind. Opened without blocking and checked on
    the open descriptor: a FIFO named album.cue or .fpcliignore hung analyze, search and
    prune forever, as one named *.wav would."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        kind = special_file_kind(os.fstat(descriptor))
        if kind is not None:
            raise OSError(errno.EINVAL, f"is {kind}, not a file")
        chunks, size = [], 0
        while size < limit and (chunk := os.read(descriptor, min(limit - size, 1 << 20))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def check_writable(target: str) -> None:
    """FpcliError unless ``atomic_text`` could write ``target`` now: checked before work
    that takes minutes to fill it. A trial file is created and removed in its folder
    (``os.access`` says yes to root on a read-only mount)."""
    _refuse_non_regular(target)
    if target.endswith(("/", os.sep)) or os.path.basename(target) in (".", ".."):
        # `--m3u newdir/` wrote a playlist named "newdir": a name ending in a slash
        # names a folder, and there is none.
        raise FpcliError(f"cannot write {target}: a name ending in / is a folder, and there is none; "
                         "give a file name")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FpcliError(f"cannot write {target}: no such folder {folder}")
    try:
        handle, trial = tempfile.mkstemp(prefix=".fpcli-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FpcliError(f"cannot write {target}: cannot create a file in {folder}: {exc.strerror or exc}") from None
    os.close(handle)
    _unlink_quietly(trial)


def _refuse_non_regular(target: str) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FpcliError(f"cannot write {target}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise FpcliError(f"cannot write {target}: it is a symbolic link (write to its target instead)")
    if stat.S_ISDIR(st.st_mode):
        raise FpcliError(f"cannot write {target}: it is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise FpcliError(f"cannot write {target}: it exists and is not a regular file")
    if os.path.splitext(target)[1].lower() in AUDIO_EXTENSIONS:
        # A playlist or report written over a track is the track lost (``search x.flac
        # --m3u x.flac`` replaced the query's own audio).
        raise FpcliError(f"cannot write {target}: it is an audio file (by its name), which this would replace")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
