# fsnas developer targets. Each target creates .venv when missing and installs the project.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.fsnas-installed
# torch 2.14.1 (CUDA build) and torchaudio 2.11.0 are the pair that load together here.
TORCH_PINS := torch==2.14.1 torchaudio==2.11.0

.PHONY: setup demo test test-fast bench lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fsnas demo

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check search_spaces trainers nas dashboards tests benchmarks
	$(VENV)/bin/ruff format --check search_spaces trainers nas dashboards tests benchmarks
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix search_spaces trainers nas dashboards tests benchmarks
	$(VENV)/bin/ruff format search_spaces trainers nas dashboards tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
