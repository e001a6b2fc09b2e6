# make run   — the local stack: Temporal dev server (UI http://localhost:8233), SQLite, file outbox, worker
# make test  — the test suite, then mypy and ruff (PostgreSQL too where TEST_DATABASE_URL is set)
# make clean — deletes var/: the local database, the email outbox and the Temporal dev server's DB
# make bench — the pipeline against bare Temporal on this machine (BENCH_SCALE=0.1 for a quick run);
#              make bench-suite adds the test suite's wall time
# make chaos — 200 cases + 200 collections through the HTTP intake, 3 workers and 2 API processes
#              on PostgreSQL (database chaos), one of them SIGKILLed every few seconds and the
#              Temporal dev server restarted once: prints lost, mismatched (verify), duplicates,
#              refused and extra cases

PYTHON ?= $(or $(shell command -v python3.11 2>/dev/null),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint fmt clean bench bench-suite chaos

venv: $(STAMP)

# Re-installs only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-input -e '.[dev]'
	touch $@

run: venv
	$(BIN)/python scripts/dev.py

test: venv
	$(BIN)/pytest
	$(BIN)/mypy .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python -m bench

bench-suite: venv
	$(BIN)/python -m bench --suite

chaos: venv
	$(BIN)/python -m chaos

lint: venv
	$(BIN)/mypy .
	$(BIN)/ruff check .

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var/
