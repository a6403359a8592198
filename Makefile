# bitswarm — the two commands: `make demo` and `make test`. Each installs what it needs.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint typecheck bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m bitswarm demo

test: setup
	$(PY) -m ruff check src tests $(wildcard bench)
	$(PY) -m mypy src
	$(PY) -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -rs -m "not slow and not interop and not netns" $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check src tests $(wildcard bench)
	$(PY) -m mypy src

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
