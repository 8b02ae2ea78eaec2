# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit integration bench chaos clean

setup: $(STAMP)

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

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

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
