# The README's two commands: `make demo` (install + main job) and `make test` (install + whole suite).
# VENV may point anywhere; CI uses a fresh one per run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/quickstart

.PHONY: demo test install install-test benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: install
	$(BIN)/jaxrec run --config configs/quickstart.py --workdir $(WORKDIR)

test: install-test
	$(BIN)/python -m pytest

benchmarks: install
	$(BIN)/python -m benchmarks.foundation
	$(BIN)/python -m benchmarks.raw_preprocess --naive
	$(BIN)/python -m benchmarks.sasrec_beauty
	$(BIN)/python -m benchmarks.sasrec_speed

clean:
	rm -rf $(VENV) runs .pytest_cache
