"""Shared fixtures: a seeded rng, helpers that run analyzers over generated signals."""

from __future__ import annotations

import io
import os
import threading
from typing import Any, BinaryIO

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

from fpcli.batch import BatchAnalyzer
from fpcli.fingerprint import Fingerprint
from fpcli.streaming import StreamingAnalyzer

# CI runs a fixed set of Hypothesis examples (no flaky red builds); local runs explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def new_store(location) -> str:
    """An empty store made at ``location`` (what a first analyze or import makes): the
    read-only cache commands refuse a --store folder that holds none."""
    from fpcli.store import FingerprintStore

    with FingerprintStore.open(location):
        pass
    return str(location)


@pytest.fixture(autouse=True)
def private_store(tmp_path, monkeypatch):
    """No test touches the user's cache directory: the default store is per test."""
    location = tmp_path / "default-store"
    monkeypatch.setenv("FPCLI_STORE", str(location))
    return location


@pytest.fixture(params=["diskcache", "redis"])
def location(request, tmp_path):
    """A new store on each backend: a diskcache folder, or a flushed real Redis."""
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def template():
    """One real record (a generated track analysed by fpcli), for cloning into many."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import make_records  # benchmarks/make_records.py

    return make_records.template_record()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


def run_batch(x: np.ndarray, sr: int, chunk: int = 65536, **kwargs) -> Fingerprint:
    analyzer = BatchAnalyzer(sr, x.shape[1], **kwargs)
    for i in range(0, len(x), chunk):
        analyzer.push(x[i : i + chunk])
    return analyzer.finish()


def run_streaming(x: np.ndarray, sr: int, chunk: int = 65536, **kwargs) -> Fingerprint:
    analyzer = StreamingAnalyzer(sr, x.shape[1], **kwargs)
    for i in range(0, len(x), chunk):
        analyzer.push(x[i : i + chunk])
    return analyzer.finish()


def write(path, x: np.ndarray, sr: int, **kwargs) -> str:
    sf.write(str(path), x, sr, **kwargs)
    return str(path)


class RedisServer:
    """A real redis-server on a free loopback port, with append-only persistence so a
    restart keeps the data (as a production Redis would)."""

    def __init__(self, folder, password=None):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self):
        import subprocess
        import time

        import redis

        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--appendonly", "yes", "--save", "", "--maxmemory-policy", "volatile-lru"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            self.process.wait(10)

    def flush(self):
        import redis

        redis.Redis(port=self.port, password=self.password).flushall()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url


def pipe_carrying(data: bytes) -> BinaryIO:
    """A pipe (not seekable: stdin fed by a producer) that carries ``data``, then ends."""
    read_end, write_end = os.pipe()

    def produce() -> None:
        try:
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
        except BrokenPipeError:   # the reader stopped early (a stream that changes format): as a producer sees it
            pass

    threading.Thread(target=produce, daemon=True).start()
    return os.fdopen(read_end, "rb")


def read_stream(data: bytes, how: str):
    """(reader, all its samples) of ``data`` read as stdin is: through a pipe, or a
    redirected file (seekable)."""
    from fpcli.audio import open_stream

    reader = open_stream(pipe_carrying(data) if how == "pipe" else io.BytesIO(data), block_frames=4096)
    return reader, np.concatenate(list(reader))


class PipeSink:
    """A pipe as a streaming encoder sees it: written in order, never seeked back (a
    WAV's sizes stay placeholders, a FLAC's total samples 0)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data) -> int:
        self.data += bytes(data)
        return len(data)

    def seekable(self) -> bool:
        return False


def av_encoded(pcm: np.ndarray, sr: int, container: str, codec: str, sink: Any) -> bytes:
    """(n, 2) int16 samples encoded by FFmpeg (PyAV) into ``sink``: a ``PipeSink``, or a
    seekable one (io.BytesIO), which gets the sizes filled in."""
    import av

    with av.open(sink, "w", format=container) as out:
        stream: Any = out.add_stream(codec, rate=sr, layout="stereo")
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[start : start + 1024].reshape(1, -1), format="s16",
                                               layout="stereo")
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(sink.data) if isinstance(sink, PipeSink) else sink.getvalue()
