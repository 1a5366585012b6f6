"""The fast gate of bulk reads (``fast_schema.sound_texts``) says yes only to records
the full parser accepts, and says yes to what fpcli writes (or it would save nothing)."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpcli.errors import BadEntryError
from fpcli.store.fast_schema import sound_texts, vouched_lines
from fpcli.store.records import MAX_PATHS
from fpcli.store.schema import parse_record, parse_records, parse_records_checked, record_line, record_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_records  # noqa: E402  (benchmarks/make_records.py: one real record, cloned)


@pytest.fixture(autouse=True)
def gate_every_batch(monkeypatch):
    """The gate serves batches of GATE_MIN_BATCH records or more; these tests hold it to
    the parser on a few records at a time."""
    from fpcli.store import schema

    monkeypatch.setattr(schema, "GATE_MIN_BATCH", 1)


@pytest.fixture(scope="module")
def written(template):
    """fpcli's own texts: with and without each optional block."""
    from fpcli.store.records import Validation

    records = list(make_records.records(6, template=template))
    verdict = Validation("invalid", 0.93, 0.95, "medium", ("tempo_bpm",), {"tempo_bpm": 0.5, "key_clarity": None},
                         1.7e9)
    records[0] = dataclasses.replace(records[0], validation=verdict)   # the mutations start from it
    records.append(dataclasses.replace(records[1], timbre=None, dupe_key=None, batch=None, validation=None))
    return [record_text(r) for r in records]


def _accepted(texts):
    return [not isinstance(r, BadEntryError) for r in parse_records_checked([(f"t{i}", json.loads(t))
                                                                             for i, t in enumerate(texts)])]


def _same_parse(texts):
    """``parse_records`` (the gate, then records built unchecked) gives what the checked
    parser gives: equal records that write the same text, or the same problems."""
    items = [(f"t{i}", json.loads(t)) for i, t in enumerate(texts)]
    for fast, checked, text in zip(parse_records(items), parse_records_checked(items), texts, strict=True):
        if isinstance(checked, BadEntryError):
            assert isinstance(fast, BadEntryError) and fast.problems == checked.problems, text[:300]
        else:   # and the same text written (key order, 1 against 1.0)
            assert fast == checked and record_text(fast) == record_text(checked), text[:300]


def test_what_fpcli_writes_passes_the_gate(written):
    from fpcli.store.fast_schema import vouched

    assert sound_texts(written) == [True] * len(written) == _accepted(written)
    assert vouched([json.loads(t) for t in written]) == [True] * len(written)
    _same_parse(written)


def test_texts_the_gate_cannot_vouch_for_go_to_the_parser(written):
    data = json.loads(written[0])
    odd_path = copy.deepcopy(data)
    odd_path["paths"][0]["path"] = "/música/é.flac"       # not ASCII: exports write it afresh
    two_point_oh = {**data, "schema": 2.0}                   # the parser takes 2.0 for 2
    texts = [json.dumps(odd_path, ensure_ascii=False), json.dumps(two_point_oh), None, "{", written[0] + "\n"]
    assert sound_texts(texts) == [False] * 5


# Values that break one rule or another of the schema, put anywhere in a record.
ODD = [None, -1, 0, 1, -1.5, 0.5, 1.5, 2, 3, 1e9, 1.1e9, -1e10, 2**63, 2**63 - 1, 1e308, "", "x", "0" * 32,
       "a" * 32, "A" * 32, "v5-", "-", "é", "a" * 65, True, False, [], [1], {}, {"x": 1},
       {"path": "", "mtime_ns": 0}, {"path": "/a", "mtime_ns": -1}, "AAAA", "valid", "high", "tempo_bpm",
       1e300, {"path": "/a\x00b", "mtime_ns": 1}, {"path": "/a\ud800", "mtime_ns": 1},
       {"path": "/a\udcff", "mtime_ns": 1}]


def _paths_in(value, prefix=()):
    """Every (path, container) of a JSON document, leaves and inner nodes."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths_in(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths_in(inner, (*prefix, index))


def _mutated(data, path, action, odd):
    data = copy.deepcopy(data)
    if not path:
        return odd
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent["unknown_field"] = odd
    else:
        parent[last] = odd
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.data())
def test_the_gate_says_yes_only_to_what_the_parser_accepts(written, choice):
    """One or two mutations of a written record (a value replaced by an odd one, a key
    deleted or added); whatever the gate passes, the parser must accept."""
    data = json.loads(choice.draw(st.sampled_from(written)))
    for _ in range(choice.draw(st.integers(1, 2))):
        paths = list(_paths_in(data))
        path = choice.draw(st.sampled_from(paths))
        data = _mutated(data, path, choice.draw(st.sampled_from(["replace", "delete", "add"])),
                        choice.draw(st.sampled_from(ODD)))
    text = json.dumps(data)
    if sound_texts([text]) == [True]:
        assert _accepted([text]) == [True], text[:300]
    if vouched_lines([record_line(text).encode()]) != [None]:   # an import's line, stored as it came
        assert _accepted([text]) == [True], text[:300]
    _same_parse([text])


def test_every_single_replacement_is_judged_as_the_parser_judges(written):
    """Exhaustive over one record: each value replaced by each odd value. The gate's
    yes implies the parser's yes; the gate may say no where the parser says yes."""
    data = json.loads(written[0])
    texts = [json.dumps(_mutated(data, path, "replace", odd)) for path in _paths_in(data) if path
             for odd in ODD]
    gate, parser = sound_texts(texts), _accepted(texts)
    assert not [t for t, g, p in zip(texts, gate, parser, strict=True) if g and not p]
    lines = [v is not None for v in vouched_lines([record_line(t).encode() for t in texts])]
    assert not [t for t, g, p in zip(texts, lines, parser, strict=True) if g and not p]
    assert sum(lines) > 0.2 * sum(parser)
    assert sum(gate) > 0.2 * sum(parser)  # it still vouches for many sound variants
    _same_parse(texts)


def test_a_version_its_parameter_key_does_not_name_is_refused(written):
    """An import of fingerprint_version 99 under a v5 parameter key was accepted and
    counted as a version 99 record; the key names its version."""
    data = json.loads(written[0])
    texts = [json.dumps({**data, "fingerprint_version": 99}), json.dumps({**data, "params_key": "v4-0123abcd"})]
    assert sound_texts(texts) == [False, False] and _accepted(texts) == [False, False]
    _same_parse(texts)


def test_timbres_the_parser_refuses_do_not_pass(written):
    """An indefinite covariance, a value past VALUE_LIMIT, a NaN, a short block: well-formed
    base64 each, so only the checks after the decoding can tell."""
    import base64

    import numpy as np

    from fpcli.store.timbre_block import TIMBRE_VALUES, symmetric_layout

    data = json.loads(written[0])
    good = np.frombuffer(base64.b64decode(data["timbre"]["packed"]), dtype="<f4").copy()
    indefinite = good.copy()
    indefinite[13 + symmetric_layout()[0, 0]] = -1e3     # a negative variance (after the 13 means)
    huge, nan = good.copy(), good.copy()
    huge[0], nan[1] = 2e9, np.nan
    texts = []
    for values in (indefinite, huge, nan, good[:TIMBRE_VALUES - 1]):
        data["timbre"]["packed"] = base64.b64encode(values.astype("<f4").tobytes()).decode("ascii")
        texts.append(json.dumps(data))
    assert sound_texts(texts) == [False] * 4
    assert _accepted(texts) == [False] * 4
    _same_parse(texts)


@pytest.mark.parametrize(("block", "dim", "value"), [("streaming", "tempo_bpm", -120.0),
                                                     ("streaming", "spectral_flatness", 1.5),
                                                     ("batch", "phase_correlation", -1.01),
                                                     ("batch", "crest_db", -3.0)])
def test_a_value_outside_its_dims_domain_is_refused(written, block, dim, value):
    """A hand-made import with a negative tempo or a share above 1 was stored and
    searched as a track (every value within +-1e9 passed)."""
    data = json.loads(written[1])
    data[block]["values"][dim] = value
    text = json.dumps(data)
    assert sound_texts([text]) == [False]
    (problem,) = parse_records_checked([("t", data)])
    assert isinstance(problem, BadEntryError)
    assert problem.problems == [f"{block}.values.{dim} is {value}, outside its domain "
                                f"[{'-1' if dim == 'phase_correlation' else '0'}, "
                                f"{'inf' if dim in ('tempo_bpm', 'crest_db') else '1'}]"]


@pytest.mark.parametrize(("path", "good"), [("/a\x00b", False), ("/a\ud800b", False), ("/a\udfffb", False),
                                            ("/a\udc80b", True), ("/é", True)])
def test_a_path_no_file_can_have_is_refused(written, path, good):
    """A path with NUL, or a lone surrogate that stands for no byte, was stored: the
    import then failed with a traceback (and lost its good lines) or every prune did."""
    data = json.loads(written[1])
    data["paths"][0]["path"] = path
    assert _accepted([json.dumps(data)]) == [good]
    assert not sound_texts([json.dumps(data)])[0] or good
    _same_parse([json.dumps(data)])


@pytest.mark.parametrize(("path", "good"), [("music/a.flac", False), ("./a.flac", False), ("~/a.flac", False),
                                            ("stream:", False), ("stream:radio", True), ("/", True)])
def test_a_path_no_file_was_stored_under_is_refused(written, path, good):
    """Every path fpcli stores is absolute, or a named stream's: an imported relative
    path was kept and judged by whatever folder a later command ran in (prune said a
    file of that name there "changed"), and ``cache show`` of it found nothing."""
    data = json.loads(written[1])
    data["paths"][0]["path"] = path
    assert _accepted([json.dumps(data)]) == [good]
    assert sound_texts([json.dumps(data)]) == [good]
    _same_parse([json.dumps(data)])


@pytest.mark.parametrize(("field", "value", "good"), [("samplerate", 10**12, False), ("samplerate", 7999, False),
                                                      ("samplerate", 8000, True), ("samplerate", 768000, True),
                                                      ("samplerate", 768001, False), ("channels", 65535, True),
                                                      ("channels", 65536, False)])
def test_an_audio_format_no_reader_lets_through_is_refused(written, field, value, good):
    """An imported rate of 10**12 Hz was stored, and listed as the track's: a record
    holds what the readers and the analyzers accept (8-768 kHz, 1-65535 channels)."""
    data = json.loads(written[1])
    data["audio"][field] = value
    assert _accepted([json.dumps(data)]) == [good]
    assert sound_texts([json.dumps(data)]) == [good]
    _same_parse([json.dumps(data)])


def test_a_time_beyond_year_9999_is_refused(written):
    """An analysed_at of 1e300 was stored, then every listing failed on it."""
    data = json.loads(written[1])
    texts = [json.dumps({**data, "analysed_at": 1e300}), json.dumps({**data, "last_used_at": 253402300800.0})]
    assert sound_texts(texts) == [False, False] and _accepted(texts) == [False, False]


@pytest.mark.parametrize("paths,kept", [
    ([{"path": f"/m/{i}.flac", "mtime_ns": 1} for i in range(MAX_PATHS + 1)],
     [(f"/m/{i}.flac", 1) for i in range(1, MAX_PATHS + 1)]),
    ([{"path": "/m/a.flac", "mtime_ns": 1}, {"path": "/m/b.flac", "mtime_ns": 1}, {"path": "/m/a.flac", "mtime_ns": 2}],
     [("/m/b.flac", 1), ("/m/a.flac", 2)]),
])
def test_a_record_keeps_its_latest_64_paths_each_once(written, paths, kept):
    """An import took a record listing 5,000 paths (`cache list` printed them all) and one
    listing a path twice (`cache show`: "2 known paths"). A record keeps each path once
    (its later sighting) and the latest 64; the gate leaves such records to the parser."""
    data = json.loads(written[0])
    at_most = {**data, "paths": paths[:MAX_PATHS] if len(paths) > MAX_PATHS else paths[:2]}
    assert sound_texts([json.dumps(at_most)]) == [True] == _accepted([json.dumps(at_most)])
    text = json.dumps({**data, "paths": paths})
    assert sound_texts([text]) == [False] and vouched_lines([record_line(text).encode()]) == [None]
    key = f"rec:{data['digest']}:{data['params_key']}"
    assert [(seen.path, seen.mtime_ns) for seen in parse_record(key, json.loads(text)).paths] == kept
