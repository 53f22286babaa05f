# Two commands for a newcomer: `make demo` and `make test`. Each creates the virtual environment
# from the pinned requirements the first time (about a minute and 3 GB of disk).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
TESTTOOLS := $(VENV)/.test-installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint format venv clean

$(RUNTIME): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(TESTTOOLS): $(RUNTIME) requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

venv: $(RUNTIME)

## demo: generate the synthetic demo dataset, train and evaluate on it, print the results table
demo: $(RUNTIME)
	$(PY) -m src.data.synthetic --root demo_data
	$(PY) train.py --config configs/demo.yaml
	$(PY) eval.py --config configs/demo.yaml

## test: lint, then the whole test suite including the slow end-to-end tests
test: $(TESTTOOLS)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

## test-fast: the suite without the slow end-to-end tests
test-fast: $(TESTTOOLS)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(TESTTOOLS)
	$(PY) -m ruff check .

format: $(TESTTOOLS)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf demo_data outputs .pytest_cache .ruff_cache rank_0
