# fpcli developer and user entry points. Each target creates the virtual environment
# it needs (.venv, Python >= 3.11) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LIBRARY ?= /tmp/fpcli-library
# The demo never touches your own store (~/.cache/fpcli/store).
DEMO_STORE ?= .demo-store
DEV    := $(VENV)/.dev-installed


.PHONY: demo test lint system-deps bench bench-analyzers bench-jobs bench-store library clean

# The product alone (what a user installs) ...
$(BIN)/fpcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

# ... and the developer tools (pytest, pytest-xdist, hypothesis, ruff, mypy, dask) for test and lint.
$(DEV): $(BIN)/fpcli
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## demo: fingerprint the bundled sample_audio/ clips into a demo store (.demo-store, not
##       yours), twice (the second run answers from the store), show one stored
##       fingerprint and the store's statistics
demo: $(BIN)/fpcli
	FPCLI_STORE=$(DEMO_STORE) $(BIN)/fpcli analyze --batch sample_audio
	FPCLI_STORE=$(DEMO_STORE) $(BIN)/fpcli analyze --batch sample_audio
	FPCLI_STORE=$(DEMO_STORE) $(BIN)/fpcli cache show sample_audio/drums_120bpm.flac
	FPCLI_STORE=$(DEMO_STORE) $(BIN)/fpcli cache stats

## system-deps: Debian's redis-server, which the tests start (real, on a free loopback port)
system-deps:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
	  else echo "redis-server is needed by the tests: sudo apt-get install redis-server" >&2; exit 1; fi; }

## test: the whole test suite (generated signals; a few minutes at most), two pytest
##       processes per core (pytest-xdist; each starts its own redis-server): many tests
##       wait on subprocesses, servers and time limits, and one per core left the cores
##       idle a third of the time
test: $(DEV) system-deps
	$(BIN)/python -m pytest -n $$(( 2 * $$(nproc) ))

## lint: ruff (style, imports, the layering rule: typer/rich/tabulate only in fpcli/cli/) and mypy
lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy

## library: build the real-music library of shared/corpus (needs root for apt)
library:
	OUT=$(LIBRARY) PY=$(BIN)/python bash ../shared/corpus/make_library.sh

## bench: fpcli bench on the real-music library (tables, JSON and Markdown in benchmarks/)
bench: $(BIN)/fpcli
	$(BIN)/fpcli bench --library $(LIBRARY) --check --json benchmarks/bench.json --markdown benchmarks/bench.md

## bench-analyzers: per-file analyzer speed and streaming memory (60 vs 3 minutes)
bench-analyzers: $(BIN)/fpcli
	$(BIN)/python benchmarks/bench_analyzers.py --library $(LIBRARY) --out benchmarks/analyzers.md

## bench-jobs: wall time of `fpcli analyze LIBRARY` with --jobs 1 and 2 (fresh store each run)
bench-jobs: $(BIN)/fpcli
	$(BIN)/python benchmarks/bench_jobs.py --library $(LIBRARY) --out benchmarks/jobs.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis $(DEMO_STORE)

## bench-store: store lookup latency, warm runs over 10,000 tracks, cold vs warm
bench-store: $(BIN)/fpcli
	$(BIN)/python benchmarks/bench_store.py --library $(LIBRARY)
