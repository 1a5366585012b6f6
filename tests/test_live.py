"""Partial and live fingerprints: previews, upgrades, streams on stdin, snapshots, the
player API, and what an interrupted stream keeps."""

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fpcli import synth
from fpcli.analyze import Want, fingerprint_of
from fpcli.cli import app
from fpcli.live import LiveFingerprint
from fpcli.store import FingerprintStore, prune
from tests.conftest import write

SR = 22050
runner = CliRunner()


@pytest.fixture
def song(tmp_path):
    return write(tmp_path / "song.wav", synth.music_like(12.0, SR, seed=5), SR)


def _fpcli(store, *args, stdin=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "fpcli", "--store", str(store), *args], input=stdin,
                          capture_output=True, timeout=timeout)


def _lines(output):
    return [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_stream_on_stdin_gives_the_files_fingerprint(tmp_path, song, fmt):
    source = song if fmt == "wav" else write(tmp_path / "song.flac", synth.music_like(12.0, SR, seed=5), SR)
    store = tmp_path / "s"
    from_file = _lines(_fpcli(store, "analyze", source, "--json").stdout)[-1]
    piped = _fpcli(store, "analyze", "-", "--json", "--no-store", stdin=open(source, "rb").read())
    assert piped.returncode == 0, piped.stderr
    [streamed] = _lines(piped.stdout)
    assert streamed["complete"] and streamed["seconds"] == pytest.approx(12.0)
    _same_fingerprint(streamed, from_file)
    # Named as libsndfile names them: a WAV's subtype was PCM_16 as a file, PCM_S16LE on a pipe.
    assert (streamed["format"], streamed["subtype"]) == (from_file["format"], from_file["subtype"])


def _same_fingerprint(a, b):
    for dim, value in b["streaming"].items():
        assert a["streaming"][dim]["value"] == pytest.approx(value["value"], rel=1e-6, abs=1e-9), dim
        assert a["streaming"][dim]["confidence"] == value["confidence"], dim


def test_snapshots_rise_and_the_last_one_is_the_files(tmp_path, song):
    store = tmp_path / "s"
    whole = _lines(_fpcli(store, "analyze", song, "--json").stdout)[-1]
    run = _fpcli(store, "analyze", "-", "--json", "--every", "3", "--name", "radio", stdin=open(song, "rb").read())
    assert run.returncode == 0, run.stderr
    rows = _lines(run.stdout)
    seconds = [r["seconds"] for r in rows]
    # A mark at the stated end is the final result alone: "12.0 s, partial" then "12.0 s, complete" were both printed.
    assert seconds == pytest.approx([3.0, 6.0, 9.0, 12.0])
    assert [r["complete"] for r in rows][-1] and not any(r["complete"] for r in rows[:-1])
    assert rows[-1]["path"] == "stream:radio"
    _same_fingerprint(rows[-1], whole)  # equal up to float rounding of other block boundaries
    listed = runner.invoke(app, ["--store", str(store), "cache", "list", "--json"]).stdout
    assert "stream:radio" in {json.loads(line)["path"] for line in listed.splitlines()}
    with FingerprintStore.open(store) as s:
        assert prune(s) == []  # a named stream has no file that could be gone


def test_raw_pcm_on_stdin(tmp_path):
    audio = synth.music_like(4.0, SR, seed=6)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    run = _fpcli(tmp_path / "s", "analyze", "-", "--raw-format", "s16le", "--rate", str(SR), "--channels", "2",
                 "--json", "--no-store", stdin=pcm)
    assert run.returncode == 0, run.stderr
    [row] = _lines(run.stdout)
    assert row["samplerate"] == SR and row["channels"] == 2 and row["seconds"] == pytest.approx(4.0)
    bad = _fpcli(tmp_path / "s", "analyze", "-", "--raw-format", "s16le", stdin=pcm)
    assert bad.returncode == 2 and b"--rate and --channels" in bad.stderr


@pytest.mark.parametrize("options,message", [
    (["--raw-format", "xyz", "--rate", "44100", "--channels", "2"], b"'xyz' is not one of s16le"),
    (["--raw-format", "s16le", "--rate", "1", "--channels", "2"], b"1 Hz is outside 8000-768000 Hz"),
    (["--raw-format", "s16le", "--rate", "0", "--channels", "2"], b"0 Hz is outside 8000-768000 Hz"),
])
def test_bad_raw_options_are_usage_errors(tmp_path, options, message):
    run = _fpcli(tmp_path / "s", "analyze", "-", *options, stdin=b"\x00" * 4000)
    assert run.returncode == 2 and message in run.stderr


def test_the_help_gives_the_raw_rates_taken():
    """It said "[x>=1]", and --rate 1 or 7999 was refused as outside 8000-768000 Hz."""
    text = " ".join(runner.invoke(app, ["analyze", "--help"], terminal_width=200).output.split())
    assert re.search(r"--rate <int> Raw PCM sample rate, Hz \(8000-768000\)\. --channels", text), text


def test_a_stream_or_a_followed_file_comes_alone(tmp_path, song):
    with_path = _fpcli(tmp_path / "s", "analyze", "-", str(song), stdin=b"")
    assert with_path.returncode == 2 and b"give no other path with it" in with_path.stderr
    two_files = _fpcli(tmp_path / "s", "analyze", str(song), str(song), "--every", "1")
    assert two_files.returncode == 2 and b"--every follows one file" in two_files.stderr
    folder = _fpcli(tmp_path / "s", "analyze", str(tmp_path), "--every", "1")   # was exit 3, "not an audio file"
    assert folder.returncode == 2 and b"not a folder" in folder.stderr


@pytest.mark.parametrize("raw_format", ["f32le", "f64le"])
def test_float_bytes_that_are_not_audio_are_the_stream_s_failure(tmp_path, raw_format):
    """Random float bytes hold NaNs (signalling ones warned on any arithmetic) and
    values near 1e38: the stream fails with the reader's reason, exit 3 as any failed
    track, and nothing else is printed."""
    noise = np.random.default_rng(0).integers(0, 256, size=100_000, dtype=np.uint8).tobytes()
    run = _fpcli(tmp_path / "s", "analyze", "-", "--raw-format", raw_format, "--rate", str(SR), "--channels", "2",
                 stdin=noise)
    assert run.returncode == 3
    assert run.stderr.decode().startswith("error: -: float samples up to ") and "not audio scaled to" in \
        run.stderr.decode()
    assert b"Warning" not in run.stderr and b"Traceback" not in run.stderr and len(run.stderr.splitlines()) == 1


def test_raw_reads_are_bounded_whatever_the_channel_count():
    """131,072 frames of 100,000 channels would be a 26 GB read: a read is at most
    MAX_READ_BYTES, and every frame still arrives whole."""
    import io

    from fpcli.audio.raw import MAX_READ_BYTES, RawSource

    channels = 100_000
    pcm = np.arange(3 * channels, dtype="<i2").tobytes()
    blocks = list(RawSource(io.BytesIO(pcm), raw_format="s16le", samplerate=SR, channels=channels).blocks(131072))
    assert sum(len(b) for b in blocks) == 3 and all(b.shape[1] == channels for b in blocks)
    assert max(b.nbytes // 2 for b in blocks) <= MAX_READ_BYTES


def test_not_audio_on_stdin_is_one_clear_error(tmp_path):
    run = _fpcli(tmp_path / "s", "analyze", "-", "--json", "--no-store", stdin=b"hello, not audio\n" * 100)
    assert run.returncode == 3 and b"Traceback" not in run.stderr
    [row] = _lines(run.stdout)
    assert row["status"] == "error" and "not a decodable audio stream" in row["error"]


def _falling_silent(data: bytes, silence_s: float) -> tuple[io.BufferedReader, threading.Event]:
    """A pipe that carries ``data`` and then falls silent for ``silence_s`` before it
    ends (a live producer between two pieces), and an event set as it ends."""
    read_end, write_end = os.pipe()
    ended = threading.Event()

    def produce() -> None:
        os.write(write_end, data)
        time.sleep(silence_s)
        ended.set()
        os.close(write_end)

    threading.Thread(target=produce, daemon=True).start()
    return os.fdopen(read_end, "rb"), ended


@pytest.mark.parametrize("kind,heard_s", [
    ("wav", 2.9),    # FFmpeg's WAV demuxer waits for its next packet (1024 frames here) to be whole
    ("flac", 1.5),   # FFmpeg's FLAC parser checks ten frame headers ahead (10 x 4096 frames here)
])
def test_a_stream_hands_on_what_it_decoded_while_its_producer_is_silent(kind, heard_s):
    """A container stream on stdin held its decoded audio back until 131,072 frames
    had built up (6 s at 22.05 kHz), and FFmpeg read 820 KB of a WAV (4.6 s at 44.1
    kHz) before opening it: a live stream's snapshots came late, and a kill -9 lost
    what had been heard. Now the audio decoded is handed on as soon as the pipe has
    no more to give, in blocks still no larger than asked."""
    from fpcli.audio import DEFAULT_BLOCK_FRAMES, open_stream

    audio = synth.music_like(3.0 if kind == "wav" else 4.0, SR, seed=8, stereo=kind == "wav") * 0.5
    pipe, ended = _falling_silent(_stream_bytes(kind, audio)[0], silence_s=1.5)
    before_the_end, sizes = 0, []
    for block in open_stream(pipe):
        before_the_end += 0 if ended.is_set() else len(block)
        sizes.append(len(block))
    assert sum(sizes) == len(audio) and max(sizes) <= DEFAULT_BLOCK_FRAMES
    assert before_the_end >= heard_s * SR


@pytest.mark.parametrize("raw", [[], ["--raw-format", "s16le", "--rate", str(SR), "--channels", "2"]])
def test_an_empty_stream_is_said_to_be_empty(raw):
    """Nothing on stdin was "not a decodable audio stream (Invalid data found when
    processing input)"."""
    result = runner.invoke(app, ["analyze", "-", "--json", "--no-store", *raw], input=b"")
    assert result.exit_code == 3
    [row] = _lines(result.stdout.encode())
    assert row["status"] == "error" and row["error"] == "the stream was empty: no bytes came on stdin"


@pytest.mark.parametrize("kind", ["raw", "wav"])
def test_kill_9_during_a_followed_stream_keeps_what_was_heard(tmp_path, song, kind):
    """A WAV stream's snapshots came late or never: FFmpeg read 4.6 s of it before
    opening it, and 131,072 decoded frames (5.9 s here) were held for a full block."""
    store = tmp_path / "s"
    raw = ["--raw-format", "s16le", "--rate", str(SR), "--channels", "2"] if kind == "raw" else []
    process = subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(store), "analyze", "-", "--json",
                                "--every", "2", "--name", "live", *raw], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, bufsize=0)  # unbuffered: select() sees every line
    audio = synth.music_like(30.0, SR, seed=7)
    pcm = (audio * 32767).astype("<i2").tobytes() if kind == "raw" else _stream_bytes("wav", audio)[0]
    second = SR * 4  # bytes per second of s16 stereo
    seen = []
    for start in range(0, len(pcm), second // 2):  # a live source: half a second at a time
        process.stdin.write(pcm[start:start + second // 2])
        process.stdin.flush()
        if start >= 5 * second:
            break
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 1.0)[0]:
            seen.append(json.loads(process.stdout.readline()))
    os.kill(process.pid, signal.SIGKILL)  # at once: a snapshot is stored before its line is printed
    process.wait(30)
    assert [r["seconds"] for r in seen] == pytest.approx([2.0, 4.0])
    with FingerprintStore.open(store) as s:
        [record] = list(s.records())
    assert record.path == "stream:live" and not record.complete and record.streaming.seconds >= 4.0


def test_previews_upgrade_and_extend_from_the_cli(tmp_path):
    library = tmp_path / "lib"
    library.mkdir()
    for i in range(3):
        write(library / f"t{i}.flac", synth.music_like(10.0, SR, seed=i), SR)
    store = ["--store", str(tmp_path / "s")]
    first = runner.invoke(app, [*store, "analyze", str(library), "--seconds", "3", "--json"])
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["complete"], r["seconds"]) for r in rows] == [(False, pytest.approx(3.0))] * 3
    assert all(r["duration_s"] == pytest.approx(10.0) for r in rows)  # the track's length, not the preview's
    listed = runner.invoke(app, [*store, "cache", "list", "--previews", "--json"]).stdout.splitlines()
    assert len(listed) == 3
    again = runner.invoke(app, [*store, "analyze", str(library), "--seconds", "2", "--json"])
    assert all(json.loads(line)["cached"] for line in again.stdout.splitlines())  # 3 s serve a 2 s request
    write(library / "new.flac", synth.music_like(10.0, SR, seed=9), SR)
    upgrade = runner.invoke(app, [*store, "analyze", str(library), "--upgrade", "--json"])
    rows = {os.path.basename(json.loads(line)["path"]): json.loads(line) for line in upgrade.stdout.splitlines()}
    assert set(rows) == {"t0.flac", "t1.flac", "t2.flac"} and all(r["complete"] for r in rows.values())
    assert "1 without a preview to finish (new, or changed since)" in upgrade.stderr
    assert runner.invoke(app, [*store, "cache", "list", "--previews", "--json"]).stdout == ""


def test_a_preview_is_never_served_to_a_full_request(tmp_path):
    track = write(tmp_path / "t.flac", synth.music_like(8.0, SR, seed=3), SR)
    with FingerprintStore.open(tmp_path / "s") as store:
        preview = fingerprint_of(store, track, Want(seconds=2.0))
        full = fingerprint_of(store, track)
    assert not preview.streaming.complete and full.streaming.complete and not full.cached


def test_the_player_api(tmp_path):
    audio = synth.music_like(6.0, SR, seed=8)
    live = LiveFingerprint(SR, 2, expected_seconds=6.0)
    confidences = []
    for start in range(0, len(audio), 4096):  # an audio callback's blocks, as int16
        live.push((audio[start:start + 4096] * 32767).astype(np.int16))
        if start % (SR * 2) < 4096:
            confidences.append(live.snapshot().confidence["spectral_centroid_hz"])
    assert live.seconds == pytest.approx(6.0)
    assert confidences == sorted(confidences) and not live.snapshot().complete
    with FingerprintStore.open(tmp_path / "s") as store:
        partial = live.save(store, "player")
        assert not partial.complete
        live.finish()
        final = live.save(store, "player")
        assert final.complete and [r.path for r in store.records()] == ["stream:player"]


@pytest.fixture
def searchable(tmp_path):
    library = tmp_path / "lib"
    library.mkdir()
    for i in range(6):
        write(library / f"t{i}.flac", synth.music_like(8.0, SR, seed=20 + i, bpm=80 + 15 * i), SR)
    store = tmp_path / "s"
    assert runner.invoke(app, ["--store", str(store), "analyze", str(library), "--quiet"]).exit_code == 0
    return library, store


def test_search_with_a_preview_query(searchable, tmp_path):
    from fpcli.search import search

    library, store_dir = searchable
    query = write(tmp_path / "query.flac", synth.music_like(8.0, SR, seed=99, bpm=100), SR)
    with FingerprintStore.open(store_dir) as store:
        result = search(store, query, k=3, seconds=2.0)
        assert result.strategy == "fast" and "partial query" in result.reason
        assert not result.stats["query_complete"] and result.stats["query_seconds"] == pytest.approx(2.0)
        assert len(result.hits) == 3
        full = search(store, query, k=3)
        assert full.stats["query_complete"]


def test_search_a_stream_on_stdin(searchable, tmp_path):
    library, store_dir = searchable
    query = write(tmp_path / "query.wav", synth.music_like(8.0, SR, seed=98, bpm=110), SR)
    run = _fpcli(store_dir, "search", "-", "--seconds", "3", "-k", "4", "--json", stdin=open(query, "rb").read())
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert len(data["hits"]) == 4 and data["stats"]["query_seconds"] == pytest.approx(3.0)
    assert not data["stats"]["query_complete"]
    human = _fpcli(store_dir, "search", "-", "--seconds", "3", stdin=open(query, "rb").read())
    assert human.returncode == 0 and b"a partial query: 3 s heard" in human.stderr


def test_a_long_query_stream_says_it_is_still_read(searchable, monkeypatch):
    """A live stream piped into `search -` may never end: the search waited for it
    without a word. Read for longer than a file piped in takes, it says so once (here
    at once: the wait is set to 0), with the way to search by its first seconds."""
    from fpcli.cli import search_cmd

    library, store_dir = searchable
    monkeypatch.setattr(search_cmd, "SLOW_QUERY_S", 0.0)
    audio = np.tile(sf.read(library / "t1.flac", dtype="float32")[0], (40, 1))   # about 80 s
    run = runner.invoke(app, ["--store", str(store_dir), "search", "-", "-k", "2"],
                        input=_stream_bytes("wav", audio)[0])
    assert run.exit_code == 0, run.output
    said = [line for line in run.stderr.splitlines() if "still reading" in line]
    assert said == ["30 s of the query stream heard, still reading: the search starts at its end (--seconds N "
                    "searches by its first N s)"]
    short = runner.invoke(app, ["--store", str(store_dir), "search", "-", "-k", "2", "--seconds", "40"],
                          input=_stream_bytes("wav", audio)[0])
    assert short.exit_code == 0 and "still reading" not in short.stderr   # it ends where asked


def test_a_stream_query_whose_header_states_its_length_leaves_its_recording_out(searchable, tmp_path):
    """A WAV stream query (README: "leaves its own recording out of the hits when its
    header states its length") listed its own recording: a WAV's data size was not
    taken as a stated length."""
    library, store_dir = searchable
    own = sf.read(library / "t1.flac", dtype="float32")[0]
    run = runner.invoke(app, ["--store", str(store_dir), "search", "-", "--seconds", "6", "-k", "3", "--json"],
                        input=_stream_bytes("wav", own)[0])
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert len(data["hits"]) == 3 and str(library / "t1.flac") not in [hit["path"] for hit in data["hits"]]
    assert not data["stats"].get("probably_the_query")


class _SwallowingDecoder:
    """An AudioReader stand-in whose decoder swallows a Ctrl-C, as PyAV's read callback
    can: two blocks, then SIGINT arrives while it reads, and the stream just ends."""

    def __init__(self):
        from fpcli.audio.base import AudioInfo

        self.info = AudioInfo("-", "FLAC", "FLAC", SR, 2, 0)
        self.expected_frames, self.partial, self.partial_reason = 0, False, None
        self.stated_seconds = None

    def stop(self):
        pass

    def heard(self, frames):
        pass

    def __iter__(self):
        audio = synth.music_like(4.0, SR, seed=2)
        yield audio[:SR]
        yield audio[SR:2 * SR]
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)   # the handler runs here
        except KeyboardInterrupt as exc:   # swallowed, reported as Cython does: the stream just ends
            sys.unraisablehook(types.SimpleNamespace(exc_type=KeyboardInterrupt, exc_value=exc,
                                                     exc_traceback=exc.__traceback__, err_msg=None, object=None))


def test_an_interrupt_a_decoder_swallows_still_interrupts_and_keeps_a_partial(monkeypatch):
    """Seen once in 40 Ctrl-Cs of a piped stream: PyAV printed "Exception ignored" and
    the stream ended early, and 267 s of a 327 s track were stored as the whole track."""
    from fpcli.live import follow

    kept, reported = [], []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)   # what would print "Exception ignored"
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            follow(_SwallowingDecoder(), "stream:test", keep=kept.append)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored
    finally:
        signal.signal(signal.SIGINT, handler)
    assert [result.streaming.complete for result in kept] == [False]
    assert kept[0].streaming.seconds == pytest.approx(2.0)
    assert reported == []   # the swallowed interrupt is not reported as "Exception ignored in: ..."


def _stalling_pipe(data: bytes, stall_s: float, on_silence):
    """A pipe that delivers ``data``, then falls silent for ``stall_s`` before it ends,
    as a radio stream does when the network stalls; ``on_silence()`` is called 0.6 s
    into the silence, when the reader has long decoded all and waits for more."""
    read_end, write_end = os.pipe()

    def produce() -> None:
        os.write(write_end, data)
        time.sleep(0.6)
        on_silence()
        time.sleep(stall_s)
        os.close(write_end)

    threading.Thread(target=produce, daemon=True).start()
    return os.fdopen(read_end, "rb")


def _stream_bytes(kind: str, audio: np.ndarray) -> tuple[bytes, dict]:
    """``audio`` as a stream of ``kind`` and the options ``open_stream`` needs for it."""
    if kind == "raw":
        return (audio * 32767).astype("<i2").tobytes(), {"raw_format": "s16le", "samplerate": SR, "channels": 1}
    buffer = io.BytesIO()
    sf.write(buffer, audio, SR, format=kind.upper(), subtype="PCM_16")
    return buffer.getvalue(), {}


@pytest.mark.parametrize("kind", ["flac", "wav", "raw"])
def test_ctrl_c_ends_a_silent_stream_at_once_and_keeps_what_was_heard(kind, capfd):
    """Ctrl-C while a stream's decoder waited on stdin printed a traceback (raised in
    PyAV's read callback, which swallowed it) and was ignored until the stream ended;
    the whole stream was then stored. Now it ends the reading within a fraction of a
    second, even while no byte comes, and keeps the seconds heard as a preview."""
    from fpcli.audio import open_stream
    from fpcli.live import follow

    # 6 s, all sent before the silence (FFmpeg once read 4.6 s of a WAV before opening it)
    data, raw = _stream_bytes(kind, synth.music_like(6.0, SR, seed=3, stereo=False) * 0.5)
    sent = []

    def interrupt() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    kept, shown = [], []
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reader = open_stream(_stalling_pipe(data, stall_s=3.0, on_silence=interrupt), block_frames=4096, **raw)
        with pytest.raises(KeyboardInterrupt):
            follow(reader, "stream:radio", every_s=1.0, keep=kept.append, on_snapshot=shown.append)
        waited = time.monotonic() - sent[0]
    finally:
        signal.signal(signal.SIGINT, handler)
    assert waited < 1.0
    assert "Traceback" not in capfd.readouterr().err
    assert not kept[-1].streaming.complete and kept[-1].status == "ok"
    assert kept[-1].duration_s == pytest.approx(6.0)   # all that came before the Ctrl-C
    # The last second stored is shown too: its line waited for more audio, and was lost.
    assert shown[-1].streaming.seconds == kept[-1].streaming.seconds


def test_a_program_s_own_interrupt_handler_is_kept_and_still_ends_a_stream():
    """A player's own SIGINT handler is left in place; the KeyboardInterrupt it raises
    inside the decoder's read ends the stream, and is raised again after it."""
    from fpcli.audio import open_stream
    from fpcli.live import follow

    def players_handler(signum, frame):
        raise KeyboardInterrupt

    data, _ = _stream_bytes("flac", synth.music_like(6.0, SR, seed=3, stereo=False) * 0.5)
    kept, sent = [], []
    handler = signal.signal(signal.SIGINT, players_handler)
    try:
        pipe = _stalling_pipe(data, stall_s=3.0, on_silence=lambda: sent.append(os.kill(os.getpid(), signal.SIGINT)
                                                                                or time.monotonic()))
        with pytest.raises(KeyboardInterrupt):
            follow(open_stream(pipe), "stream:radio", keep=kept.append)
        waited = time.monotonic() - sent[0]
        assert signal.getsignal(signal.SIGINT) is players_handler
    finally:
        signal.signal(signal.SIGINT, handler)
    assert waited < 1.0
    assert not kept[-1].streaming.complete and kept[-1].duration_s == pytest.approx(6.0)


def test_ctrl_c_before_any_audio_stores_nothing():
    """A stream interrupted before its first byte was stored as a 0 s preview."""
    from fpcli.audio import open_stream
    from fpcli.live import follow

    kept = []
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        pipe = _stalling_pipe(b"", stall_s=3.0, on_silence=lambda: os.kill(os.getpid(), signal.SIGINT))
        reader = open_stream(pipe, raw_format="s16le", samplerate=SR, channels=2)
        with pytest.raises(KeyboardInterrupt):
            follow(reader, "stream:radio", keep=kept.append)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert kept == []


def test_ctrl_c_after_less_than_a_frame_stores_nothing():
    """A stream interrupted after a few milliseconds of audio (a header and a first
    block) was stored as a 0.003 s preview with nothing measured."""
    from fpcli.audio import open_stream
    from fpcli.live import follow

    few_ms = (synth.music_like(0.003, SR, seed=3, stereo=True) * 0.5 * 32767).astype("<i2").tobytes()
    kept = []
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        pipe = _stalling_pipe(few_ms, stall_s=3.0, on_silence=lambda: os.kill(os.getpid(), signal.SIGINT))
        reader = open_stream(pipe, raw_format="s16le", samplerate=SR, channels=2, block_frames=64)
        with pytest.raises(KeyboardInterrupt):
            follow(reader, "stream:radio", keep=kept.append)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert kept == []


def test_cache_show_finds_a_named_stream(tmp_path, song):
    """`cache list` shows a named stream as stream:NAME; `cache show stream:NAME` said
    "no such file or folder"."""
    store = tmp_path / "s"
    assert _fpcli(store, "analyze", "-", "--name", "radio", stdin=open(song, "rb").read()).returncode == 0
    shown = _fpcli(store, "cache", "show", "stream:radio", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["paths"][0]["path"] == "stream:radio"
    missing = _fpcli(store, "cache", "show", "stream:tv")
    assert missing.returncode == 3 and b"fpcli analyze - --name NAME" in missing.stderr   # an input that failed
    unnamed = _fpcli(store, "cache", "show", "stream:")   # was "--name '': ...", an option cache show has not
    assert unnamed.returncode == 3 and b"stream:: not in the store" in unnamed.stderr


def test_a_named_stream_that_fails_is_named_as_its_results_are(tmp_path):
    """A named stream of garbage was reported as "path": "-", where its results are
    "stream:NAME"."""
    import json

    run = _fpcli(tmp_path / "s", "analyze", "-", "--name", "radio", "--json", stdin=b"garbage, not audio" * 300)
    assert run.returncode == 3 and json.loads(run.stdout)["path"] == "stream:radio", run.stdout


def test_a_name_holds_its_latest_stream_even_an_interrupted_one(tmp_path, song):
    """A new stream of a name is other audio: its snapshots (here: the first 2 s) were
    dropped for the name's earlier complete stream, so an interrupted stream kept
    nothing of what it heard."""
    store = tmp_path / "s"
    assert _fpcli(store, "analyze", "-", "--name", "radio", stdin=open(song, "rb").read()).returncode == 0
    other = write(tmp_path / "other.wav", synth.music_like(6.0, SR, seed=9, bpm=140), SR)
    assert _fpcli(store, "analyze", "-", "--name", "radio", "--seconds", "2",
                  stdin=open(other, "rb").read()).returncode == 0
    shown = json.loads(_fpcli(store, "cache", "show", "stream:radio", "--json").stdout)
    assert not shown["complete"] and shown["streaming"]["seconds"] == pytest.approx(2.0)


PCM = synth.music_like(4.0, SR, seed=11)
PCM = 0.9 * PCM / np.abs(PCM).max()


def _live_values(block):
    live = LiveFingerprint(SR, 2)
    live.push(block)
    return live.finish().values


@pytest.mark.parametrize("dtype,full_scale", [(np.int16, 2**15), (np.int32, 2**31), (">i2", 2**15), (">i4", 2**31)])
def test_signed_integer_pcm_is_scaled_by_its_full_scale(dtype, full_scale):
    """int32 was taken as floats 2**31 times full scale (transient_density 7.25 instead
    of 3.88, the loudness dims null); big-endian int16 was refused as not int16."""
    from_float = _live_values(PCM)
    from_pcm = _live_values(np.round(PCM * (full_scale - 1)).astype(dtype))
    for name, value in from_float.items():
        assert from_pcm[name] == pytest.approx(value, rel=2e-3, abs=2e-3), name


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int8, np.int64])
def test_integer_types_of_unknown_scale_are_refused(dtype):
    """uint8 was taken as floats up to 255 (centroid 295 Hz instead of 495)."""
    from fpcli.errors import ParameterError

    with pytest.raises(ParameterError, match=f"samples of type {np.dtype(dtype)}"):
        LiveFingerprint(SR, 2).push((PCM * 100).astype(dtype))


def test_a_block_without_frames_or_a_bad_length_is_a_parameter_error():
    """A 0-d block gave an IndexError; a NaN or infinite length a ValueError or an
    OverflowError."""
    from fpcli.errors import ParameterError

    with pytest.raises(ParameterError, match=r"shape \(\)"):
        LiveFingerprint(SR, 2).push(np.float32(0.5))
    for length in (float("nan"), -1.0, "6"):
        with pytest.raises(ParameterError, match="expected_seconds"):
            LiveFingerprint(SR, 2, expected_seconds=length)
    unknown = LiveFingerprint(SR, 2, expected_seconds=float("inf"))
    beyond_counting = LiveFingerprint(SR, 2, expected_seconds=1e308)   # finite, its frames not (OverflowError)
    known = LiveFingerprint(SR, 2, expected_seconds=4.0)
    for live in (unknown, beyond_counting, known):
        live.push(PCM[: 2 * SR])
    assert known.snapshot().confidence != unknown.snapshot().confidence   # the share heard counts only when known
    assert beyond_counting.snapshot().confidence == unknown.snapshot().confidence


@pytest.mark.parametrize("seconds,block_frames,complete", [
    (4.0, 2**17, True),      # the limit is the file's end: all of it was heard
    (4.5, 2**17, False),     # half a second more: a preview
    (4.5, SR, False),        # the limit falls on a block's end, with more after it
])
def test_a_followed_file_ending_at_the_limit_is_complete(tmp_path, seconds, block_frames, complete):
    """A file exactly as long as the limit was stored as a preview of itself."""
    from fpcli.audio import AudioReader
    from fpcli.live import follow

    path = write(tmp_path / "track.wav", synth.music_like(seconds, SR, seed=12), SR)
    result = follow(AudioReader(path, block_frames=block_frames), path, max_seconds=4.0)
    assert result.streaming.complete is complete and result.streaming.seconds == pytest.approx(4.0)


def test_a_stream_stopped_at_the_limit_stays_a_preview_without_waiting():
    """A stream is not read past the limit to see whether it ends there: its next
    block may be long in coming."""
    from fpcli.audio import open_stream
    from fpcli.live import follow

    pcm = (PCM * 32767).astype("<i2").tobytes()
    pipe = _stalling_pipe(pcm, stall_s=3.0, on_silence=lambda: None)
    reader = open_stream(pipe, raw_format="s16le", samplerate=SR, channels=2, block_frames=SR)
    started = time.monotonic()
    result = follow(reader, "stream:radio", max_seconds=4.0)
    assert not result.streaming.complete and result.streaming.seconds == pytest.approx(4.0)
    assert time.monotonic() - started < 3.0   # the pipe stays open for 3.6 s


def test_a_pipe_holding_part_of_a_packet_counts_as_no_input_yet():
    """A pipe with a few bytes waiting said "more input": the audio decoded so far was
    held while the decoder blocked in a read for the rest of a packet, and a snapshot
    due at 4 s of 5.5 s sent never came (a kill -9 test failed now and then)."""
    from fpcli.audio.base import StoppablePipe

    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb", buffering=0) as writer:
        pipe = StoppablePipe(reader)
        assert not pipe.has_input()                       # nothing yet
        writer.write(b"x" * 100)
        assert not pipe.has_input()                       # less than a packet: hand on what is decoded
        writer.write(b"x" * (StoppablePipe.PACKET_BYTES - 100))   # (a pipe holds 64 KiB)
        assert pipe.has_input()                           # a packet's worth: a read will not wait
        assert len(pipe.read(1 << 20)) > 0
        writer.close()
        while pipe.read(1 << 20):
            pass
        assert pipe.has_input()                           # the end: a read returns at once


def _written_while_followed(monkeypatch, track, stop_after_s=None):
    """`analyze TRACK --every` made to follow a file a recorder appends to once more
    than 2.5 s were heard (its WAV header left behind), and, with ``stop_after_s``,
    interrupted (a Ctrl-C) once more than that was heard."""
    import fpcli.live

    real_follow = fpcli.live.follow

    def follow_while_written(reader, label, **options):
        keep = options["keep"]

        def keep_while_written(result):
            if result.streaming.seconds > 2.5:
                with open(track, "ab") as handle:
                    handle.write(b"\0" * 4410)
            keep(result)
            if stop_after_s is not None and result.streaming.seconds > stop_after_s:
                raise KeyboardInterrupt
        return real_follow(reader, label, **{**options, "keep": keep_while_written})

    monkeypatch.setattr(fpcli.live, "follow", follow_while_written)


def test_a_file_written_while_followed_is_not_stored(tmp_path, monkeypatch):
    """`analyze FILE --every N` on a file still being written ended at the audio there
    was, said it complete, and stored it under the digest of what the file held at the
    start (`cache list` showed it, `cache show` of the file found nothing). As a run
    over files does, it now says the file changed while it was analysed, exit 3, and
    stores nothing from then on."""
    track = write(tmp_path / "rec.wav", synth.music_like(6.0, 22050, seed=4), 22050)
    _written_while_followed(monkeypatch, track)
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "analyze", str(track), "--every", "2",
                                      "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 3, result.output
    assert lines[-1]["error_type"] == "ChangedWhileRead" and lines[-1]["path"] == str(track)
    with FingerprintStore.open(tmp_path / "s") as store:
        assert [r.streaming.seconds for r in store.records()] == [2.0]   # the snapshot before it: a preview
        assert not next(iter(store.records())).complete


def test_an_interrupt_after_the_followed_file_changed_says_so(tmp_path, monkeypatch):
    """It said "what was heard is stored" of a file whose snapshots after its change
    were not stored."""
    track = write(tmp_path / "rec.wav", synth.music_like(8.0, 22050, seed=4), 22050)
    _written_while_followed(monkeypatch, track, stop_after_s=4.5)
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "analyze", str(track), "--every", "2"])
    assert result.exit_code == 130, result.output
    said = " ".join(result.stderr.split())
    assert "interrupted: the file was changed while it was analysed" in said and "what was heard before is stored" \
        in said, said


def test_a_name_given_with_its_stream_prefix_is_that_name(tmp_path, song):
    """`--name stream:x` was stored as stream:stream:x, and `cache show stream:x`, what
    the hint says to run, never found it."""
    store = tmp_path / "s"
    assert _fpcli(store, "analyze", "-", "--name", "stream:x", stdin=open(song, "rb").read()).returncode == 0
    listed = _fpcli(store, "cache", "list").stdout.decode()
    assert "stream:x\t" in listed and "stream:stream:" not in listed
    assert _fpcli(store, "cache", "show", "stream:x").returncode == 0


def test_a_raw_stream_that_ends_inside_a_frame_is_partial():
    """Its leftover bytes were dropped and the stream called "ok"; so was a stream read
    with another channel count than its own."""
    import io

    from fpcli.audio import open_stream

    pcm = (np.zeros((4410, 2), np.int16)).tobytes()
    for data, channels, partial in ((pcm, 2, False), (pcm[:-1], 2, True), (pcm, 11, True)):   # 17,640 bytes
        reader = open_stream(io.BytesIO(data), raw_format="s16le", samplerate=44100, channels=channels)
        list(reader)
        assert reader.partial == partial, (len(data), channels)
        if partial:
            assert "the stream ended inside a frame" in reader.partial_reason


def test_a_stream_query_with_a_header_and_no_audio_is_a_query_error(searchable):
    """A WAV stream of a header alone failed as a fault of fpcli (exit 1), and --json
    printed nothing: an empty stdin or one of garbage is a query that cannot be
    analysed (exit 3), with the reason in the JSON."""
    _, store_dir = searchable
    run = runner.invoke(app, ["--store", str(store_dir), "search", "-", "-k", "2", "--json"],
                        input=_stream_bytes("wav", np.zeros((0, 2), dtype=np.float32))[0])
    from fpcli.errors import QueryError

    assert isinstance(run.exception, QueryError), run.output   # exit 3 (``fpcli.cli.main``)
    data = json.loads(run.stdout)
    assert data["hits"] == [] and data["error"] == "cannot read the query stream: no audio frames could be decoded"
