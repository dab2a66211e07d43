# borderlink: `make demo`, `make test`, `make bench`, `make lint`. Needs only python3 (3.11+), pip, make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BL     := $(VENV)/bin/borderlink

.PHONY: demo test bench lint typecheck vectors clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "borderlink needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict protocol keys

typecheck: lint

bench: $(VENV)/.installed-test
	$(PY) -m bench

vectors: $(VENV)/.installed
	$(PY) -m tests.vectors_gen
	$(PY) -m tests.schemas_gen

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
