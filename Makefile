# Every target creates the virtualenv itself, so a fresh clone needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo validate lint typecheck bench schema clean

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

# The end-to-end demo arrives with the daemon (issue 6); until then it checks the shipped integration.
demo: $(STAMP)
	$(BIN)/nurture validate --config nurture.yaml rules sequences
	@echo "The live demo (simulators + daemon) is not built yet; the shipped config above is what it will run."

bench: $(STAMP)
	$(BIN)/python -m tests.bench

schema: $(STAMP)
	$(BIN)/nurture schema --out schema

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
