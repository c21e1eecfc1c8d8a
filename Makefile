# rnnlab: every target bootstraps what it needs (virtualenv, Python packages, release builds).
#   make demo   — the main job
#   make test   — every test: cargo test, clippy, rustfmt, ruff, stub check, pytest
#   make bench  — pytest-benchmark comparisons (writes benches/RESULTS.md with `make bench-report`)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DEPS_STAMP := $(VENV)/.deps-installed
BUILD_STAMP := $(VENV)/.native-built
RUST_SOURCES := $(shell find rust waitress -name '*.rs' -o -name 'Cargo.toml' -o -name '*.json' 2>/dev/null) Cargo.toml pyproject.toml
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-rust lint test-python test-slow bench bench-report build venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# One cached step for all Python packages (torch included); redone only when the pins change.
$(DEPS_STAMP): requirements-dev.txt | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

venv: $(DEPS_STAMP)

# Release build of the extension into the venv, and of the waitress binary.
$(BUILD_STAMP): $(DEPS_STAMP) $(RUST_SOURCES)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin develop --release --quiet
	cargo build --release -p waitress
	touch $@

build: $(BUILD_STAMP)

demo: build
	$(BIN)/rnnlab demo

test-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	# the backward pass again with re-integration forced (no stored forward substeps)
	RNNLAB_BPTT_MEMORY_MB=0 cargo test -p rnnlab-core --test ctrnn_gradients

lint: $(DEPS_STAMP)
	$(BIN)/ruff check python tests benches examples
	$(BIN)/ruff format --check python tests benches examples

test-python: build
	$(PY) -m mypy.stubtest rnnlab._native
	$(PY) -m mypy
	$(PY) -m pytest

test: build test-rust lint test-python

test-slow: build
	$(PY) -m pytest -m slow

bench: build
	$(PY) -m pytest benches --benchmark-only --benchmark-columns=mean,stddev,rounds -p no:cacheprovider

bench-report: build
	$(PY) benches/report.py

clean:
	rm -rf $(VENV) target
