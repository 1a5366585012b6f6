"""Shared fixtures: a seeded rng, helpers that run analyzers over generated signals."""

from __future__ import annotations

import os

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


@pytest.fixture(autouse=True)
def private_store(tmp_path, monkeypatch):
    """No test touches the user's cache directory: the default store is per test."""
    location = tmp_path / "default-store"
    monkeypatch.setenv("FPCLI_STORE", str(location))
    return location


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
