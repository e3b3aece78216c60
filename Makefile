# Two commands matter: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export EVENT_PIPELINE_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(EVENT_PIPELINE_HOME)/dagster_home
STAMP := $(VENV)/.installed
# uv installs the versions in uv.lock; it is itself pinned here and bootstrapped with the venv's
# pip, since Debian's Python refuses installs outside a venv.
UV_VERSION := 0.13.8
PORT ?= 3000
WEBHOOK_PORT ?= 3001

.PHONY: run test lint bench venv init clean

# --frozen: exactly the versions in uv.lock, never re-resolved; --inexact: keep pip and uv, which
# the lock does not name. Re-run whenever pyproject.toml or uv.lock changes.
$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/uv --version 2>/dev/null | grep -q '^uv $(UV_VERSION) ' || $(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) $(BIN)/uv sync --quiet --frozen --inexact --extra dev
	touch $(STAMP)

venv: $(STAMP)

init: $(STAMP)
	$(BIN)/event-pipeline init --demo

run: init
	$(BIN)/event-pipeline demo-drop
	# No secrets sourced: the code location reads var/secrets.env itself, like any process started by hand.
	# The code location is the dg project ([tool.dg] in pyproject.toml), as in `dg check defs`.
	# The SendGrid event receiver runs beside it (only when SENDGRID_WEBHOOK_PUBLIC_KEY is set) and
	# stops with it: the trap ends it when dg dev ends (Ctrl-C, or dg dev exiting by itself).
	cd $(CURDIR) && { $(BIN)/event-pipeline webhook serve --host 127.0.0.1 --port $(WEBHOOK_PORT) --only-if-configured & \
	  hook=$$!; trap 'kill $$hook 2>/dev/null; wait $$hook' EXIT; $(BIN)/dg dev -h 127.0.0.1 -p $(PORT); }

lint: $(STAMP)
	# uv.lock still matches pyproject.toml (a dependency edited without `uv lock` fails here).
	$(BIN)/uv lock --check
	$(BIN)/ruff check event_pipeline event_pipeline_tests bench deploy
	$(BIN)/ruff format --check event_pipeline event_pipeline_tests bench deploy
	$(BIN)/mypy
	# A scratch Dagster home with our instance settings: loading the definitions leaves var/ alone.
	home=$$(mktemp -d) && cp dagster.yaml "$$home/" && DAGSTER_HOME="$$home" $(BIN)/dg check defs; rc=$$?; rm -rf "$$home"; exit $$rc

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# The distributed topology on this machine: PostgreSQL and Redis (unless DATABASE_URL +
# DAGSTER_PG_URL / CELERY_BROKER_URL are given), a code server, webserver, daemon and
# WORKERS Celery workers; Ctrl-C or `make stop` stops it all. See "Running on several machines".
WORKERS ?= 2
.PHONY: run-distributed stop
run-distributed: $(STAMP)
	$(BIN)/python deploy/topology.py --workers $(WORKERS) --port $(PORT)

stop:
	@pid_file=$(EVENT_PIPELINE_HOME)/topology.pid; \
	if [ ! -f "$$pid_file" ]; then echo "no topology running under $(EVENT_PIPELINE_HOME)"; exit 0; fi; \
	pid=$$(cat "$$pid_file"); kill -TERM "$$pid" 2>/dev/null || { echo "topology $$pid is gone"; rm -f "$$pid_file"; exit 0; }; \
	echo "stopping topology $$pid"; \
	for _ in $$(seq 1 240); do kill -0 "$$pid" 2>/dev/null || exit 0; sleep 0.5; done; \
	echo "topology $$pid still running after 120 s" >&2; exit 1
