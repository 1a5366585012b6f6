"""Running fpcli as a user would and judging what it printed.

``cli`` runs the real entry point (``fpcli.cli.main``, the one error boundary) in this
process, with stdout and stderr captured as strict UTF-8 byte streams (as a real
terminal or pipe would encode them); ``cli_subprocess`` runs ``python -m fpcli`` with
a time limit, for what could block or must be killed. Both give a ``Run``; ``Run.verdict``
classifies it as the soak table does: clear, traceback, hang or crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import traceback
from typing import Any

# stderr lines a clean run may print (the summary and notes of each command)
ALLOWED_PREFIXES = ("error:", "warning:", "rejected", "interrupted:", "stopped:", "analysed ", "checked ", "repaired:",
                    "imported ", "exported ", "removed ", "pruned ", "would prune ", "strategy ", "validated ",
                    "computing ", "building ", "would forget ", "forgot ", "no hits", "  ")
USAGE_MARKERS = ("Usage:", "Try ", "╭", "│", "╰")


@dataclasses.dataclass
class Run:
    args: tuple[str, ...]
    code: int | None          # None: it had to be killed (a hang)
    out: bytes
    err: bytes
    crash: str = ""           # an exception that escaped main(), or a signal that killed the process

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    @property
    def verdict(self) -> str:
        """hang, crash, traceback, unclear (a fatal exit without exactly one error line,
        or stray stderr lines) or clear."""
        if self.code is None:
            return "hang"
        if self.crash or self.code < 0:
            return "crash"
        if "Traceback (most recent call last)" in self.stderr + self.stdout:
            return "traceback"
        if self.code == 1 and len(self.error_lines()) != 1:
            return "unclear"
        if self.code != 2 and any(line and not line.startswith(ALLOWED_PREFIXES)
                                  for line in self.stderr.splitlines()):
            return "unclear"
        if self.code == 2 and not any(m in self.stderr for m in ("error", "Error", "Invalid", "Missing")):
            return "unclear"
        return "clear"

    def describe(self) -> str:
        return (f"fpcli {' '.join(self.args)} -> {self.code} ({self.verdict})\n"
                f"--- stderr\n{self.stderr[-3000:]}\n--- stdout\n{self.stdout[-1500:]}\n{self.crash}")


def _text(arg: Any) -> str:
    return os.fsdecode(arg) if isinstance(arg, bytes | os.PathLike) else str(arg)


def cli(*args: Any, store: Any = None, stdin: bytes = b"") -> Run:
    """``fpcli [--store STORE] ARGS`` through ``fpcli.cli.main`` in this process."""
    from fpcli.cli import main

    argv = (["--store", _text(store)] if store is not None else []) + [_text(a) for a in args]
    out, err = io.BytesIO(), io.BytesIO()
    streams = [io.TextIOWrapper(buffer, encoding="utf-8", errors="strict", write_through=True)
               for buffer in (out, err)]
    code: int | None = 0
    crash = ""
    saved = sys.argv, sys.stdin
    sys.argv = ["fpcli", *argv]
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - anything escaping main() is the finding
                crash = traceback.format_exc()
                code = 1
    finally:
        sys.argv, sys.stdin = saved
        for stream in streams:
            with contextlib.suppress(ValueError):
                stream.flush()
    return Run(tuple(argv), code, out.getvalue(), err.getvalue(), crash)


def cli_subprocess(*args: Any, store: Any = None, timeout: float = 60.0, env: dict[str, str] | None = None,
                   prefix: tuple[str, ...] = ()) -> Run:
    """``python -m fpcli ...`` in its own process group, killed (a hang) after ``timeout``."""
    argv = (["--store", _text(store)] if store is not None else []) + [_text(a) for a in args]
    command = [*prefix, sys.executable, "-m", "fpcli", *argv]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True, env={**os.environ, **(env or {})})
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        out, err = process.communicate()
        return Run(tuple(argv), None, out, err)
    crash = f"killed by signal {-process.returncode}" if process.returncode < 0 else ""
    return Run(tuple(argv), process.returncode, out, err, crash)


def assert_clear(run: Run, *codes: int) -> Run:
    """The run ended with one of ``codes`` and printed nothing but clear lines."""
    assert run.verdict == "clear", run.describe()
    if codes:
        assert run.code in codes, run.describe()
    return run
