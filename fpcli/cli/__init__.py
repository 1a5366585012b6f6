"""The command line: parse options, make one core call, render. The only package that
imports typer, rich or tabulate.

Exit codes: 0 ok; 3 the run completed but some files failed (or a check found
problems); 1 a fatal error (one ``error:`` line on stderr); 2 a usage error;
4 below a threshold; 130 interrupted (finished work is kept); 143 and 129 stopped by
SIGTERM and SIGHUP (as an interrupt); 141 the reader of stdout left.

Start-up: a command's module (and through it the core it needs) is imported only
when that command runs; ``--version`` imports none and ``--help`` only the command
modules, which import the core inside their functions. ``from fpcli.cli import app``
gives the application with every command.
"""

from __future__ import annotations

import codecs
import importlib
import locale
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from fpcli.cli.root import (
    EXIT_BELOW_THRESHOLD,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
)
from fpcli.errors import FpcliError, InputFailed, ParameterError

if TYPE_CHECKING:
    import typer

__all__ = ["EXIT_BELOW_THRESHOLD", "EXIT_BROKEN_PIPE", "EXIT_FATAL", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_SOME_FAILED", "EXIT_USAGE", "app", "main"]

# Each top-level command and the module that registers it on the root application.
COMMAND_MODULES = {"analyze": "analyze_cmd", "validate": "validate_cmd", "search": "search_cmd",
                   "bench": "bench_cmd", "cache": "cache_cmd"}
# Root options that take a value (the command name comes after them).
_VALUED_ROOT_OPTIONS = ("--store", "--store-size-mb", "--store-ttl")


def command_named(argv: list[str]) -> str | None:
    """The command ``argv`` (without the program name) runs, or None when it names
    none (``--help``, ``--version``, nothing, or a word that is not a command)."""
    skip_value = False
    for word in argv:
        if skip_value:
            skip_value = False
        elif word in _VALUED_ROOT_OPTIONS:
            skip_value = True
        elif word == "--":
            return None
        elif not word.startswith("-"):
            return word if word in COMMAND_MODULES else None
    return None


def _misplaced_root_option(argv: list[str]) -> str | None:
    """What is wrong when a root option (``--store``...) comes after the command:
    click said "No such option: --store (Possible options: --json, --no-store)",
    which sent a newcomer to --no-store. None when there is none."""
    name = command_named(argv)
    if name is None:
        return None
    after = argv[argv.index(name) + 1:]
    for word in after[:after.index("--")] if "--" in after else after:
        option = word.split("=", 1)[0]
        if option in _VALUED_ROOT_OPTIONS:
            return (f"{option} is an option of fpcli itself: give it before the command "
                    f"(fpcli {option} VALUE {name} ...)")
    return None


def application(argv: list[str]) -> typer.Typer:
    """The root application with the commands ``argv`` may need registered: the one it
    names; none for a bare ``--version``; all of them otherwise (help, shell completion,
    a misspelt command, which typer then reports with the list)."""
    name = command_named(argv)
    completing = any(key.startswith("_FPCLI_COMPLETE") for key in os.environ)
    if name is not None and not completing:
        needed = [COMMAND_MODULES[name]]
    elif "--version" in argv and not {"-h", "--help"} & set(argv) and not completing:
        needed = []
    else:
        needed = list(COMMAND_MODULES.values())
    for module in needed:
        importlib.import_module(f"fpcli.cli.{module}")
    from fpcli.cli.root import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # every command: what tests and CliRunner use
        return application(["--help"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _empty_argument(argv: list[str]) -> str:
    """What is wrong with the first empty argument: the option it was given to, by name
    ("argument 7 is empty" counted words the user never numbered), or its position
    (after a flag, such as --json, it is a path: `analyze --json "$MUSIC"`)."""
    index = argv.index("", 1)
    before = argv[index - 1] if index > 1 else ""
    if before.startswith("-") and _takes_value(argv[1:index - 1], before):
        return f"{before} is given an empty value (an unset shell variable?)"
    return f"argument {index} is empty (an unset shell variable?): give a path or a value"


def _takes_value(words: list[str], option: str) -> bool:
    """Whether ``option`` of the command ``words`` lead to (the root's, or a
    command's, or a subcommand's: `cache show`) takes a value, not a flag."""
    from typer.main import get_command

    command: Any = get_command(application(words))
    found = list(command.params)
    for word in words:
        command = getattr(command, "commands", {}).get(word, command)
        found += [param for param in command.params if param not in found]
    return any(option in (*param.opts, *param.secondary_opts) and not getattr(param, "is_flag", False)
               and not getattr(param, "count", False) for param in found)


def main() -> None:
    """Console entry point: the one place that turns an FpcliError into one line.

    Typer's standalone mode handles usage errors (exit 2) and --help; a
    ParameterError from the core is a usage error too; anything that is neither a
    usage error nor an FpcliError is a bug and keeps its traceback (the store and the
    files read raise FpcliErrors of their own). stdout that cannot take the output is a
    fatal error (``OutputError``); a reader that left (``| head``) a quiet exit 141.
    """
    from fpcli.cli.options import user_message
    from fpcli.cli.render import OutputError, ReaderGone, error_line, guard_standard_streams
    from fpcli.memory import keep_buffers_on_heap

    _rerun_in_utf8_mode()
    guard_standard_streams()
    _stop_gracefully_on(signal.SIGTERM, signal.SIGHUP)
    try:   # from here a SIGTERM is an interrupt: everything after is inside (it exited 130, not 143)
        keep_buffers_on_heap()  # 12-15 % faster analysis in this process (fpcli/memory.py)
        if "" in sys.argv[1:]:
            # `fpcli analyze "$MUSIC"` with MUSIC unset: an empty path reads as ".", and the
            # command ran on whatever folder the shell was in. No fpcli argument may be empty.
            error_line(_empty_argument(sys.argv))
            sys.exit(EXIT_USAGE)
        if misplaced := _misplaced_root_option(sys.argv[1:]):
            error_line(misplaced)
            sys.exit(EXIT_USAGE)
        _run(sys.argv[1:])
    except ParameterError as exc:
        error_line(user_message(exc))
        sys.exit(EXIT_USAGE)
    except InputFailed as exc:  # the one input failed, as a failed file in `analyze`
        error_line(user_message(exc))
        sys.exit(EXIT_SOME_FAILED)
    except FpcliError as exc:
        error_line(user_message(exc))
        sys.exit(EXIT_FATAL)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(_interrupted_code())
    except ReaderGone:  # `fpcli cache list | head -1`: the reader left; quiet, as other tools
        _drop_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except OutputError as exc:  # `fpcli cache list >&-`, `> /dev/full`
        _drop_stdout()
        error_line(str(exc))
        sys.exit(EXIT_FATAL)


# The exit code of a process that a broken pipe's SIGPIPE ends (128 + 13), as `yes | head`
# gives it: `set -o pipefail` scripts see that the output was cut, as with other tools.
EXIT_BROKEN_PIPE = 141


def _run(argv: list[str]) -> None:
    """Run the command line; stdout is flushed before the exit, so that a reader that
    left or a full disk is found here and not in the interpreter's last flush (which
    would print "Exception ignored ..." and exit 120). A run stopped by SIGTERM or
    SIGHUP exits as such (143, 129), not as a Ctrl-C (130)."""
    try:
        application(argv)()
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            if _unhandled_interrupt(exc):
                from fpcli.cli.render import error_line

                error_line("interrupted")   # a command without its own words for it (search, import, verify)
            raise SystemExit(_interrupted_code()) from None
        raise
    finally:
        sys.stdout.flush()


def _unhandled_interrupt(exc: SystemExit) -> bool:
    """Whether Typer turned a KeyboardInterrupt that no command caught into this exit
    (its ``Exit(130)`` is raised from the interrupt); a command that caught it said so."""
    return isinstance(getattr(exc.__context__, "__cause__", None), KeyboardInterrupt)


def _rerun_in_utf8_mode() -> None:
    """Run again in Python's UTF-8 mode when the file-system encoding is not UTF-8 (a
    Latin-1 locale): paths are decoded by it, and the store keys them by that text, so
    a run under another locale named the same file differently (``cache prune`` then
    dropped the records of files that exist, and analyze added mojibake paths). In
    UTF-8 mode every run decodes paths alike; stdout and stderr keep the locale's
    encoding (PYTHONIOENCODING), so the terminal shows what it can."""
    if sys.flags.utf8_mode or codecs.lookup(sys.getfilesystemencoding()).name == "utf-8" or not sys.executable:
        return
    environment = dict(os.environ)
    environment.setdefault("PYTHONIOENCODING", locale.getpreferredencoding(False))
    os.execve(sys.executable, [sys.executable, "-X", "utf8", "-m", "fpcli", *sys.argv[1:]], environment)


_stopped_by: list[int] = []   # the termination signal received, if any


def _stop_gracefully_on(*signals: signal.Signals) -> None:
    """SIGTERM and SIGHUP stop a run as Ctrl-C does (finished tracks stored, workers
    stopped, a summary): the default ended the process at once and left its workers
    analysing a file whose result nobody would store."""
    def stop(signum: int, frame: Any) -> None:
        _stopped_by.append(signum)
        ctrl_c = signal.getsignal(signal.SIGINT)   # Python's raises KeyboardInterrupt; a stream's notes it
        if callable(ctrl_c):
            ctrl_c(signal.SIGINT, frame)
        else:   # SIGINT ignored (a background job of a script): stop all the same
            raise KeyboardInterrupt

    for number in signals:
        if signal.getsignal(number) == signal.SIG_DFL:   # not when the user chose to ignore it (nohup)
            signal.signal(number, stop)


def _interrupted_code() -> int:
    """130 for Ctrl-C; 128 + the signal for SIGTERM (143) and SIGHUP (129)."""
    return 128 + _stopped_by[0] if _stopped_by else EXIT_INTERRUPTED


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is still
    buffered cannot fail again (and print "Exception ignored ...") on the way out."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed when fpcli started: nothing buffered
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)
