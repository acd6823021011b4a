# The two commands a fresh machine needs (Python 3.11+ and pip, nothing else):
#   make demo   - the local stack, a worker, a bridge and the YOLO edge on a sample scene
#   make test   - lint, type checks and the whole test suite on real local servers
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch and torchvision first, at the versions whose wheels this machine has on disk (a bare
# `torch` would pull a multi-GB CUDA build).
TORCH ?= torch==2.14.1 torchvision==0.29.1

$(VENV)/.installed-local: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[local,detect]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-local

.PHONY: demo test lint install chaos bench
install: $(VENV)/.installed-local

demo: $(VENV)/.installed-local
	$(BIN)/riskflow demo $(DEMO_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

# The full-size chaos suite (CI runs the short sizes inside `make test`), and every benchmark.
chaos: $(VENV)/.installed-test
	RISKFLOW_CHAOS=full $(BIN)/python -m pytest tests/chaos -s

bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench
