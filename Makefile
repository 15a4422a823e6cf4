# Every target creates the virtualenv itself, so a fresh clone needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo validate lint typecheck bench proof schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check engine adapters tests
	$(BIN)/ruff format --check engine adapters tests

typecheck: $(STAMP)
	$(BIN)/mypy

validate: $(STAMP)
	$(BIN)/nurture validate rules sequences

# The main job: the shipped integration on simulators (HubSpot, Greenhouse, Slack, SMTP), 220
# candidates over 125 simulated days through real webhooks, on the embedded SQLite default.
demo: $(STAMP)
	$(BIN)/nurture validate --config nurture.yaml rules sequences
	$(BIN)/nurture demo

bench: $(STAMP)
	$(BIN)/python -m tests.bench

# The proof suite at full size against the running daemon (crash loop, vendor and store faults,
# hostile input, security); prints the results table and writes tests/proof/results.md.
proof: $(STAMP)
	$(BIN)/python -m tests.proof --write

schema: $(STAMP)
	$(BIN)/nurture schema --out schema

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
