# make run   — the local stack: Temporal dev server (UI http://localhost:8233), SQLite, file outbox, worker
# make test  — the test suite on 4 processes, then mypy and ruff (PostgreSQL too where
#              TEST_DATABASE_URL is set); docs/testing.md
# make demo  — make run with a believable partner seeded (a dozen customers, cases in every state,
#              invoices at every collections stage) and a policy whose days last a minute; fresh
#              under var/demo/ each time (docs/demo.md)
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

.PHONY: venv run demo test lint fmt clean bench bench-suite chaos lock

venv: $(STAMP)

# Re-installs only when pyproject.toml or the lock is newer than the stamp. Every dependency comes
# pinned with its hashes from requirements.lock (a file that does not match is refused); then the
# project itself, without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-input --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --no-input --no-deps -e .
	touch $@

# make lock — after changing pyproject.toml's dependencies: pins them all again, with their hashes
lock:
	test -x .venv-lock/bin/uv || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install -q uv)
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --custom-compile-command "make lock" -o requirements.lock

run: venv
	$(BIN)/python scripts/dev.py

demo: venv
	$(BIN)/python scripts/dev.py --demo

# the suite on TEST_WORKERS processes (pytest-xdist: most tests wait on Temporal servers, not on the
# CPU), each with its own dev server, PostgreSQL database and temporary folders (tests/conftest.py);
# each file on one worker, in its order (a module's later tests may read what its earlier ones
# left), the longest files first. TEST_WORKERS=0: one process.
# docs/testing.md: the suite at a Beijing hour, under a CPU hog, and the nightly-size run.
TEST_WORKERS ?= 4

# mypy runs beside the suite (it needs a core for half a minute while the suite mostly waits); its
# report comes after the suite's, and either failing fails the target
test: venv
	@$(BIN)/mypy . > $(VENV)/mypy.log 2>&1 & typing=$$!; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=25; tests=$$?; \
	wait $$typing; typed=$$?; cat $(VENV)/mypy.log; \
	test $$tests -eq 0 && test $$typed -eq 0
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
