"""Shared parts of the benchmark scripts: the environment of a user's run, and the
ending (print the Markdown report, write it if asked)."""

from __future__ import annotations

import os
from pathlib import Path


def installed_environment() -> dict[str, str]:
    """The environment of a user's run, for timing whole commands: fpcli's modules
    compiled once (as an install does) and read from their cached bytecode. Without it,
    a shell that sets PYTHONDONTWRITEBYTECODE makes each command and its fork server
    compile every module on every run (about 1 s of a run here)."""
    import compileall

    import fpcli

    compileall.compile_dir(str(Path(fpcli.__file__).parent), quiet=1)
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def emit(report: str, out: Path | None) -> int:
    print(report)
    if out:
        out.write_text(report)
    return 0
