# Two commands: `make lab` opens the notebooks, `make test` runs every test. Both bootstrap .venv first.
# `make docs` builds the course's website into docs/_build/html (`make docs-serve` serves it on localhost).
# Python 3.12 or 3.13: tools/find_python.sh picks one from PATH or pyenv. Override with `make PYTHON=/path/to/python`.
PYTHON ?= $(shell sh tools/find_python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test test-fast lint format bench notebooks docs docs-serve clean

# Re-install whenever the declared or locked dependencies change (or the venv is not Python 3.12 or 3.13).
$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "Python 3.12 or 3.13 not found: install one or pass PYTHON=/path/to/python"; exit 1; }
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13))' 2>/dev/null || \
		{ rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[test,lab,docs]"
	@touch $@

# Jupyter refuses to start as root (containers, CI) unless told it is intended.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check helpers tests benchmarks notebooks tools docs
	$(BIN)/ruff format --check helpers tests benchmarks notebooks tools docs

format: $(STAMP)
	$(BIN)/ruff check --fix helpers tests benchmarks notebooks tools docs
	$(BIN)/ruff format helpers tests benchmarks notebooks tools docs

# Every notebook runs twice under nbval, against the outputs stored from the default floating-point path: once
# on it, once on a second path (AVX without FMA: other kernels, other last bits, as on another CPU). On a
# non-x86 machine the second pass is skipped: the flag names an x86 instruction set.
NBVAL := -m pytest -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg notebooks
SECOND_PATH := XLA_FLAGS="$$XLA_FLAGS --xla_cpu_max_isa=AVX"

test: lint
	$(BIN)/python -m pytest tests $(ARGS)
	$(BIN)/python $(NBVAL)
	@if [ "$$(uname -m)" = x86_64 ]; then echo "$(SECOND_PATH) (second floating-point path)"; \
		$(SECOND_PATH) $(BIN)/python $(NBVAL); else echo "second floating-point pass skipped: not x86_64"; fi

# The inner loop: unit tests without the slow ones, the browser or the notebooks (under 2 minutes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" --ignore=tests/browser -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The website, from the stored notebooks as they are (nothing is executed); every warning is an error.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

DOCS_PORT ?= 8000
docs-serve: docs
	$(BIN)/python -m http.server $(DOCS_PORT) --bind 127.0.0.1 --directory docs/_build/html

# Re-execute every notebook from its jupytext twin (notebooks/source/*.py) and store the outputs.
notebooks: $(STAMP)
	$(BIN)/python tools/build_notebooks.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts docs/_build docs/notebooks
