"""fpcli cache ...: inspect and maintain the store."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fpcli.cli.options import JsonOption, check_outputs, path_text
from fpcli.cli.render import (
    format_value,
    is_terminal,
    json_lines_out,
    lines_out,
    mib,
    note,
    print_json,
    report_bad_entries,
    rows_out,
    stdout,
    warn_line,
    when,
)
from fpcli.cli.root import EXIT_INTERRUPTED, EXIT_SOME_FAILED, cache_app
from fpcli.errors import DamagedStoreError, NotStoredError, ParameterError
from fpcli.executors import DEFAULT_TIMEOUT_S
from fpcli.extensions import AUDIO_EXTENSIONS
from fpcli.fingerprint import seconds_text
from fpcli.results import TIMEOUT_ERROR_TYPE

if TYPE_CHECKING:
    from fpcli.search.dupes import DupeGroup, Recording
    from fpcli.store import FingerprintStore, Record
    from fpcli.store.maintenance import Pruned
    from fpcli.store.records import Failure


def progress_line(what: str) -> Callable[[int], None]:
    """A progress callback for long commands: a line on stderr rewritten in place,
    only when stderr is a terminal (pipes and logs get the final summary only)."""
    if not sys.stderr.isatty():
        return lambda n: None
    return lambda n: print(f"\r{what}: {n:,}", end="", file=sys.stderr, flush=True)


def status_line(text: str) -> None:
    """One line on stderr, rewritten by the next progress line or cleared by
    ``end_progress``; only when stderr is a terminal, as ``progress_line``."""
    if sys.stderr.isatty():
        print(f"\r{text}", end="", file=sys.stderr, flush=True)


def end_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


@cache_app.command("stats", short_help="Counts, size, hit rate, evictions and expiries.")
def cache_stats(ctx: typer.Context, as_json: JsonOption = False,
                recount: Annotated[bool, typer.Option(
                    "--recount", help="Count every entry again (a scan) instead of reading the kept counts.")]
                = False) -> None:
    """Entries, size, hit rate, hits, misses, evictions, expiries, failures.

    Hits and misses count look-ups made by analyze (and validate and search), kept
    across runs. Entries are counted as they are written and removed, so this is
    instant at any size; on Redis, keys the server evicts or expires itself are not
    seen by fpcli: stats then says the counts may be stale, and --recount counts again.

    Examples:

      fpcli cache stats

      fpcli --store /data/fp cache stats --json | jq .hit_rate
    """
    with ctx.obj.open_store(existing=True) as store:
        stats = store.stats(recount=recount)
        shared = _shared_indexes(store)
        report_bad_entries(store)
    if shared is not None:
        stats["shared_index"] = shared
    if as_json:
        print_json(stats)
        return
    rate = "—" if stats["hit_rate"] is None else f"{100 * stats['hit_rate']:.1f} %"
    rows = [
        ("location", stats["location"]),
        ("entries", f"{stats['entries']} ({stats['with_batch']} with batch, {stats['validated']} validated, "
                    f"{stats['previews']} previews)"),
        ("failures", str(stats["failures"])),
        ("size", size_text(stats)),
        # The option's, for what this run writes: an expiry is set when a record is
        # written. "ttl: none" beside records expiring read as the store's, and so did
        # "ttl: 1 s" beside records that never would.
        ("ttl", ("none given" if stats["ttl_s"] is None else f"{stats['ttl_s']:g} s")
         + " for what this run writes (each record keeps the expiry it was written with)"),
        ("hit rate", f"{rate} ({stats['hits']} hits, {stats['misses']} misses)"),
        ("evictions", str(stats["evictions"])),
        ("expiries", str(stats["expiries"])),
        ("by version", ", ".join(f"v{k}: {v}" for k, v in sorted(stats["by_version"].items())) or "—"),
    ]
    if shared is not None:
        rows.append(("shared index", "off (fpcli cache share-index)" if not shared else
                     f"{mib(sum(item['bytes'] for item in shared))} ("
                     + ", ".join(f"{item['kind']} " + ("unreadable" if item["rows"] is None else
                                                         f"{item['rows']:,} rows") for item in shared) + ")"))
    if is_terminal(sys.stdout):
        from rich.table import Table
        from rich.text import Text

        table = Table(show_header=False, box=None)
        for key, value in rows:
            table.add_row(Text(key, style="bold"), Text(value))
        stdout().print(table)
    else:   # one write: | head -1 exits 0, not 141 by chance
        lines_out([f"{key}: {value}\n" for key, value in rows])
    for warning in stats["warnings"]:
        warn_line(warning)
    if not stats["census_exact"]:
        warn_line("fpcli cache stats --recount counts every entry again")


def size_text(stats: dict[str, Any]) -> str:
    """The store's size against its limit, like with like: the part the limit covers
    (``data_bytes``: a diskcache store's records; all of a Redis server's memory), then
    what lies outside it (``meta_bytes``: a diskcache store's counters and change
    journal, never evicted). The whole store's size against the data's limit read as
    a store over its limit right after an eviction to it."""
    limited = stats["data_bytes"]
    limit = stats["size_limit_bytes"]
    text = f"{mib(limited)} of {mib(limit)} limit" if _limited(limit) else f"{mib(limited)} (no limit)"
    if stats.get("meta_bytes") is not None:
        text += f"; {mib(stats['meta_bytes'])} more of counters and change journal (never evicted)"
    else:   # Redis reports its memory as a whole: a database of 14 records showed 87 MiB unexplained
        text += "; the Redis server's memory, every database's"
    return text


def _limited(size_limit_bytes: int) -> bool:
    """Whether a store's size limit limits anything: 0 is none (Redis without maxmemory),
    and so is the largest limit kept (a --store-size-mb beyond any disk)."""
    from fpcli.store.spec import MAX_SIZE_LIMIT_MB

    return 0 < size_limit_bytes < MAX_SIZE_LIMIT_MB * 2**20


def _shared_indexes(store: FingerprintStore) -> list[dict[str, Any]] | None:
    """The search indexes the store keeps for every client (``cache share-index``): kind,
    rows and bytes of each; None for a store whose clients share its index folder.
    Read from the copies' headers alone (``cache stats`` imports no search code)."""
    from fpcli.store.protocol import SharedFiles

    backend = store.backend
    if not isinstance(backend, SharedFiles):
        return None
    found = []
    for name in backend.shared_names():
        header = backend.shared_header(name)
        index = header.get("index") if header is not None else None
        if header is not None and isinstance(index, dict):
            rows = index.get("rows")
            found.append({"kind": str(index.get("kind"))[:20], "rows": rows if type(rows) is int else None,
                          "bytes": sum(entry["bytes"] for entry in header["files"].values())})
    return found


def _listing(record: Record, path: str) -> dict[str, Any]:
    audio, validation = record.audio, record.validation
    return {
        "path": path, "paths": len(record.paths), "duration_s": audio.duration_s, "samplerate": audio.samplerate,
        "channels": audio.channels, "partial": audio.partial, "partial_reason": audio.partial_reason,
        "complete": record.complete,
        "seconds": record.streaming.seconds, "tempo_bpm": record.streaming.values.get("tempo_bpm"),
        "has_batch": record.batch is not None, "validation": validation.status if validation else None,
        "fingerprint_version": record.fingerprint_version, "analysed_at": record.analysed_at,
    }


def _heard(listing: dict[str, Any]) -> str:
    """What of the file its record heard, as ``analyze`` names it: "partial" for a file
    read to its end that is damaged (the listing said "full", analyze "partial")."""
    heard = f"preview {seconds_text(listing['seconds'])} s" if not listing["complete"] else \
        "partial" if listing["partial"] else "full"
    return heard + _older(listing["fingerprint_version"])


def _older(version: int) -> str:
    """", fingerprint v5" for a record of another version than this fpcli's (", ...
    (newer)" for a later one's): after an upgrade, list and show gave such records as
    current, and search left them out."""
    from fpcli.params import FINGERPRINT_VERSION

    if version == FINGERPRINT_VERSION:
        return ""
    return f", fingerprint v{version}" + (" (newer)" if version > FINGERPRINT_VERSION else "")


@cache_app.command("list", short_help="List stored records, one line per path.")
def cache_list(
    ctx: typer.Context,
    contains: Annotated[str | None, typer.Option("--contains", help="Only paths containing this text.")] = None,
    missing_batch: Annotated[bool, typer.Option("--missing-batch", help="Only records without batch values.")]
    = False,
    previews: Annotated[bool, typer.Option("--previews", help=(
        "Only previews (a track's first seconds, from --seconds; not the 'partial' of a damaged file)."))] = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="At most this many paths: the first found in store order (reading stops there, "
        "so it is as fast in a million records as in ten), sorted by path.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per path per line.")] = False,
) -> None:
    """List stored records, one line per path (a record found at several paths, such
    as a copy, is listed at each), sorted by path.

    Examples:

      fpcli cache list --contains Beatles

      fpcli cache list --missing-batch --json
    """
    with ctx.obj.open_store(existing=True) as store:
        # Records stream in batches; with --limit reading stops at the Nth path (the
        # N smallest paths of the whole store would need every record read). Each
        # path's listing is made as its record is read, so the records themselves
        # are not all held until the sort (16 KB each: 379 MB at 20,000 records).
        selected = ((os.fsencode(seen.path), _listing(r, seen.path)) for r in store.records() for seen in r.paths
                    if (contains is None or contains in seen.path) and not (missing_batch and r.batch is not None)
                    and not (previews and r.complete))
        # A limit past sys.maxsize (islice's bound, 9.2e18) is more paths than a store holds: no limit.
        chosen = sorted(itertools.islice(selected, min(limit, sys.maxsize)) if limit else selected,
                        key=lambda item: item[0])
        listed = [listing for _, listing in chosen]
        report_bad_entries(store)
    if as_json:
        json_lines_out(listed)
        return
    rows = [[item["path"], f"{item['duration_s']:.1f} s", f"{item['samplerate']}/{item['channels']}",
             format_value(item["tempo_bpm"], "BPM"), "yes" if item["has_batch"] else "no",
             _heard(item),
             item["validation"] or "—", when(item["analysed_at"])] for item in listed]
    rows_out(f"{len(listed)} path(s)", ["path", "duration", "rate/ch", "tempo", "batch", "heard", "validation",
                                        "analysed"], rows)


@cache_app.command("show", short_help="Show the stored record of a file.")
def cache_show(ctx: typer.Context, path: Annotated[Path, typer.Argument(metavar="PATH",
                   readable=False,
                   help="An audio file, or stream:NAME for a named stream.")],
               as_json: Annotated[bool, typer.Option("--json", help="Print the stored record as JSON.")] = False
               ) -> None:
    """Show the stored record of a file (found by content, so moved files work too).

    Examples:

      fpcli cache show track.flac

      fpcli cache show --json track.flac | jq .streaming.values

    Exit codes: 0 shown, 3 no record of it (or it cannot be read), 1 fatal error, 2
    usage error.
    """
    from fpcli.params import AnalysisParams
    from fpcli.store.schema import record_to_json

    text = path_text(path)
    with ctx.obj.open_store(existing=True) as store:
        try:
            record = store.record_for_path(text, AnalysisParams().key())
            unreadable = None
        except OSError as exc:   # no such file, a folder, unreadable: one input failed, as in search (exit 3)
            from fpcli.cue import missing_track_reason, track_of_entry
            from fpcli.store.records import os_reason

            # A track the sheet does not list, beside its image: "no such file or folder"
            # where analyze and search name the tracks the sheet lists.
            missing = missing_track_reason(text) if not os.path.lexists(text) and track_of_entry(text) is None \
                else None   # a real folder or link so named is what it is
            record, unreadable = None, f"{text}: {missing or os_reason(exc)}"
        # A preview may stand beside a failure of the whole file (a followed file that
        # failed midway): shown with it, or the preview passed for all there is.
        failure = _recorded_failure(store, text) if unreadable is None and (record is None or not record.complete) \
            else None
        report_bad_entries(store)
    if record is None:
        why = unreadable or _not_stored(text, failure)
        if as_json:   # a script asked: the answer as data too (stdout), with the failure if one is recorded
            from fpcli.store.schema import failure_to_json

            print_json({"path": text, "stored": False, "failure": None if failure is None else
                        failure_to_json(failure), "why": why})
        raise NotStoredError(why)
    if as_json:
        print_json(record_to_json(record))
        return
    from fpcli.cli.tracks import render_track

    validation = record.validation
    footer = [f"analysed {when(record.analysed_at)}, last used {when(record.last_used_at)}, "
              f"validation: {validation.status if validation else 'not validated'}; {len(record.paths)} known path(s)"]
    if older := _older(record.fingerprint_version):
        footer.append(f"{older.removeprefix(', ')}, not this fpcli's: search leaves it out"
                      + ("" if "newer" in older else ", and an analyze run of the file makes it anew"))
    if failure is not None:
        footer.append(f"the whole file failed: {failure.message} ({failure.error_type}; `fpcli analyze "
                      "--retry-failed` tries it again)")
    render_track(record.to_result(text), footer=footer)   # one write in a pipe: | head -1 exits 0


def _recorded_failure(store: FingerprintStore, text: str) -> Failure | None:
    """The failure recorded for the file ``text`` names (None: none, or a stream name)."""
    from fpcli.store.records import STREAM_PREFIX, resolve

    if text.startswith(STREAM_PREFIX) and not os.path.lexists(text):
        return None
    return store.failure_for(resolve(text))


def _not_stored(text: str, failure: Failure | None) -> str:
    """Why ``text`` has no record, and what to do: a failure analyze skips (retried with
    --retry-failed), or a file to analyse. A file that is not audio by its name (a
    README) is not sent to analyze, whose folder runs leave it out."""
    import shlex

    from fpcli.cue import album_image_of
    from fpcli.store.records import STREAM_PREFIX, entry_file

    if text.startswith(STREAM_PREFIX) and not os.path.lexists(text):
        return f"{text}: not in the store (run: fpcli analyze - --name NAME)"
    extension = os.path.splitext(entry_file(text)[0])[1].lower()
    if extension not in AUDIO_EXTENSIONS:
        kind = f"{extension} is not an audio file extension" if extension else "its name has no audio extension"
        return f"{text}: not in the store ({kind}: fpcli analyses audio files only)"
    analyze = f"fpcli analyze {shlex.quote(text)}"
    image = album_image_of(text) if failure is None else None
    if image is not None:
        # "run: fpcli analyze album.flac" stored its tracks, and the image stayed "not in the store".
        return (f"{text}: the album image of a CUE sheet, not a track: its tracks are stored as "
                f"{image}#01, ... (fpcli cache show {shlex.quote(image + '#01')})")
    if failure is None:
        return f"{text}: not in the store (run: {analyze})"
    failed = f"its analysis failed {when(failure.failed_at)}: {failure.message}"
    if failure.access_failure:
        return f"{text}: not in the store ({failed}; analyze tries it again on every run: {analyze})"
    if failure.error_type == TIMEOUT_ERROR_TYPE:
        if failure.limit_s is None:  # imported from an export made before the limit was kept
            return f"{text}: not in the store ({failed}; analyze tries it again: {analyze})"
        return (f"{text}: not in the store: {failed}; analyze skips it under a --timeout of {failure.limit_s:g} s "
                f"or less and tries it under a longer one (the default is {DEFAULT_TIMEOUT_S:g} s: {analyze})")
    if _unchanged(failure):
        return (f"{text}: not in the store: {failed}; analyze skips it until the file changes "
                f"(to try again: {analyze} --retry-failed)")
    return f"{text}: not in the store ({failed}; the file has changed since: run {analyze})"


def _unchanged(failure: Failure) -> bool:
    """Whether the failed file is as it was when it failed (analyze skips it then)."""
    from fpcli.store.records import entry_file

    try:
        return failure.unchanged(os.stat(entry_file(failure.path)[0]))
    except OSError:
        return False


@cache_app.command("clear")
def cache_clear(ctx: typer.Context,
                yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
                ) -> None:
    """Remove every record, failure and counter from the store.

    Example:

      fpcli cache clear --yes
    """
    with ctx.obj.open_store(existing=True) as store:
        # Declined: nothing done, which is no fatal error ("Aborted!", exit 1, said so).
        if not yes and not _confirmed(f"Remove everything in the store at {store.location}?"):
            note("", "nothing removed")
            return
        counts = store.stats()   # what the user knows the store by: records and failures
        records, failures = counts["entries"], counts["failures"]
        if not counts["census_exact"]:
            # Counts Redis's evictions left stale ("removed 337 records" of 25 there): counted.
            records, failures = store.backend.count("rec:"), store.backend.count("fail:")
        removed = store.clear()
    note("", f"removed {_count(records, 'record')} and {_count(failures, 'failure')} "
             f"({removed} store entries with path and duplicate indexes)")


def _count(n: int, noun: str, plural: str | None = None) -> str:
    """"1 record", "2 records", "0 lines" ("1 entry", "2 entries" with ``plural``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _confirmed(question: str) -> bool:
    """The user's yes to ``question``, asked on stderr. No answer at all (stdin at its
    end: a script's, or Ctrl-D at the prompt) is a usage error naming --yes (click's
    prompt said "Aborted!", exit 1, and took Ctrl-D for Ctrl-C); Ctrl-C is an
    interrupt (exit 130)."""
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if not (sys.stdin is not None and sys.stdin.isatty()):
        sys.stderr.write("\n")   # an answer from a pipe is not echoed: the prompt's line ends here
    if not answer:
        raise ParameterError("cache clear asks first, and stdin ended before an answer: nothing removed "
                             "(--yes clears without asking)")
    return answer.strip().lower() in ("y", "yes")


@cache_app.command("prune", short_help="Drop the paths of files gone or changed.")
def cache_prune(ctx: typer.Context, as_json: JsonOption = False,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be dropped.")]
                = False) -> None:
    """Drop the paths of records and failures whose file is gone or has changed; a
    record goes with its last path (a copy elsewhere keeps it). Records of a former
    fingerprint version whose files were analysed anew go too. Also forgets the
    identity entries (what a path or a file's content was seen to be) of records no
    longer stored.

    Examples:

      fpcli cache prune --dry-run

      fpcli cache prune --json
    """
    from fpcli.store.maintenance import PruneInterrupted

    with ctx.obj.open_store(existing=True) as store:
        from fpcli.store import forget_orphans, prune

        try:
            removed = prune(store, dry_run=dry_run, progress=progress_line("records checked"))
        except PruneInterrupted as exc:
            # What was dropped is listed (a script reading --json gets it too), then why it stopped.
            end_progress()
            _pruned_out(exc.removed, dry_run, as_json)
            note("[yellow]interrupted:[/yellow]", exc.how_far)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        end_progress()
        orphans = forget_orphans(store, dry_run=dry_run)
        report_bad_entries(store)
    if orphans:
        note("", f"{'would forget' if dry_run else 'forgot'} {orphans} identity entries of records no longer "
                 "stored")
    _pruned_out(removed, dry_run, as_json)
    if not as_json:
        note("", f"{'would prune' if dry_run else 'pruned'} {_count(len(removed), 'entry', 'entries')}")


def _pruned_out(removed: list[Pruned], dry_run: bool, as_json: bool) -> None:
    """The paths a prune dropped (or would drop), as a table or JSON Lines."""
    if as_json:
        json_lines_out({"path": item.path, "reason": item.reason, "dry_run": dry_run} for item in removed)
        return
    rows_out(f"{len(removed)} path(s) {'to drop' if dry_run else 'dropped'}", ["reason", "path"],
             [[item.reason, item.path] for item in removed])


@cache_app.command("failures", short_help="List files that could not be analysed.")
def cache_failures(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List files that could not be analysed (skipped until they change).

    Examples:

      fpcli cache failures

      fpcli analyze ~/Music --retry-failed
    """
    from fpcli.store.schema import failure_to_json

    with ctx.obj.open_store(existing=True) as store:
        failures = sorted(store.failures(), key=lambda f: os.fsencode(f.path))
        report_bad_entries(store)
    if as_json:
        json_lines_out(failure_to_json(failure) for failure in failures)
        return
    rows_out(f"{len(failures)} failure(s)", ["path", "error", "message", "when"],
             [[f.path, f.error_type, f.message, when(f.failed_at)] for f in failures])


@cache_app.command("dupes", short_help="List files that hold the same recording.")
def cache_dupes(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List groups of files that hold the same recording: byte-identical copies, and
    other encodings or sample rates of it (matched by the duplicate key of the
    decoded audio; fingerprint v2 records only). Files gone since they were analysed
    are left out (`fpcli cache prune` forgets them).

    Examples:

      fpcli cache dupes

      fpcli cache dupes --json | jq '.paths'
    """
    with ctx.obj.open_store(existing=True) as store:
        from fpcli.params import FINGERPRINT_VERSION
        from fpcli.search.dupes import Recording

        # Only current records can be grouped: older ones are not held in memory, and
        # of the others only what the duplicate rules read (a Recording, not the record).
        groups, gone = _groups_on_disk(store, [Recording.of(r) for r in store.records()
                                               if r.fingerprint_version == FINGERPRINT_VERSION])
        report_bad_entries(store)
    if gone:
        # Printed nothing at all where every file was gone (a library not mounted): an
        # empty answer read as "no duplicates".
        warn_line(f"the files of {_count(gone, 'stored track')} that would be duplicates are gone (moved, deleted, "
                  "or a library not mounted?): left out; `fpcli cache prune` forgets them")
    if as_json:
        json_lines_out({"paths": list(group.paths), "digests": list(group.digests)} for group in groups)
        return
    rows_out(f"{len(groups)} group(s) of duplicates", ["group", "path"],
             [[str(n), path] for n, group in enumerate(groups, start=1) for path in group.paths])


def _groups_on_disk(store: FingerprintStore, records: list[Recording]) -> tuple[list[DupeGroup], int]:
    """The duplicate groups of ``records`` as their files on disk have them (gone paths
    left out, a group left with one path none), and how many records lost every file.
    Only the records in a group are looked for on disk (a stat per path of theirs, not
    per record of the store); the groups are then formed again, as a record with no
    file left no longer decides which group a later one joins, until every record in
    a group has been looked for."""
    from fpcli.search.dupes import duplicate_groups

    looked: set[str] = set()  # digests of the records whose paths were checked
    gone = 0
    while True:
        groups = duplicate_groups(records)
        unchecked = {digest for group in groups for digest in group.digests} - looked
        if not unchecked:
            return groups, gone
        on_disk = [_on_disk(store, record) if record.digest in unchecked else record for record in records]
        records = [record for record in on_disk if record.paths]
        gone += len(on_disk) - len(records)
        looked |= unchecked


def _on_disk(store: FingerprintStore, record: Recording) -> Recording:
    """``record`` with only the paths whose file is still the one analysed (a touched
    one's time stored, as a prune stores it)."""
    import dataclasses

    from fpcli.search.query import file_left, retimed

    return dataclasses.replace(record, paths=tuple(
        seen for seen in record.paths
        if file_left(seen.path, seen.mtime_ns, record.size, record.digest, record.content_key,
                     retimed(store, record.record_key, record.size, record.digest, record.content_key, seen.path))))


@cache_app.command("export", short_help="Write every record and failure as JSON Lines.")
def cache_export(ctx: typer.Context,
                 file: Annotated[str, typer.Argument(metavar="FILE",
                                                     help="JSON Lines file to write, or - for stdout.")]) -> None:
    """Write every record and failure as JSON Lines (atomically; - writes to stdout).

    Examples:

      fpcli cache export backup.jsonl

      fpcli cache export - | gzip > backup.jsonl.gz
    """
    check_outputs({"FILE": file})  # e.g. not over an audio file, and before reading every record
    with ctx.obj.open_store(existing=True) as store:
        from fpcli.store import export_store

        counts = export_store(store, file, progress_line("exported"))
        end_progress()
        report_bad_entries(store)
    note("", f"exported {_count(counts['records'], 'record')} and {_count(counts['failures'], 'failure')}"
             + ("" if file == "-" else f" to {file}"))


@cache_app.command("import", short_help="Read records and failures from an export.")
def cache_import(ctx: typer.Context,
                 file: Annotated[str, typer.Argument(metavar="FILE", help="JSON Lines file to read, or - for stdin.")],
                 no_index: Annotated[bool, typer.Option(
                     "--no-index", help="Do not save the search index at the end, and so do not hold its rows "
                                        "in memory meanwhile (an import that saves it peaked at 3.2 GB at "
                                        "1,000,000 records, 0.43 GB at 100,000, measured).")] = False) -> None:
    """Read records and failures from an export; invalid lines are rejected and listed.

    The file is parsed as JSON only (nothing is ever unpickled) and every field of
    every record is checked, as a store read checks it, before it is stored. Exit
    code 3 if any line was rejected. Into a new store, or one whose search index is
    current, the import also saves the search index of the default parameters, so
    that the first search after it does not read every record again (--no-index
    leaves that to the first search).

    Examples:

      fpcli cache import backup.jsonl

      fpcli cache import catalogue.jsonl --no-index

      gunzip -c backup.jsonl.gz | fpcli cache import -
    """
    from fpcli.store.maintenance import ImportInterrupted, open_export

    with open_export(file) as source, ctx.obj.open_store() as store:  # the input first: a typo makes no store
        from fpcli.params import AnalysisParams
        from fpcli.search.keeper import ImportedRows
        from fpcli.store import import_store, is_redis_url

        indexes = None if no_index else ImportedRows(store, AnalysisParams().key())
        try:
            report = import_store(store, source, progress_line("lines read"),
                                  on_records=indexes.add if indexes is not None else lambda records: None)
        except ImportInterrupted as exc:
            end_progress()
            note("[yellow]interrupted:[/yellow]", exc.how_far)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        end_progress()
        redis = is_redis_url(store.location)
        if indexes is not None and report.records:
            # About 75 s at a million records: say what the wait is for.
            status_line(f"saving the search index of {report.records:,} imported records ...")
            try:
                kept = indexes.finish()
            except KeyboardInterrupt:
                # The file was read to its end: "interrupted" alone read as an import lost.
                end_progress()
                _say_rejected(report.rejected)
                note("[yellow]interrupted:[/yellow]", f"the whole file was read: {_count(report.records, 'record')} "
                     f"and {_count(report.failures, 'failure')} imported, {_count(len(report.rejected), 'line')} "
                     "rejected; only the search index was not saved: the first search builds it")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            end_progress()
        else:
            kept = {}
    _say_rejected(report.rejected)
    # The new ones said: 300 copies of an export of 11 records said "imported 3300 records".
    merged = f" ({report.new} new, the others merged into records stored)" if report.new < report.records else ""
    # A failure of a file changed since, whose record is stored, would list the file as
    # failed beside its record.
    since = f" ({report.failures_recorded_since} more left out: their files have changed since, and have " \
        "records)" if report.failures_recorded_since else ""
    line = (f"imported {_count(report.records, 'record')}{merged} and {_count(report.failures, 'failure')}{since}, "
            f"rejected {_count(len(report.rejected), 'line')}")
    if kept.get("saved"):
        line += "; search index saved (" + ", ".join(f"{kind} {rows}" for kind, rows in kept["saved"].items()) \
            + f" rows, {kept['seconds']:.1f} s)"
    if kept.get("unsaved"):
        line += (f"; the {' and '.join(kept['unsaved'])} search index could not be saved in the store's index "
                 "folder (full, or not writable?): the first search builds it")
    if kept.get("shared_bytes"):
        line += f"; shared index updated ({mib(kept['shared_bytes'])})"
    if report.evicted and redis:
        # Redis counts what it evicts server-wide: keys of any kind, of any database.
        line += f"; Redis evicted {report.evicted} keys meanwhile (its maxmemory; of any kind and database)"
    elif report.evicted:
        line += f"; {report.evicted} records were evicted by the store's size limit meanwhile (--store-size-mb)"
    note("", line)
    if report.rejected:
        raise typer.Exit(EXIT_SOME_FAILED)


@cache_app.command("share-index", short_help="Keep a copy of the search index in Redis.")
def cache_share_index(ctx: typer.Context, as_json: JsonOption = False,
                      stop: Annotated[bool, typer.Option("--stop", help="Remove the shared copy.")] = False
                      ) -> None:
    """Keep a copy of the search index in a Redis store, for every client.

    Each client of a Redis store keeps its search index in its own cache folder; one
    without (a new machine, another user) reads every record to build it, minutes
    at a million records. With a shared copy it copies the index instead and
    replays the changes since. The copy costs about 1.4 KB of Redis memory per
    record, in keys that are never evicted: under a maxmemory limit it comes out of
    the room left for fingerprints, so raise the limit by as much. Clients share
    their index again when it is rebuilt or 5,000 changes ahead, and after a
    `cache import`. A diskcache store needs none of this: its index is in its own
    folder.

    Examples:

      fpcli --store redis://localhost:6379/0 cache share-index

      fpcli --store redis://localhost:6379/0 cache share-index --stop
    """
    from fpcli.cli.tracks import Reporter
    from fpcli.params import AnalysisParams
    from fpcli.search.saved import share_indexes, unshare_indexes
    from fpcli.search.shared import file_sets

    with ctx.obj.open_store(existing=True) as store, \
            Reporter(as_json=as_json, quiet=False, show_tracks=False) as reporter:
        if file_sets(store) is None:
            reason = ("this store keeps its search index in its own folder, where every user of "
                      "the store finds it")
            if as_json:
                print_json({"shared": False, "indexes": [], "reason": reason})
            else:
                note("", f"nothing to share: {reason}")
            return
        key = AnalysisParams().key()
        results = unshare_indexes(store, key) if stop else share_indexes(store, key, reporter.index_progress())
    if as_json:
        print_json({"shared": not stop, "indexes": results})
        return
    total = sum(item["bytes"] for item in results)
    if stop:   # a second --stop said "stopped sharing the search index: 0.0 MiB freed"
        note("", f"stopped sharing the search index: {mib(total)} freed" if total else
             "no search index is shared: nothing to stop")
        return
    rows_out("search index shared", ["kind", "rows", "size"],
             [[item["kind"], f"{item['rows']:,}", mib(item["bytes"])] for item in results])
    note("", f"shared {mib(total)}; clients without an index now copy it instead of reading every record")


@cache_app.command("verify", short_help="Check the store's integrity; --repair mends it.")
def cache_verify(ctx: typer.Context, as_json: JsonOption = False,
                 repair_: Annotated[bool, typer.Option(
                     "--repair", help="Remove bad entries (saved first to a quarantine-*.jsonl file in the store "
                                      "folder; for Redis, in the current folder).")]
                 = False) -> None:
    """Check the store's integrity (SQLite, counters) and every entry; exit 3 on problems.

    With --repair, every bad entry is written to a quarantine file and removed, a
    damaged database is rebuilt from what can be read, and the exit code is 0 when
    the store is sound afterwards.

    Examples:

      fpcli cache verify

      fpcli cache verify --repair
    """
    done: dict[str, int] | None = None
    try:
        opened = ctx.obj.open_store(existing=True)
    except DamagedStoreError as exc:
        if not repair_:
            if as_json:
                # The keys of every verify report: a script reading "notes" met a KeyError here.
                print_json({"entries": 0, "problems": [str(exc)], "repaired": None,
                            "notes": ["the database cannot be opened: no entry was checked"]})
            else:
                rows_out("1 problem(s)", ["problem"], [[str(exc)]])
                note("", "checked 0 store entries: 1 problem(s) (the database cannot be opened)")
            raise typer.Exit(EXIT_SOME_FAILED) from None
        from fpcli.store.diskcache_sqlite import salvage  # diskcache only for a damaged store

        done = salvage(exc.location)
        note("", f"repaired: rebuilt the damaged database: {repair_summary(done)} (the damaged part is kept as "
                 "*.damaged-*)")
        _warn_if_nothing_read_back(done)
        opened = ctx.obj.open_store(existing=True)
    from fpcli.store import repair
    from fpcli.store.maintenance import verify_counted

    notes: list[str] = []
    with opened as store:
        problems, entries = verify_counted(store, progress_line("entries checked"), notes)
        end_progress()
        if repair_ and problems:
            quarantine = _quarantine_path(store)
            done = repair(store, quarantine)
            # The file is written only for what it keeps (it was named when nothing was).
            saved = f" (bad entries saved to {quarantine})" if done.get("quarantined") or done.get("rebuilt") else ""
            aside = " (the damaged database is kept as *.damaged-* in the store's folder)" if done.get(
                "moved_aside") else ""
            note("", f"repaired: {repair_summary(done)}{saved}{aside}")
            _warn_if_nothing_read_back(done)
            notes = []
            problems, entries = verify_counted(store, notes=notes)
    if as_json:
        print_json({"entries": entries, "problems": [str(p) for p in problems], "repaired": done, "notes": notes})
    else:
        if problems:   # none: an empty table titled "0 problem(s)" said nothing the line below does not
            rows_out(f"{len(problems)} problem(s)", ["problem"], [[str(p)] for p in problems])
        note("", f"checked {_count(entries, 'store entry', 'store entries')} (records, their path and "
                 f"candidate entries, failures): {len(problems)} problem(s)")
        for text in notes:
            note("[yellow]warning:[/yellow]", text)
    if problems:
        raise typer.Exit(EXIT_SOME_FAILED)


# What each count of a repair means (``salvage`` and ``repair`` return them).
REPAIR_WORDS = {"moved_aside": "damaged database parts moved aside", "salvaged": "rows read back",
                "rebuilt": "entries kept from a rebuilt database", "quarantined": "bad entries removed",
                "unsafe": "unsafe entries (pickled, or keys not UTF-8) removed",
                "counters": "damaged counters or journal entries reset",
                "census": "census counted again", "orphans": "identity entries of removed records forgotten",
                "data_lost": "a lost records' part taken note of"}


def _say_rejected(reasons: list[str]) -> None:
    for reason in reasons:
        note("[red]rejected[/red]", reason)


def repair_summary(done: dict[str, int]) -> str:
    """"2 bad entries removed, 1 damaged counters reset" ("nothing to mend" when all are
    0); the rows read back from a part moved aside are said even when none were."""
    parts = [f"{n} {REPAIR_WORDS[name]}" for name, n in done.items()
             if name in REPAIR_WORDS and (n or (name in READ_BACK and done.get("moved_aside")))]
    return ", ".join(parts) or "nothing to mend"


READ_BACK = ("salvaged", "rebuilt")   # the counts of what a damaged part moved aside gave back


def _warn_if_nothing_read_back(done: dict[str, int]) -> None:
    """A damaged part moved aside with not one row read back is a store emptied: the
    repair said only "1 damaged database parts moved aside", and verify then called the
    empty store sound, exit 0, with every record lost."""
    # Only the records' part: a meta part moved aside with nothing read back lost its
    # counters and journal, which a recount and a new index make again, and the repair
    # said "its records are lost" of a store that had kept every one.
    if done.get("records_moved_aside") and not done.get("records_read_back"):
        warn_line("no entry of the damaged database could be read back: its records are lost (`fpcli analyze` "
                  "the library again; the damaged part is kept as *.damaged-* in the store's folder)")


def _quarantine_path(store: FingerprintStore) -> str:
    folder = store.location if os.path.isdir(store.location) else os.getcwd()
    return os.path.join(folder, f"quarantine-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
