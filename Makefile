# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup tools demo test lint typecheck unit integration model bench chaos clean

setup: $(STAMP) tools

# The SPIN model checker and a C compiler, for the protocol model (model/, tests/model):
# Debian's packages, installed with apt-get when missing (as root, or with password-less sudo).
tools:
	@for pkg in spin gcc; do \
	  command -v $$pkg >/dev/null 2>&1 && continue; \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "$$pkg is missing and there is no apt-get: install $$pkg (the Debian package is spin 6.5.2)" >&2; exit 1; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq $$pkg || exit 1; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo apt-get install -y -qq $$pkg || exit 1; \
	  else \
	    echo "$$pkg is missing: run 'sudo apt-get install $$pkg' (or make tools as root)" >&2; exit 1; \
	  fi; \
	done

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/titan-exec demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) tools lint typecheck
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

# The hot-standby protocol model checked by SPIN (model/README.md), about 20-30 s.
model: $(STAMP) tools
	$(BIN)/pytest -q tests/model

bench: $(STAMP)
	$(BIN)/titan-exec bench

# Start-up time (newest snapshot + tail) with 10^4, 10^5 and 10^6 events of history.
.PHONY: bench-startup
bench-startup: $(STAMP)
	$(BIN)/titan-exec bench --startup --sizes 1e4,1e5,1e6 --rounds 3

# The long chaos run: every scenario RUNS times at the production lease (5 s), the report
# (tables and plots) in REPORT.
RUNS     ?= 20
REPORT   ?= docs/chaos
LEASE_MS ?= 5000
chaos: $(STAMP)
	$(BIN)/titan-exec chaos --runs $(RUNS) --lease-ms $(LEASE_MS) --report $(REPORT)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
