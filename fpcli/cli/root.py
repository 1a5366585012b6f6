"""The typer applications, the root options and the settings every command gets."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Annotated

import typer

from fpcli import __version__
from fpcli.cli.options import COMMAND_STORE, finite, size_limit
from fpcli.errors import ParameterError, StoreError
from fpcli.store.spec import DEFAULT_SIZE_LIMIT_MB, StoreSpec, is_redis_url

if TYPE_CHECKING:
    from fpcli.store import FingerprintStore

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_BELOW_THRESHOLD, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

app = typer.Typer(
    name="fpcli",
    help="Acoustic fingerprints for music libraries: analyze, cache, validate, search, bench.\n\n"
         "Exit codes: 0 ok, 1 fatal error, 2 usage error, 3 some files failed, 4 below a --fail-under or\n"
         "--check threshold, 130 interrupted (Ctrl-C), 143 and 129 stopped by SIGTERM and SIGHUP (as\n"
         "Ctrl-C), 141 the reader of the output left (a closed pipe: `fpcli cache list | head -1`).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
cache_app = typer.Typer(
    help="Inspect and maintain the fingerprint store.\n\n"
         "Examples:\n\n  fpcli cache stats\n\n  fpcli cache list --json | jq .path\n\n"
         "  fpcli cache export backup.jsonl",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app, name="cache")


STORE_FOLDERS = {"data", "meta", "index"}   # what a diskcache store makes in its folder


@dataclasses.dataclass(frozen=True)
class Settings:
    """Global options, handed to every command through the typer context."""

    spec: StoreSpec
    # Who named the store's location: "--store", "FPCLI_STORE", or None for the default.
    named_by: str | None = None

    def open_store(self, *, existing: bool = False) -> FingerprintStore:
        """The store. A folder of other files is refused, wherever its name came from:
        a store made there lies among them (`--store ~/Music`, or FPCLI_STORE=~/Music,
        wrote its database folders into the library). With ``existing``, for commands
        that only read or tidy a store, a folder named by --store must hold one: a
        mistyped name made an empty store there and reported it empty (0 records,
        nothing to verify) as if it were the one meant. (The default folder, or
        FPCLI_STORE's, may be new: set once, for every command, they are where a first
        run makes the store.)"""
        from fpcli.store import FingerprintStore  # the store only for commands that open it (start-up time)

        if existing:
            self._require_existing()
        self._refuse_a_folder_of_other_files()
        try:
            return FingerprintStore.from_spec(self.spec, existing=existing and self.named_by == "--store")
        except ParameterError as exc:   # a Redis database that holds none: said as for a folder
            raise typer.BadParameter(exc.reason, param_hint="--store") from None

    def _folder(self) -> str | None:
        """The store's folder (None for Redis)."""
        location = self.spec.resolved().location
        return None if location is None or is_redis_url(location) else location

    def _refuse_a_folder_of_other_files(self) -> None:
        """A usage error for a store folder that holds files and no store. A new or
        empty folder, or a store, is fine."""
        from fpcli.store.diskcache_backend import DiskcacheBackend

        location = self._folder()
        if location is not None and os.path.lexists(location) and not os.path.isdir(location):
            # A file (or a link to nothing) named as the store: a usage error, as a
            # folder of other files is (it was exit 1, "cannot open the store").
            what = "a link to nothing" if not os.path.exists(location) else "a file"
            raise typer.BadParameter(f"{location}: {what}, not a folder (a store is a folder: give a new or "
                                     "empty one)", param_hint=self.named_by or "the default store")
        if location is None or not os.path.isdir(location):
            return
        try:
            entries = os.listdir(location)
        except OSError:
            return   # the store says what is wrong with it
        # The store's own folders alone (a first run stopped before its databases) are no other files.
        if set(entries) - STORE_FOLDERS and not DiskcacheBackend.holds_store(location):
            raise typer.BadParameter(f"{location}: a folder of other files, not an fpcli store; a store made there "
                                     "would lie among them (give a new or empty folder)",
                                     param_hint=self.named_by or "the default store")

    def _require_existing(self) -> None:
        if self.named_by != "--store":
            return
        from fpcli.store.diskcache_backend import DiskcacheBackend

        location = self._folder()
        if location is None:
            return
        if not os.path.lexists(location):
            raise typer.BadParameter(f"{location}: no store there (fpcli analyze or cache import makes one)",
                                     param_hint="--store")
        if os.path.isdir(location) and not DiskcacheBackend.holds_store(location):
            raise typer.BadParameter(f"{location}: a folder that holds no fpcli store (fpcli analyze or cache "
                                     "import makes one)", param_hint="--store")
        # a file or a link to nothing: refused as such (``_refuse_a_folder_of_other_files``)


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not an environment
    variable, which may be set once for every store, nor its default). Typer has its
    own copy of click: its enum is compared by name."""
    return getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"


def _store_named_by(ctx: typer.Context, store: str | None) -> str | None:
    """"--store", "FPCLI_STORE" or None (the default location): how messages name it."""
    if store is None:
        return None
    return "--store" if _on_command_line(ctx, "store") else "FPCLI_STORE"


def _version(value: bool) -> None:
    if value:
        print(f"fpcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(
        "--store", envvar="FPCLI_STORE", show_default=False,
        help="Store: a directory (default: the user cache directory, e.g. ~/.cache/fpcli/store) or a "
             "shared Redis URL redis://user:password@host:port/db (user and password optional; a password "
             "alone: redis://:password@host:port/db).")] = None,
    store_size_mb: Annotated[float | None, typer.Option(
        "--store-size-mb", envvar="FPCLI_STORE_SIZE_MB", min=1, callback=size_limit, show_default=False,
        help=f"Store size limit in MiB, kept by the store for later runs; least-recently-used records are "
             f"evicted beyond it (default: the store's own, {DEFAULT_SIZE_LIMIT_MB} for a new store; inf, or "
             "4 EiB = 4398046511104 or more: no limit).")] = None,
    store_ttl: Annotated[float | None, typer.Option(
        "--store-ttl", envvar="FPCLI_STORE_TTL", min=1, show_default=False, callback=finite,
        help="Expire records this many seconds after they were written (default: never).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """fpcli: acoustic fingerprints for music libraries."""
    if store is not None and not store.strip():
        raise typer.BadParameter("an empty value: give a directory or a redis:// URL", param_hint="--store")
    if store == "-":
        # "-" is stdin or stdout everywhere else in fpcli: a store folder named "-" was made in silence.
        raise typer.BadParameter("'-' is no store (a store is a directory or a redis:// URL; a folder named '-' "
                                 "is ./-)", param_hint="--store")
    if store is not None:
        try:
            StoreSpec(store).resolved()  # a malformed Redis URL or a non-Redis URL: a bad value (exit 2)
        except StoreError as exc:
            raise typer.BadParameter(str(exc), param_hint="--store") from None
    if is_redis_url(store) and _on_command_line(ctx, "store_size_mb"):
        # An option the run would ignore (the exit-code table): it was accepted, and stats
        # said "no limit" beside it.
        raise typer.BadParameter("a size limit for a folder store: a Redis store's limit is its maxmemory "
                                 "(redis-cli CONFIG SET maxmemory ...)", param_hint="--store-size-mb")
    ctx.obj = Settings(StoreSpec(store, store_size_mb, store_ttl), named_by=_store_named_by(ctx, store))
    COMMAND_STORE.set(ctx.obj.spec)
