"""Options shared by several commands and their parsing: the only place that names a
``--flag`` for the core (domain modules never do; they get plain values)."""

from __future__ import annotations

import contextvars
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fpcli.errors import FpcliError, ParameterError, StoreError
from fpcli.executors import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from fpcli.library import RunOptions
    from fpcli.store.spec import StoreSpec


# The running command's store (set by the root options), for checks that every command
# shares and that have no context at hand (``check_outputs``: no output file inside the
# store's folder).
COMMAND_STORE: contextvars.ContextVar[StoreSpec | None] = contextvars.ContextVar("COMMAND_STORE", default=None)

# The core's parameter names (ParameterError.parameter) as the options that set them.
OPTION_OF = {"weights": "--weights", "tolerances": "--tolerance", "strategy": "--strategy", "k": "-k",
             "name": "--name", "every_s": "--every", "path_map": "--path-map", "seconds": "--seconds",
             "exclude": "--exclude", "scheduler": "--scheduler"}
# What mends a damaged database, and the only command that reads past the damage:
# every other one, `cache export` included, stops at the first damaged page, so it is
# no way to save what is readable (it failed with this same hint).
REPAIR_HINT = ("run `fpcli cache verify --repair`: it rebuilds the store from every entry that can still be read "
               "and keeps the damaged database aside (other commands, `cache export` too, stop at the damage)")


def option_of(exc: ParameterError) -> str | None:
    """The option that set the parameter a core ParameterError names."""
    return None if exc.parameter is None else OPTION_OF.get(exc.parameter, exc.parameter)


def user_message(exc: FpcliError) -> str:
    """A core error in command-line terms: the option instead of the parameter name, and
    how to repair a damaged store."""
    if isinstance(exc, ParameterError) and exc.parameter is not None:
        return f"{option_of(exc)} {exc.reason}"
    if isinstance(exc, StoreError) and exc.repairable:
        return f"{exc}: {REPAIR_HINT}"
    return str(exc)


def finite(value: float | None) -> float | None:
    """Callback of every number option: NaN passes a min/max range (every comparison
    with it is false) and infinity passes a minimum; both are usage errors (exit 2)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def size_limit(value: float | None) -> float | None:
    """Callback of --store-size-mb: infinity (inf, as one says "no limit") is the
    largest limit, which means none; NaN and -inf are usage errors as for every number;
    None (not given) is the store's own."""
    from fpcli.store.spec import MAX_SIZE_LIMIT_MB

    if value is None:
        return None
    return float(MAX_SIZE_LIMIT_MB) if value == math.inf else float(finite(value) or 0)


def _refuse_jobs_on_dask(ctx: typer.Context, executor: object) -> None:
    """Usage error (exit 2) for --jobs given with --executor dask: the cluster's workers
    and their threads decide how many files run at once, so the option would be
    ignored. Both options' callbacks call this, as click runs them in command-line
    order: the later one sees the other's value (``ctx.params``) and how --jobs was
    set (a --jobs left at its default, the number of cores, is no refusal)."""
    source = getattr(ctx.get_parameter_source("jobs"), "name", None)  # by name: typer's click is its own
    if executor == "dask" and source in ("COMMANDLINE", "ENVIRONMENT"):
        raise typer.BadParameter("--jobs is for local worker processes: with --executor dask the cluster's "
                                 "workers decide (dask worker SCHEDULER --nworkers N --nthreads 1)",
                                 param_hint="--jobs")


def _checked_jobs(ctx: typer.Context, value: int) -> int:
    """Callback of --jobs (see ``_refuse_jobs_on_dask``); commands without --executor have none."""
    _refuse_jobs_on_dask(ctx, ctx.params.get("executor"))
    return value


def _checked_executor(ctx: typer.Context, value: str) -> str:
    """Callback of --executor (see ``_refuse_jobs_on_dask``)."""
    _refuse_jobs_on_dask(ctx, value)
    return value


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (JSON Lines for lists) instead of a table.")]
JobsOption = Annotated[int, typer.Option("--jobs", "-j", min=1, callback=_checked_jobs,
                                         help="Worker processes.")]
TimeoutOption = Annotated[float, typer.Option(
    "--timeout", min=1, callback=finite,
    help="Per-file time limit, seconds (on Dask the file is reported, but its worker thread may stay busy).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, notices or summary.")]
ExecutorOption = Annotated[str, typer.Option(
    "--executor", callback=_checked_executor,
    help="local (worker processes) or dask (a Dask cluster; needs --scheduler and a shared store).")]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", show_default=False, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786.")]
ExcludeOption = Annotated[list[str] | None, typer.Option(
    "--exclude", show_default=False, metavar="GLOB",
    help="Skip files and folders matching this gitignore-style pattern, relative to each path given "
         "(repeatable). Folders may also hold a .fpcliignore file; a .nomedia or .notmusic file skips a folder.")]
PathMapOption = Annotated[list[str] | None, typer.Option(
    "--path-map", show_default=False,
    help="Rewrite paths for Dask workers: CLIENT_PREFIX=WORKER_PREFIX (repeatable).")]
DEFAULT_JOBS = os.cpu_count() or 1


def run_options(*, executor: str, scheduler: str | None, path_map: list[str] | None, jobs: int,
                timeout_s: float = DEFAULT_TIMEOUT_S, batch: bool = False, seconds: float | None = None,
                force: bool = False, retry_failed: bool = False, exclude: list[str] | None = None,
                upgrade: bool = False) -> RunOptions:
    """RunOptions from the shared options, with usage errors (exit 2) for bad values."""
    from fpcli.library import RunOptions  # the analysis stack: imported only by commands that analyse
    from fpcli.params import AnalysisParams

    if executor not in ("local", "dask"):
        raise typer.BadParameter(f"{executor!r}: local or dask", param_hint="--executor")
    if executor == "dask" and not scheduler:
        raise typer.BadParameter("--executor dask needs --scheduler tcp://HOST:PORT", param_hint="--scheduler")
    if scheduler and scheduler.lower().startswith("inproc://"):
        # A cluster inside one process (the library's LocalCluster(processes=False)), which
        # a command never is in: a traceback after 30 s, from inside Dask.
        raise typer.BadParameter(f"{scheduler!r}: inproc:// names a cluster inside one Python process; give the "
                                 "scheduler's tcp://HOST:PORT", param_hint="--scheduler")
    if executor != "dask":
        _refuse_dask_options(scheduler=scheduler, path_map=path_map)
    else:
        _check_path_map(path_map)
    if seconds is not None and not 0 < seconds < math.inf:
        raise typer.BadParameter(f"{seconds}: a positive number of seconds", param_hint="--seconds")
    return RunOptions(params=AnalysisParams(), batch=batch, seconds=seconds, force=force, retry_failed=retry_failed,
                      jobs=jobs, timeout_s=timeout_s, executor=executor, scheduler=scheduler,
                      path_map=tuple(path_map or ()), exclude=tuple(exclude or ()), upgrade=upgrade)


def _refuse_dask_options(*, scheduler: str | None, path_map: list[str] | None) -> None:
    """Usage error (exit 2) for --scheduler or --path-map on a local run, which would
    ignore them (neither has a default, so given is not None)."""
    given = [flag for flag, value in (("--scheduler", scheduler), ("--path-map", path_map))
             if value is not None]
    if given:
        raise typer.BadParameter(f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} for --executor dask: "
                                 "without it the run is local", param_hint=given[0])


def _check_path_map(path_map: list[str] | None) -> None:
    """Usage errors of --path-map before any file is scanned (the Dask executor parses it
    again when it submits)."""
    from fpcli.executors.dask import PathMap

    try:
        PathMap.parse(path_map)
    except ParameterError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--path-map") from None


def parse_seconds(text: str | None, flag: str = "--partial") -> list[float] | None:
    """``"10,30"`` -> [10.0, 30.0]: positive, finite seconds, sorted; usage error otherwise."""
    if not text:
        return None
    try:
        seconds = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected seconds like 10,30,60", param_hint=flag) from None
    if not seconds:   # "," or " , ": no number at all (an empty entry beside others is a stray comma)
        raise typer.BadParameter(f"{text!r}: expected seconds like 10,30,60", param_hint=flag)
    if seconds[0] < 0.5 or not math.isfinite(seconds[-1]):
        raise typer.BadParameter(f"{text!r}: seconds must be finite and at least 0.5", param_hint=flag)
    return seconds


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file (a missing one is no file)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _store_folder() -> str | None:
    """The folder of the command's store (its global options), None for a Redis store
    or outside a command."""
    from fpcli.store.spec import is_redis_url

    spec = COMMAND_STORE.get()
    if spec is None:
        return None
    try:
        location = spec.resolved().location
    except StoreError:
        return None   # the store's own error comes when it is opened
    return None if location is None or is_redis_url(location) else location


def _inside(target: str, folder: str) -> bool:
    """Whether ``target`` is ``folder`` or lies under it, links resolved (a missing
    file's folder still counts)."""
    real_target, real_folder = os.path.realpath(target), os.path.realpath(folder)
    return real_target == real_folder or real_target.startswith(real_folder.rstrip(os.sep) + os.sep)


def file_argument(value: str) -> Path:
    """A path given on the command line, as a ``Path``: only a bare ``-`` means stdin.
    ``Path("./-")`` is ``Path("-")``, so a file named - given as ./- was read as stdin
    (the stream of a pipe, or "the stream was empty"); such a name is kept absolute."""
    if value != "-" and Path(value) == Path("-"):
        return Path(os.path.abspath(value))
    return Path(value)


def path_text(path: str | Path) -> str:
    """A command-line path as the str the core uses (bytes-safe)."""
    return os.fsdecode(path)


def check_outputs(outputs: dict[str, str | None], reads: dict[str, str] | None = None) -> None:
    """Usage errors (exit 2) for output files (option -> file; None: not asked for) that
    could not be written (``fpcli.files.check_writable``, which also refuses to replace
    an audio file), found before the work that fills them (a benchmark, a search that
    computes or reads a stream), for one file given for two outputs, and for an output
    that is one of the files the command reads (``reads``: what -> path). ``-``
    (stdout) is always writable."""
    from fpcli.errors import FpcliError
    from fpcli.files import check_writable

    seen: dict[str, str] = {}
    store = _store_folder()
    for flag, path in outputs.items():
        if path is None or path_text(path) == "-":
            continue
        target = path_text(path)
        if store is not None and _inside(target, store):
            # `--m3u STORE/data/cache.db` replaced the database of every record (nothing left
            # to repair); any file there is the store's to manage.
            raise typer.BadParameter(f"{target} is inside the store's folder {store}: writing it could destroy "
                                     "the store; write it elsewhere", param_hint=flag)
        try:
            check_writable(target)
        except FpcliError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from None
        for what, read in (reads or {}).items():
            if read != "-" and _same_file(target, read):
                raise typer.BadParameter(f"{target} is the {what}: writing it would replace what is read",
                                         param_hint=flag)
        real = os.path.realpath(target)
        if real in seen:
            raise typer.BadParameter(f"{target} is the {seen[real]} file too: give each output its own file",
                                     param_hint=flag)
        seen[real] = flag


def refuse_given(ctx: typer.Context, names: tuple[str, ...], reason: str) -> None:
    """A usage error naming the options among ``names`` that the command line gave."""
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    # By the source's name: typer carries a click of its own, whose enum is not click's.
    given = [flags[name] for name in names
             if getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")]
    if given:
        listed = ", ".join(given[:-1]) + f" and {given[-1]}" if len(given) > 1 else given[0]
        raise typer.BadParameter(f"{listed} {'are' if len(given) > 1 else 'is'} {reason}", param_hint=given[0])
