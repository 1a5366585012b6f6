"""An import stores the record lines of an export as they came when the typed gate
vouches for them (``fast_schema.vouched_lines``), without building records; what it
stores must be what the parser's path would store, and every line the gate cannot
vouch for must still be judged by the parser."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fpcli.store import FingerprintStore
from fpcli.store.fast_schema import sound_texts, vouched_lines
from fpcli.store.index_rows import index_row_of
from fpcli.store.maintenance import EXPORT_FORMAT, EXPORT_VERSION, import_store
from fpcli.store.records import PathSeen, Validation
from fpcli.store.schema import loads, parse_record, record_line, record_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_records  # noqa: E402  (benchmarks/make_records.py: one real record, cloned)


def _variants(template):
    """Records of every shape an export holds: plain clones, a preview, one without
    batch values or timbre, one with a verdict, one with a non-ASCII path (an export
    writes it afresh, escaped), one named stream."""
    records = list(make_records.records(8, template=template))
    verdict = Validation("valid", 0.99, 0.95, "high", (), {"tempo_bpm": 0.01}, 1.7e9)
    records[1] = dataclasses.replace(records[1], complete=False)
    records[2] = dataclasses.replace(records[2], batch=None, timbre=None, dupe_key=None)
    records[3] = dataclasses.replace(records[3], validation=verdict)
    records[4] = dataclasses.replace(records[4], paths=(PathSeen("/música/canción.flac", 1_700_000_000_000_000_000),))
    records[5] = dataclasses.replace(records[5], paths=(PathSeen("stream:radio", 1_700_000_000_000_000_000),))
    return records


def _export(records, path, extra=()):
    lines = [json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION})]
    lines += [record_line(record_text(r)) for r in records]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def _contents(store):
    """Every entry of a store, records parsed (equal content, whatever the key order or
    number forms of their texts), and its census."""
    entries = {}
    for key, text in store.backend.items(""):
        data = loads(key, text)
        entries[key] = parse_record(key, data) if key.startswith("rec:") else data
    stats = store.stats()
    return entries, {name: stats[name] for name in ("entries", "with_batch", "validated", "previews", "failures",
                                                     "by_version", "census_exact")}


@pytest.fixture()
def parsed_only(monkeypatch):
    """Imports through the parser alone (what every line went through before the gate)."""
    from fpcli.store import fast_schema

    monkeypatch.setattr(fast_schema, "vouched_lines", lambda lines: [None] * len(lines))


def _import_both(tmp_path, source, monkeypatch, before=()):
    """The store after importing ``source`` through the gate, and through the parser
    alone, each into a store that already holds ``before``."""
    from fpcli.store import fast_schema

    results = []
    for name, gate in (("gated", fast_schema.vouched_lines), ("parsed", lambda lines: [None] * len(lines))):
        monkeypatch.setattr(fast_schema, "vouched_lines", gate)
        with FingerprintStore.open(tmp_path / name) as store:
            if before:
                store.import_records(list(before))
            report = import_store(store, source)
            results.append((report, _contents(store)))
    return results


def test_the_gate_vouches_for_what_an_export_writes(template):
    records = _variants(template)
    found = vouched_lines([record_line(record_text(r)).encode() for r in records])
    # The non-ASCII path is written escaped, as an export writes it: vouched too.
    assert [v is not None for v in found] == [True] * len(records)
    for record, vouched in zip(records, found, strict=True):
        assert vouched.key == record.key and parse_record(vouched.key, loads(vouched.key, vouched.text)) == record
        for kind in ("streaming", "batch"):
            expected, row = index_row_of(record, kind, record.params_key, record.fingerprint_version), \
                vouched.index_row(kind, record.params_key, record.fingerprint_version)
            assert (expected is None) == (row is None)
            if expected is not None:
                assert (row.key, row.digest, row.path, row.values) == \
                    (expected.key, expected.digest, expected.path, expected.values)
                assert (row.timbre is None) == (expected.timbre is None)
                assert row.timbre is None or (row.timbre == expected.timbre).all()


def test_lines_not_of_the_export_form_go_to_the_parser(template):
    """A line the gate cannot be sure is {"type": "record", "data": TEXT} with TEXT one
    record, or whose record an export would write otherwise, is parsed."""
    record = next(make_records.records(1, template=template))
    text = record_text(record)
    data = json.loads(text)
    older = json.dumps({**data, "schema": 2}, separators=(",", ":"))
    double = dict(data, timbre={**data["timbre"]})
    import base64

    values = np.frombuffer(base64.b64decode(data["timbre"]["packed"]), dtype="<f4").astype("<f8")
    double["timbre"]["packed"] = base64.b64encode(values.tobytes()).decode("ascii")
    lines = [
        record_line(text) + ',"data":' + text,               # a second "data" (the last one counts)
        record_line(text)[:-1] + ',"type":"failure"}',        # a second "type"
        json.dumps({"type": "record", "data": data}),         # spaces: another writer
        record_line(text) + " ",
        record_line(text.replace("}", " }", 1)),              # sound, but not as an export writes it? still one text
        record_line(older),                                   # an older schema: written afresh
        record_line(json.dumps(double, separators=(",", ":"))),   # a double-precision timbre: written afresh
        record_line(text)[:-1],                               # cut
    ]
    found = vouched_lines([line.encode() for line in lines])
    assert [v is not None for v in found] == [False, False, False, False, True, False, False, False]
    assert found[4].text == text.replace("}", " }", 1)      # stored as it came: one JSON object


def test_an_import_through_the_gate_stores_what_the_parser_path_stores(template, tmp_path, monkeypatch):
    """Fresh keys; a key stored already (a preview at another path, with batch values
    the imported record lacks: merged); a key twice in the file (whole, then a
    preview); a key whose first line the gate cannot vouch for (another writer's
    spacing) and whose later line it can; bad lines: the same records, path entries,
    candidates, census and rejections either way."""
    records = _variants(template)
    stored = dataclasses.replace(records[6], complete=False, paths=(PathSeen("/old/place.flac", 1),))
    imported = dataclasses.replace(records[6], batch=None)
    first = dataclasses.replace(records[7], complete=True, paths=(PathSeen("/a/first.flac", 5),))
    later = dataclasses.replace(records[7], complete=True, paths=(PathSeen("/b/later.flac", 6),))
    preview = dataclasses.replace(records[0], complete=False)
    source = _export([*records[:6], imported], tmp_path / "in.jsonl", extra=[
        json.dumps({"type": "record", "data": json.loads(record_text(first))}), record_line(record_text(later)),
        record_line(record_text(preview)), record_line('{"digest":"zz"}'), "{",
        record_line(record_text(records[2]))[:-1]])
    (gated_report, gated), (parsed_report, parsed) = _import_both(tmp_path, source, monkeypatch, before=[stored])
    assert gated == parsed
    assert dataclasses.asdict(gated_report) == dataclasses.asdict(parsed_report)
    assert gated_report.records == 10 and len(gated_report.rejected) == 3
    entries = gated[0]
    merged = entries[records[6].key]
    assert merged.complete and merged.batch == stored.batch is not None              # merged, not replaced
    assert [p.path for p in merged.paths] == ["/old/place.flac", records[6].path]
    assert [p.path for p in entries[records[7].key].paths] == ["/a/first.flac", "/b/later.flac"]   # in line order
    assert entries[records[0].key].complete                                           # a preview never replaces


def test_an_import_through_the_gate_saves_the_index_the_parser_path_saves(template, tmp_path, monkeypatch):
    from fpcli.search.keeper import ImportedRows
    from fpcli.search.saved import loaded_index
    from fpcli.store import fast_schema

    records = _variants(template)
    source = _export(records, tmp_path / "in.jsonl")
    indexes = {}
    for name, gate in (("gated", fast_schema.vouched_lines), ("parsed", lambda lines: [None] * len(lines))):
        monkeypatch.setattr(fast_schema, "vouched_lines", gate)
        with FingerprintStore.open(tmp_path / name) as store:
            rows = ImportedRows(store, records[0].params_key)
            import_store(store, source, on_records=rows.add)
            expected = {kind: sum(index_row_of(r, kind, r.params_key, r.fingerprint_version) is not None
                                  for r in records) for kind in ("streaming", "batch")}
            assert rows.finish()["saved"] == expected and expected["streaming"] > expected["batch"] > 3
            indexes[name] = {kind: loaded_index(store.backend.index_dir, kind, records[0].params_key)
                             for kind in ("streaming", "batch")}
    for kind in ("streaming", "batch"):
        gated, parsed = indexes["gated"][kind], indexes["parsed"][kind]
        assert list(gated.keys) == list(parsed.keys) and list(gated.contents) == list(parsed.contents)
        assert np.array_equal(gated.values, parsed.values, equal_nan=True)
        assert np.array_equal(gated.timbre_rows(), parsed.timbre_rows(), equal_nan=True)
        assert list(gated.encoded_paths()) == list(parsed.encoded_paths())


def test_what_the_gate_stores_the_gate_of_stored_texts_vouches_for(template, tmp_path):
    """An export of the imported store writes the texts as they came (no record built)."""
    records = _variants(template)
    source = _export(records, tmp_path / "in.jsonl")
    with FingerprintStore.open(tmp_path / "store") as store:
        import_store(store, source)
        texts = [text for key, text in store.backend.items("rec:")]
    assert all(sound_texts(texts))
    assert sorted(texts) == sorted(record_text(r) for r in records)


def test_a_record_with_paths_in_another_script_is_vouched_for(template):
    """An export escapes non-ASCII (\\uXXXX, 6 characters each): measured against
    msgspec's UTF-8, two Cyrillic paths of 50 characters read as padding, and 3,000 of
    20,000 records went to the slow parser."""
    record = next(make_records.records(1, template=template))
    named = dataclasses.replace(record, paths=(PathSeen("/музыка/" + "ж" * 50 + ".flac", 1),
                                               PathSeen("/музыка/" + "я" * 50 + ".flac", 2)),
                                batch=None, timbre=None, dupe_key=None)
    text = record_text(named)
    assert text.isascii() and "\\u" in text
    (vouched,) = vouched_lines([record_line(text).encode()])
    assert vouched is not None and vouched.text == text


def test_padding_and_fields_the_parser_drops_are_never_stored(template, tmp_path):
    """The gate's structs took fields they did not name, and a line stored as it came
    kept them (a field of 900 KB a record: an import of ten records evicted a store of
    8 MB); whitespace and long spellings of numbers likewise. Such lines go to the
    parser, which writes the record afresh."""
    record = next(make_records.records(1, template=template))
    text = record_text(record)
    data = json.loads(text)
    padded = [
        json.dumps({**data, "x": "A" * 100_000}, separators=(",", ":")),
        json.dumps({**data, "audio": {**data["audio"], "x": 1}}, separators=(",", ":")),
        text.replace(',"size":', ' ' * 100_000 + ',"size":', 1),
        text.replace('"duration_s":65.0', '"duration_s":65.' + "0" * 10_000, 1),
    ]
    assert vouched_lines([record_line(t).encode() for t in padded]) == [None] * 4
    assert vouched_lines([record_line(text).encode()])[0] is not None
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION}),
                                 record_line(padded[0])]) + "\n")
    with FingerprintStore.open(tmp_path / "store") as store:
        assert import_store(store, source).records == 1
        ((_, stored),) = list(store.backend.items("rec:"))
    assert stored == record_text(record)


def _interrupted_at(lines: int):
    """A progress callback (called every BATCH lines) that stops the import, as a
    Ctrl-C does, once ``lines`` lines were read."""
    def progress(number: int) -> None:
        if number >= lines:
            raise KeyboardInterrupt
    return progress


def test_an_interrupted_import_says_how_far_it_got(template, tmp_path):
    """A Ctrl-C said only "interrupted": 30,000 of 100,000 records were stored, and
    nothing said so. The interrupt says what was stored before it."""
    from fpcli.store.maintenance import ImportInterrupted
    from fpcli.store.protocol import BATCH

    source = _export(make_records.records(2 * BATCH + 10, template=template), tmp_path / "e.jsonl")
    with FingerprintStore.open(tmp_path / "s") as store:
        with pytest.raises(ImportInterrupted) as interrupt:
            import_store(store, source, progress=_interrupted_at(2 * BATCH))
        stored = store.stats()["entries"]
    assert isinstance(interrupt.value, KeyboardInterrupt)   # a caller that does not ask still sees a Ctrl-C
    assert stored == BATCH   # the header and 1,999 record lines read: one whole batch written
    assert interrupt.value.how_far == (f"{BATCH} records and 0 failures were imported before it, in whole "
                                       "batches: run the import again to complete it")


def test_a_batch_stored_before_an_interrupt_is_counted(template, tmp_path):
    """An interrupt while the search index's rows of a stored batch were kept said that
    batch was not imported (2,000 said, 3,000 stored)."""
    from fpcli.store.maintenance import ImportInterrupted
    from fpcli.store.protocol import BATCH

    calls = []

    def keep_rows(batch):
        calls.append(batch)
        if len(calls) == 3:
            raise KeyboardInterrupt

    source = _export(make_records.records(4 * BATCH, template=template), tmp_path / "e.jsonl")
    with FingerprintStore.open(tmp_path / "s") as store:
        with pytest.raises(ImportInterrupted) as interrupt:
            import_store(store, source, on_records=keep_rows)
        stored = store.stats()["entries"]
    assert stored == 3 * BATCH and interrupt.value.how_far.startswith(f"{3 * BATCH} records and 0 failures")
    assert "part of the batch" not in interrupt.value.how_far


def test_the_import_command_says_it_once(template, tmp_path, monkeypatch, capsys):
    from fpcli.cli import EXIT_INTERRUPTED, cache_cmd
    from fpcli.store.protocol import BATCH
    from tests.test_cli_output import _main

    source = _export(make_records.records(2 * BATCH + 10, template=template), tmp_path / "e.jsonl")
    monkeypatch.setattr(cache_cmd, "progress_line", lambda what: _interrupted_at(2 * BATCH))
    assert _main(monkeypatch, "--store", str(tmp_path / "s"), "cache", "import", str(source)) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.splitlines() == [f"interrupted: {BATCH} records and 0 failures were imported "
                                                    "before it, in whole batches: run the import again to "
                                                    "complete it"]


def test_an_interrupt_while_the_index_is_saved_says_every_record_was_imported(template, tmp_path, monkeypatch,
                                                                              capsys):
    """A Ctrl-C during the last step, the search index's save, said only "interrupted":
    the import read as lost, though every record was stored."""
    from fpcli.cli import EXIT_INTERRUPTED
    from fpcli.search import keeper
    from tests.test_cli_output import _main

    def interrupted(self):
        raise KeyboardInterrupt

    source = _export(make_records.records(30, template=template), tmp_path / "e.jsonl")
    with open(source, "a") as out:   # a line rejected: said, and counted, before the interrupt's note
        out.write('{"type": "record", "data": {}}\n')
    monkeypatch.setattr(keeper.ImportedRows, "finish", interrupted)
    assert _main(monkeypatch, "--store", str(tmp_path / "s"), "cache", "import", str(source)) == EXIT_INTERRUPTED
    said = capsys.readouterr().err.splitlines()
    assert said[-1] == ("interrupted: the whole file was read: 30 records and 0 failures imported, 1 line rejected; "
                        "only the search index was not saved: the first search builds it")
    assert said[-2].startswith("rejected")
    with FingerprintStore.open(tmp_path / "s") as store:
        assert store.stats()["entries"] == 30


@pytest.mark.parametrize("content,says", [
    (b"fLaC\x00\x00\x00\x22" + bytes(range(256)) * 40 + b"\n" * 50, "is not an fpcli export"),
    (b"", "is empty"),
    (b"\n  \r\n\n", "is empty"),
    (json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION + 1}).encode() + b"\n", "an export of version"),
])
def test_what_is_no_export_of_this_version_is_refused_whole_and_makes_no_store(tmp_path, content, says):
    """An audio file given to `cache import` printed 6,866 "rejected line" errors and left
    an empty store; empty input made an empty store (exit 0); an export of another
    version made a store, then said nothing was imported."""
    from typer.testing import CliRunner

    from fpcli.cli import app

    source = tmp_path / "input"
    source.write_bytes(content)
    # Blank lines alone are known as such from a file's size; a pipe could send more.
    for args, stdin in (([str(source)], None), *([] if content.strip() == b"" and content else [(["-"], content)])):
        result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "cache", "import", *args], input=stdin)
        assert result.exit_code == 1 and says in str(result.exception) + result.output, result.output
        assert not (tmp_path / "s").exists()
        assert result.output.count("\n") <= 2, result.output
