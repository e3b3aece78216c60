# Two commands matter: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export EVENT_PIPELINE_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(EVENT_PIPELINE_HOME)/dagster_home
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv init clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

init: $(STAMP)
	$(BIN)/event-pipeline init --demo

run: init
	$(BIN)/event-pipeline demo-drop
	# No secrets sourced: the code location reads var/secrets.env itself, like any process started by hand.
	cd $(CURDIR) && $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: $(STAMP)
	$(BIN)/ruff check event_pipeline event_pipeline_tests bench
	$(BIN)/ruff format --check event_pipeline event_pipeline_tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
