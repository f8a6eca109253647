# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test lint unit integration services serve worker beat bench evaluate lock clean

# Installs the exact versions the tests last passed with (requirements.lock), then the project itself.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Re-resolve pyproject.toml's dependencies (with the dev and tools extras) in a scratch venv and pin them.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,tools]'
	.lock-venv/bin/python -m pip freeze --exclude-editable > requirements.lock
	rm -rf .lock-venv

help:
	@echo "make demo         the daily loop on the embedded default (SQLite, eager tasks, outbox)"
	@echo "make test         ruff, mypy and every test; starts PostgreSQL/Redis, installs Chromium if missing"
	@echo "make unit         the tests that need no server"
	@echo "make integration  the tests against the local PostgreSQL and Redis"
	@echo "make bench        the benchmark tables (part 2 needs PostgreSQL and Redis)"
	@echo "make evaluate     the ranking evaluation on ../shared/relevance, through digest run"
	@echo "make serve        the web app on 127.0.0.1:8000 (settings from the environment)"
	@echo "make worker       a Celery worker (needs DIGEST_BROKER_URL)"
	@echo "make beat         the Celery beat that runs the ticks (needs DIGEST_BROKER_URL)"
	@echo "make lock         re-resolve the dependencies and rewrite requirements.lock"
	@echo "make clean        remove .venv, var and build files"

demo: $(STAMP)
	$(BIN)/digest demo

serve: $(STAMP)
	$(BIN)/digest serve

worker: $(STAMP)
	$(BIN)/celery -A workers.app worker --loglevel=info

beat: $(STAMP)
	$(BIN)/celery -A workers.app beat --loglevel=info

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Starts PostgreSQL and Redis if they are down and installs Chromium if it is missing (tools/test-services.sh).
services:
	tools/test-services.sh

test: lint services
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

integration: $(STAMP) services
	$(BIN)/pytest -m integration

# The second part needs the local PostgreSQL and Redis (as the integration tests do); about 15 minutes.
bench: $(STAMP)
	$(BIN)/python -m tools.bench
	$(BIN)/python -m tools.bench_day

evaluate: $(STAMP)
	$(BIN)/digest evaluate --plot docs/evaluation.png

clean:
	rm -rf $(VENV) var build *.egg-info
