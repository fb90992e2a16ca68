# make run   - create .venv if missing, install, start the daemon on monitor.yaml
# make test  - create .venv if missing, install the dev extras, start PostgreSQL and
#              Redis when installed but stopped, run every test
# make fuzz  - the config-language property tests with the `fuzz` hypothesis profile
#              (thousands of generated and mutated configs; some 20 minutes)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= monitor.yaml

.PHONY: run shell test test-fast fuzz lint schema bench clean services tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	@echo "watchkeeper: the CLI is $(BIN)/watchkeeper; in another terminal, '. $(BIN)/activate' (or 'make shell') puts it on PATH"
	$(BIN)/watchkeeper --config $(CONFIG) run

shell: $(VENV)/.installed
	@echo "watchkeeper: a shell with $(BIN) on PATH; 'exit' leaves it"
	@PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" $${SHELL:-/bin/sh}

services: tools
	@sh tests/services.sh

tools:
	@sh tests/tools.sh

test: $(VENV)/.installed-dev services
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest

test-fast: $(VENV)/.installed-dev services
	$(BIN)/pytest -m "not slow"

fuzz: $(VENV)/.installed-dev
	WATCHKEEPER_FUZZ=1 $(BIN)/pytest tests/test_config_properties.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

schema: $(VENV)/.installed
	$(BIN)/watchkeeper schema > schema/monitor.schema.json

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/validate_10k.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .import_linter_cache .watchkeeper
