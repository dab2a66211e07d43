# borderlink: `make demo`, `make test`, `make bench`, `make lint`, `make lock`.
# Needs only python3 (3.11+), pip and make. Every install comes from the lock in requirements/
# (pinned versions with hashes, transitive and build dependencies included): see scripts/lock.py.
# pip runs with -qq (errors only) so that a machine's pip configuration warnings do not bury output.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := PIP_DISABLE_PIP_VERSION_CHECK=1 $(PY) -m pip
# --only-binary: an sdist would be built with build requirements fetched unpinned.
LOCKED := $(PIP) install -qq --require-hashes --no-deps --only-binary :all:
# The project itself: no dependency resolution, no index, build requirements from the lock.
SELF   := $(PIP) install -qq --no-deps --no-index --no-build-isolation -e .

.PHONY: demo test bench lint typecheck vectors lock check-lock install clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "borderlink needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

check-lock:
	@$(PYTHON) scripts/lock.py --check

$(VENV)/.installed: pyproject.toml requirements/runtime.txt | $(PY)
	@$(PYTHON) scripts/lock.py --check
	$(LOCKED) -r requirements/runtime.txt
	$(SELF)
	@$(PIP) check -q >/dev/null || { $(PIP) check; echo "the lock is incomplete: run 'make lock'"; exit 1; }
	@touch $@

$(VENV)/.installed-test: pyproject.toml requirements/test.txt | $(PY)
	@$(PYTHON) scripts/lock.py --check
	$(LOCKED) -r requirements/test.txt
	$(SELF)
	@$(PIP) check -q >/dev/null || { $(PIP) check; echo "the lock is incomplete: run 'make lock'"; exit 1; }
	@touch $@ $(VENV)/.installed

# `make install` then `export PATH="$PWD/.venv/bin:$PATH"` puts `borderlink` on the PATH.
install: $(VENV)/.installed
	@echo 'borderlink is installed in $(CURDIR)/$(VENV)/bin; to use it in this shell:'
	@echo '  export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"'

demo: $(VENV)/.installed
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" BORDERLINK_BIN="$(CURDIR)/$(VENV)/bin" bash scripts/demo.sh

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2 --durations=10

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy --strict protocol keys node cli

typecheck: lint

bench: $(VENV)/.installed-test
	$(PY) -m bench

vectors: $(VENV)/.installed
	$(PY) -m tests.vectors_gen
	$(PY) -m tests.key_vectors_gen
	$(PY) -m tests.flow_vectors_gen
	$(PY) -m tests.schemas_gen

# Refresh the lock after changing dependencies in pyproject.toml (UPGRADE=1 moves every pin to
# the newest allowed release); uv comes pinned, with hashes, from requirements/tools.txt.
lock: | $(PY)
	$(LOCKED) -r requirements/tools.txt
	$(PY) scripts/lock.py --uv $(VENV)/bin/uv $(if $(UPGRADE),--upgrade)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
