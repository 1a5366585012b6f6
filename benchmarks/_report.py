"""Shared ending of the benchmark scripts: print the Markdown report, write it if asked."""

from __future__ import annotations

from pathlib import Path


def emit(report: str, out: Path | None) -> int:
    print(report)
    if out:
        out.write_text(report)
    return 0
