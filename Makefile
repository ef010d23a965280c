# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
#
# The venv prefers Debian's /usr/bin/python3.11: it is built with PGO and LTO and runs the
# per-event path about 1.5-2x faster than a plain source build (measured: README, Performance).
PY ?= $(shell for p in /usr/bin/python3.11 /usr/bin/python3.12 python3.11 python3.12; do \
        command -v $$p >/dev/null 2>&1 && \
        $$p -c 'import sys, venv; assert (3, 11) <= sys.version_info[:2] < (3, 13)' 2>/dev/null && \
        echo $$p && break; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install compile pure demo test test-fast lint bench fuzz chaos clean docs

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "need Python 3.11 or 3.12 (apt-get install python3.11-venv)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# The per-event path compiled with mypyc (nudge/tools/native.py): the same code, about 1.5x
# faster in the shard. A no-op when current. Without a C compiler the demo and the benchmark run pure.
NATIVE = $(BIN)/python -m nudge.tools.native build || echo "nudge: not compiled (needs gcc and the Python headers): running pure Python"

compile: install
	$(BIN)/python -m nudge.tools.native build

pure: install
	$(BIN)/python -m nudge.tools.native remove

demo: install
	@$(NATIVE)
	$(BIN)/nudge demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Unit tests and doctests on pure Python first, then the whole suite on the compiled build.
test: install lint
	$(BIN)/python -m nudge.tools.native remove
	$(BIN)/python -m pytest -q -m "not slow and not broker"
	$(BIN)/python -m nudge.tools.native build
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not broker"

# docs/configuration.md from the config's declarations (a test fails when it is not current)
docs: install
	$(BIN)/python -m nudge.tools.configdoc --write

bench: install
	@$(NATIVE)
	$(BIN)/python -m nudge.tools.bench

clean:
	rm -rf var build .pytest_cache .mypy_cache .ruff_cache
	-$(BIN)/python -m nudge.tools.native remove

fuzz: install
	@$(NATIVE)
	$(BIN)/python -m tests.fuzz --n 100000

chaos: install
	@$(NATIVE)
	$(BIN)/python -m tests.chaos --events 200000 --kills 20
