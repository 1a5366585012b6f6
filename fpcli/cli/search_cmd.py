"""fpcli search."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fpcli.cli.options import DEFAULT_JOBS, check_outputs, file_argument, finite, path_text, refuse_given
from fpcli.cli.render import format_value, note, plain_notes_off, print_json, report_bad_entries, rows_out, warn_line
from fpcli.cli.root import app
from fpcli.errors import ParameterError
from fpcli.executors import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from fpcli.audio import AudioReader
    from fpcli.cli.tracks import Reporter
    from fpcli.results import TrackResult
    from fpcli.search import SearchResult
    from fpcli.search.query import LeftOut
    from fpcli.store import Record

STRATEGIES = ("fast", "accurate", "batch", "auto")  # fpcli.search.STRATEGIES (checked by a test)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[Path, typer.Argument(parser=file_argument, metavar="QUERY",
        readable=False,
        help="An audio file (analysed now if the store lacks it), or - for a stream on stdin.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many similar tracks.")] = 10,
    strategy: Annotated[str, typer.Option("--strategy", "-s",
                                          help="fast, accurate, batch or auto (chooses and says why).")] = "auto",
    library: Annotated[Path | None, typer.Option("--library", "-l", show_default=False, readable=False,
                                                 parser=file_argument, metavar="PATH",
                                                 help="Only tracks under this folder (which must exist).")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", show_default=False,
        help="Group weights, e.g. temporal=2,stereo=0,timbre=4 (groups: frequency, dynamics, temporal, spectral, "
             "harmonic, variation, stereo, default 1 each; timbre, default 2).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show the dims that contributed most.")] = False,
    m3u: Annotated[str | None, typer.Option("--m3u", show_default=False, metavar="FILE",
                                             help="Write a playlist of the query and its hits, streams and CUE-sheet "
                                                  "tracks left out (- for stdout: then stdout holds the playlist "
                                                  "alone, the table is not printed and --json cannot be).")]
    = None,
    compute_missing: Annotated[bool, typer.Option(
        "--compute-missing", help="batch: compute missing batch fingerprints first.")] = False,
    include_duplicates: Annotated[bool, typer.Option(
        "--include-duplicates",
        help="Keep other files of the query's recording, and second files of a hit's, among the hits "
             "(never the query's own file).")] = False,
    mutual_proximity: Annotated[bool, typer.Option(
        "--mp/--no-mp",
        help="Rank the nearest (30, or k if more, at most 1000) by mutual proximity: how likely each is to be "
             "the other's near neighbour (tracks near everything crowd fewer lists). --no-mp: by distance alone.")]
    = True,
    seconds: Annotated[float | None, typer.Option(
        "--seconds", min=0.5, show_default=False, callback=finite,
        help="Search with the query's first N seconds only (a preview; required for - unless the stream ends), "
             "even when the store holds the whole file: those seconds are analysed now unless a stored preview "
             "heard just N s. A preview is searched by its streaming fingerprint: strategy fast or auto.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress, summary or notices on stderr (warnings and errors still).")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1,
        help="Worker processes computing the candidates' missing batch fingerprints (accurate, batch "
             "--compute-missing).")] = DEFAULT_JOBS,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, callback=finite,
        help="Time limit, seconds, for each candidate's missing batch fingerprint (accurate, batch "
             "--compute-missing); the query's own analysis has none.")] = DEFAULT_TIMEOUT_S,
) -> None:
    """Find the tracks in the store that sound most like QUERY.

    Strategies: fast (cached streaming fingerprints), accurate (fast candidates
    re-ranked with batch fingerprints, computing the missing ones for the candidates
    on --jobs worker processes, with a progress bar on stderr), batch (batch
    fingerprints for all), auto (from the query's confidence and validation).
    Distances combine the named dims and the timbre (JS divergence of the MFCC
    Gaussians); the nearest are ranked by mutual proximity ("MP": 0 when each is
    the other's nearest, 1 when neither is near the other) unless --no-mp. Other
    files of one recording (another codec or sample rate) are left out unless
    --include-duplicates.

    Examples:

      fpcli search track.flac -k 10

      fpcli search track.flac --strategy accurate --explain

      fpcli search track.flac -l ~/Music/Jazz --m3u similar.m3u

      ffmpeg -i URL -f flac - | fpcli search - --seconds 20

    Exit codes: 0 ok, 3 the query could not be analysed or read, 1 fatal error (a
    store that cannot be opened), 2 usage error, 130 interrupted.
    """
    from fpcli.search import Compute, parse_weights, write_m3u
    from fpcli.search import search as run_search
    from fpcli.search.query import WeightsError, other_versions_said

    if strategy not in STRATEGIES:
        raise typer.BadParameter(f"{strategy!r}: one of {', '.join(STRATEGIES)}", param_hint="--strategy")
    if compute_missing and strategy != "batch":   # an option the run would ignore (the exit-code table)
        raise typer.BadParameter("only --strategy batch computes missing batch fingerprints (accurate "
                                 "computes its candidates' own)", param_hint="--compute-missing")
    _refuse_repeated_groups(weights)
    try:
        group_weights = parse_weights(weights)
    except ParameterError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--weights") from None
    if m3u is not None and path_text(m3u) == "-" and as_json:
        raise typer.BadParameter("--m3u - writes the playlist to stdout, --json the result: choose one",
                                 param_hint="--m3u / --json")
    # Before the search, which may compute for minutes or read a stream.
    # A script's 2>/dev/null hid the errors with the summary it meant to drop.
    ctx.with_resource(plain_notes_off(quiet))
    check_outputs({"--m3u": m3u}, reads={"query": path_text(query)})
    if library is not None:
        _check_folder(library)
    text = path_text(query)
    _refuse_batch_ranking(strategy, stream=text == "-", preview=seconds is not None)
    if text == "-" or seconds is not None or strategy == "fast" or (strategy == "batch" and not compute_missing):
        # They set the computing of missing batch fingerprints, which such a search never
        # does: accepted without a word, they read as honoured (analyze refuses them on a stream).
        what = "a stream" if text == "-" else "a preview" if seconds is not None else \
            "--strategy fast" if strategy == "fast" else "--strategy batch without --compute-missing"
        refuse_given(ctx, ("jobs", "timeout"), f"for computing missing batch fingerprints (accurate, batch "
                                               f"--compute-missing), which {what} never does")
    from fpcli.cli.tracks import Reporter  # rich: only when a command runs (start-up time)
    from fpcli.errors import QueryError

    try:
        streamed = _stream_query(seconds) if text == "-" else None
        with ctx.obj.open_store() as store, Reporter(as_json=as_json, quiet=quiet, show_tracks=False) as reporter:
            compute = Compute(jobs, timeout, _progress(reporter, jobs))
            result = run_search(store, text, k=k, strategy=strategy, group_weights=group_weights,
                                under=path_text(library) if library else None, explain=explain,
                                compute_missing=compute_missing, include_duplicates=include_duplicates,
                                seconds=seconds, query=streamed, compute=compute,
                                mutual_proximity=mutual_proximity, index_progress=reporter.index_progress())
            report_bad_entries(store)   # an index built over a damaged record skipped it without a word
    except WeightsError as exc:  # known once the index's groups are: a bad value all the same (exit 2)
        raise typer.BadParameter(exc.reason, param_hint="--weights") from None
    except QueryError as exc:
        if as_json:   # a script reading stdout gets the reason too, not an empty document (stderr says it as well)
            print_json({"query": text, "strategy": strategy, "error": str(exc), "hits": []})
        raise
    if m3u is not None:
        _note_left_out(write_m3u(result, m3u))
    if result.stats.get("nothing_to_search"):
        warn_line(result.stats["nothing_to_search"])
    if result.stats.get("query_silent"):
        # Ranked by the few dims silence has (a silence ratio of 1), the hits looked
        # like an answer, under "confidence high (1.00)".
        warn_line("the query is silent (every frame below the silence threshold): its hits are the tracks "
                  "closest in silence and rhythm, not tracks that sound alike")
    _say_skipped(result.skipped, hits=len(result.hits))
    if result.stats.get("copies_elsewhere"):
        warn_line(f"--library: copies elsewhere {result.stats['copies_elsewhere']}")
    if result.stats.get("previews_left_out"):
        n = result.stats["previews_left_out"]
        note("", f"left out {n} preview record{'s' if n != 1 else ''} (the first seconds of a track only): "
                 "`fpcli analyze FOLDER --upgrade` finishes them")
    if result.stats.get("other_versions_left_out") and not result.stats.get("nothing_to_search"):
        n, newer = result.stats["other_versions_left_out"], result.stats.get("newer_versions_left_out", 0)
        note("", f"left out {n} record{'s' if n != 1 else ''} of other fingerprint versions: "
                 + other_versions_said(n - newer, newer))
    if "query_copies_under" in result.stats:
        note("", _nothing_under(path_text(library) if library else "", result.stats["query_copies_under"],
                                len(result.skipped)))
    elif not result.hits and result.stats.get("duplicates_dropped") and not result.stats.get("nothing_to_search") \
            and not result.skipped:
        # An empty table alone read as a failure: every other track was the query's recording.
        copies = result.stats["duplicates_dropped"]
        note("", f"no hits: the store's other tracks are copies of the query ({copies} left out; "
                 "--include-duplicates shows them)")
    if result.stats.get("index_saved") is False:
        warn_line("the search index could not be saved (a full disk, or a folder that is not writable?): "
                  "every search builds it again until it can be")
    if as_json:
        print_json(result.to_json())
        return
    render_search(result, explain, table=m3u is None or path_text(m3u) != "-")  # --m3u -: stdout is the playlist


SKIPPED_SHOWN = 5   # skipped candidates named one by one; the rest are counted by reason


def _say_skipped(skipped: list[tuple[str, str]], *, hits: int) -> None:
    """The candidates skipped (their files unreadable or gone): the first few by name,
    the others counted by reason, and why there may be no hits. A library moved or
    unmounted printed one warning per stored track (17,500 lines at 20,000 records)
    and nothing about why no hit came. ``--json`` lists every one."""
    import collections

    for path, error in skipped[:SKIPPED_SHOWN]:
        warn_line(f"{path}: skipped as a candidate ({error})")
    if len(skipped) > SKIPPED_SHOWN:
        reasons = collections.Counter(error for _, error in skipped[SKIPPED_SHOWN:])
        warn_line(f"{len(skipped) - SKIPPED_SHOWN} more candidates skipped: "
                  + ", ".join(f"{n} {error}" for error, n in reasons.most_common()) + " (--json lists them)")
    from fpcli.search.query import GONE

    gone = sum(1 for _, error in skipped if error == GONE)
    if gone > len(skipped) // 2 and gone >= SKIPPED_SHOWN:
        warn_line(f"the files of {gone} stored tracks are gone{'' if hits else ', and no hit is left'}: a library that "
                  "moved or is not mounted? `fpcli cache prune` forgets the records of files that are gone")


def _refuse_batch_ranking(strategy: str, *, stream: bool, preview: bool) -> None:
    """A usage error for ``accurate`` or ``batch`` with a query that has no batch
    fingerprint to rank by: a stream (analysed as it arrives) or a preview (its first
    --seconds, searched with their streaming fingerprint). The search would run
    ``fast`` instead, and an explicit choice overruled without a word reads as the
    one asked for."""
    if strategy not in ("accurate", "batch") or not (stream or preview):
        return
    why = ("a stream query does not have (it is analysed as it arrives): use fast or auto" if stream else
           "a preview query does not have (--seconds searches with the streaming fingerprint of the first seconds "
           "heard): use fast or auto, or search without --seconds")
    raise typer.BadParameter(f"{strategy} ranks by batch fingerprints, which {why}", param_hint="--strategy")


def _refuse_repeated_groups(weights: str | None) -> None:
    """A usage error for a group weighted twice (``temporal=1,temporal=3``): the last
    one silently won, and which one the user meant is a guess."""
    items = [item.strip() for item in (weights or "").split(",") if item.strip()]
    groups = [item.partition("=")[0].strip() for item in items]
    for group in dict.fromkeys(groups):
        given = [item for item, name in zip(items, groups, strict=True) if name == group]
        if len(given) > 1:
            raise typer.BadParameter(f"{group!r} is given {'twice' if len(given) == 2 else f'{len(given)} times'} "
                                     f"({', '.join(given)}): give each group once", param_hint="--weights")


def _note_left_out(left: LeftOut) -> None:
    """Say what the playlist lacks: a hit missing from it without a word looks lost."""
    if left.streams:
        note("", f"left {left.streams} stream{'s' if left.streams != 1 else ''} out of the playlist (no file to play)")
    if left.cue_tracks:
        note("", f"left {left.cue_tracks} CUE-sheet track{'s' if left.cue_tracks != 1 else ''} out of the playlist "
                 "(no file of their own)")


def _nothing_under(folder: str, copies: int, skipped: int) -> str:
    """Why --library gave no hit (an empty table alone looks like a failure): every
    track there was a copy of the query, or skipped (its file gone or changed: named
    above), or the store has none there."""
    if copies:
        return f"no hits under {folder} ({copies} cop{'ies' if copies != 1 else 'y'} of the query left out)"
    if skipped:
        return f"no hits under {folder} (its other tracks in the store were skipped: see above)"
    return f"no hits under {folder} (the store has no other track there)"


def _check_folder(library: Path) -> None:
    """A usage error (exit 2) for a --library that is not a folder: under it, nothing
    would ever be found, and an empty result would hide the typo."""
    if not library.exists():
        raise typer.BadParameter(f"{path_text(library)}: no such folder", param_hint="--library")
    if not library.is_dir():
        raise typer.BadParameter(f"{path_text(library)}: not a folder", param_hint="--library")


def _progress(reporter: Reporter, jobs: int) -> Callable[[str, Any], None]:
    """Events of the batch fingerprints computed for a search: one notice on stderr when
    they start (even when stderr is not a terminal: a slow search is never silent), and
    the bar on stderr advanced per file. Failed files are listed once, as skipped
    candidates, after the search."""
    def on_event(kind: str, payload: Any) -> None:
        if kind == "start":
            total, _ = payload
            reporter.notice(f"computing {total} missing batch fingerprint{'s' if total != 1 else ''} "
                            f"on {min(jobs, total)} worker process{'es' if min(jobs, total) != 1 else ''}")
            reporter.event("start", payload)
        else:
            reporter.event("advance", None)
    return on_event


def _stream_query(seconds: float | None) -> Record:
    """The fingerprint of the first ``seconds`` of a stream on stdin, as an unstored
    record (a stream has no path)."""
    import time

    from fpcli.audio import open_stream
    from fpcli.errors import AudioReadError, QueryError
    from fpcli.live import follow, stream_identity
    from fpcli.store.records import record_from_result

    try:
        reader = open_stream(sys.stdin.buffer)
    except AudioReadError as exc:   # a query that cannot be analysed, as a file's (exit 3)
        raise QueryError(f"cannot read the query stream: {exc.reason}") from None
    said: list[bool] = []
    started = time.monotonic()

    def still_reading(snapshot: TrackResult) -> None:
        # A live stream piped in (a radio) may never end: the search waited for it
        # without a word. A file piped in is read in a second or two, and says nothing.
        heard = snapshot.streaming.seconds if snapshot.streaming else 0.0
        at_a_mark = abs(heard / QUERY_CHECK_S - round(heard / QUERY_CHECK_S)) < 1e-6
        # Not at a Ctrl-C, whose snapshot comes here too: "still reading" then was untrue.
        if not said and seconds is None and at_a_mark and time.monotonic() - started > SLOW_QUERY_S:
            said.append(True)
            note("", f"{heard:.0f} s of the query stream heard, still reading: the search starts at its end "
                     "(--seconds N searches by its first N s)")

    try:
        result = follow(reader, "stream:query", max_seconds=seconds, every_s=QUERY_CHECK_S,
                        on_snapshot=still_reading)
    except AudioReadError as exc:   # a header and no audio frame after it: failed as a fault of fpcli (exit 1)
        raise QueryError(f"cannot read the query stream: {exc.reason}") from None
    return record_from_result(stream_identity("query"), _with_declared_length(result, reader), time.time())


QUERY_CHECK_S = 30.0   # audio s of a query stream between looks at how long it has been read
SLOW_QUERY_S = 10.0    # wall s of reading a query stream after which a look says it is still read


def _with_declared_length(result: TrackResult, reader: AudioReader) -> TrackResult:
    """A stream stopped after its first seconds, with the length its header states (a
    FLAC stream's frame count), as a file's preview query has its file's length: the
    duplicate rule (lengths within a second, keys over what both heard) then tells the
    stream's own recording, which it leaves out of the hits, from a track that merely
    opens alike. Without a stated length the query's recording cannot be told; search
    marks the hits it may be instead."""
    declared = reader.stated_seconds
    if result.streaming is None or result.streaming.complete or not reader.length_exact or declared is None:
        return result
    return dataclasses.replace(result, duration_s=declared) if declared > (result.duration_s or 0.0) else result


def render_search(result: SearchResult, explain: bool, *, table: bool = True) -> None:
    """The hits as a table on stdout (unless not ``table``), then the summary and
    warnings on stderr."""
    from fpcli.fingerprint import seconds_text

    # MP is the last column so that a script's fields (#, distance, path, explanation) stay where they were.
    ranked = any(hit.mutual_proximity is not None for hit in result.hits)
    columns = ["#", "distance", "path"] + (["largest differences (query -> hit)"] if explain else []) + \
        (["MP"] if ranked else [])
    rows = []
    for rank, hit in enumerate(result.hits, start=1):
        row = [str(rank), f"{hit.distance:.3f}", hit.path]
        if explain:
            row.append("; ".join(_explained(e) for e in hit.explain))
        if ranked:
            row.append("—" if hit.mutual_proximity is None else f"{hit.mutual_proximity:.3f}")
        rows.append(row)
    if table:
        rows_out(f"{_tracks(len(result.hits))} like {result.query}" + (", by mutual proximity (MP)" if ranked else ""),
                 columns, rows, {"#": "right", "distance": "right", "MP": "right"})
    stats = result.stats
    copied = " (copied from the store's shared index)" if stats.get("index_fetched") else ""
    indexed = _tracks(stats["rows"]) if "rows" in stats else "— tracks"
    # accurate ranks its candidates by a batch index too: "index loaded" alone, after
    # "building the batch search index from every record", read as a contradiction.
    batch = stats.get("batch_index")
    also = f"; batch index {batch['index']}, {_tracks(batch['rows'])}" if isinstance(batch, dict) and \
        "rows" in batch else ""
    note("", f"strategy {result.strategy} ({result.reason}); index {stats.get('index', '—')}{copied}, "
             f"{indexed}{also}; ranked by {stats.get('ranking', 'distance')}; "
             f"cache hits {stats['cache_hits']}; {1000 * stats['seconds']:.1f} ms")
    if not stats.get("query_complete", True):
        note("", f"a partial query: {seconds_text(stats['query_seconds'])} s heard{_reliability(stats)} "
                 "(benchmarks/preview.md)")
    for path in stats.get("probably_the_query", []):
        note("", f"{path} is probably the query itself: it opens as the {seconds_text(stats['query_seconds'])} s "
                 "heard do, which are too few to tell it from another recording that opens alike")
    if stats.get("weights_unused"):
        where = "they weigh in --strategy accurate or batch" if stats.get("query_complete", True) else \
            "a partial query (a preview, a stream) is searched by its streaming fingerprint alone"
        warn_line(f"--weights {', '.join(stats['weights_unused'])}: no dim of a {result.strategy} search (streaming "
                  f"fingerprints hold none of these groups); {where}")
    if stats.get("missing_batch"):
        warn_line(f"{stats['missing_batch']} track(s) have no batch fingerprint and were not searched: "
                  "use --compute-missing or `fpcli analyze --batch`")


def _reliability(stats: dict[str, Any]) -> str:
    """"; expected recall@10 0.76" for a partial query; under the shortest length
    measured, that the figure is unknown (the shortest's figure would promise more than
    was measured)."""
    from fpcli.search.query import PREVIEW_RECALL

    recall = stats.get("expected_recall")
    if recall is not None:
        return f"; expected recall@10 {recall:.2f}"
    shortest, figure = PREVIEW_RECALL[0]
    if stats["query_seconds"] < shortest:
        return f"; expected recall@10 unknown under {shortest:g} s ({figure:.2f} at {shortest:g} s)"
    return ""


def _explained(line: dict[str, Any]) -> str:
    """One contribution: "dim query -> hit", or "timbre JS 0.123" for the timbre."""
    if line["dim"] == "timbre":
        js = line.get("divergence")
        return "timbre " + ("(no timbre on one side)" if js is None else f"JS {js:.3f}")
    from fpcli.fingerprint import DIM_BY_NAME

    unit = DIM_BY_NAME[line["dim"]].unit
    return f"{line['dim']} {format_value(line['query'], unit)} -> {format_value(line['hit'], unit)}"


def _tracks(n: int) -> str:
    """"1 track", "3 tracks" ("index built, 1 tracks")."""
    return f"{n} track{'s' if n != 1 else ''}"
