"""The command line: parse options, make one core call, render. The only package that
imports typer, rich or tabulate.

Exit codes: 0 ok; 3 the run completed but some files failed (or a check found
problems); 1 a fatal error (one ``error:`` line on stderr); 2 a usage error;
4 below a threshold; 130 interrupted (finished work is kept).
"""

from __future__ import annotations

import os
import sys

from fpcli.cli import analyze_cmd, bench_cmd, cache_cmd, search_cmd, validate_cmd  # noqa: F401  (registers commands)
from fpcli.cli.app import (
    EXIT_BELOW_THRESHOLD,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    app,
)
from fpcli.cli.options import user_message
from fpcli.cli.render import error_line
from fpcli.errors import FpcliError, ParameterError
from fpcli.memory import keep_buffers_on_heap

__all__ = ["EXIT_BELOW_THRESHOLD", "EXIT_FATAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE",
           "app", "main"]


def main() -> None:
    """Console entry point: the one place that turns an FpcliError into one line.

    Typer's standalone mode handles usage errors (exit 2) and --help; a
    ParameterError from the core is a usage error too; anything that is neither a
    usage error nor an FpcliError is a bug and keeps its traceback.
    """
    keep_buffers_on_heap()  # 12-15 % faster analysis in this process (fpcli/memory.py)
    try:
        app()
    except ParameterError as exc:
        error_line(user_message(exc))
        sys.exit(EXIT_USAGE)
    except FpcliError as exc:
        error_line(user_message(exc))
        sys.exit(EXIT_FATAL)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # `fpcli cache list | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_OK)
