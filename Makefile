# The two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench migrate stop-db

$(STAMP): pyproject.toml tests/plugins/mfengine_example_plugin/pyproject.toml \
		tests/plugins/mfplatform_example_rule/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	$(BIN)/pip install --quiet -e tests/plugins/mfengine_example_plugin \
		-e tests/plugins/mfplatform_example_rule
	touch $(STAMP)

install: $(STAMP)

migrate: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput

# Web server, a Celery worker per training queue (small, large tenants) and beat in the
# foreground; a worker that exits is restarted; Ctrl-C stops them all.
run: migrate
	DEBUG=$${DEBUG:-1} PORT=$(PORT) $(BIN)/python manage.py seed_demo
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py serve --port $(PORT)

# The embedded PostgreSQL outlives `make run` (the tests and the next run reuse it): stop it.
stop-db: install
	$(BIN)/python -m mfplatform.embedded_db stop

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/quality.py
