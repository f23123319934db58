# One command to run, one to test. Each creates .venv and installs what it needs on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080

.PHONY: run test lint format clean bench

$(BIN)/.runtime: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable .
	touch $@

$(BIN)/.installed: $(BIN)/.runtime
	$(BIN)/pip install --quiet --editable ".[test]"
	touch $@

## run: taskgate serve on the embedded defaults (SQLite under ./data, in-process broker) on PORT
## (8080); for local development it allows callback URLs on private addresses (e.g. 127.0.0.1)
run: $(BIN)/.runtime
	TASKGATE_ALLOW_PRIVATE_CALLBACKS=$${TASKGATE_ALLOW_PRIVATE_CALLBACKS:-1} $(BIN)/taskgate serve --port $(PORT)

## test: lint, then the whole suite, with the PostgreSQL and RabbitMQ tests whenever those answer on
## this machine (or at TASKGATE_TEST_POSTGRES_URL / TASKGATE_TEST_RABBITMQ_URL, see README)
test: $(BIN)/.installed lint
	$(BIN)/python -m tests.local_services $(BIN)/pytest $(PYTEST_ARGS)

## bench: throughput and latency of both modes plus the bare stages (needs PostgreSQL, RabbitMQ and
## rabbitmqctl, see README "Performance"); options via BENCH_ARGS, e.g. BENCH_ARGS="--quick"
bench: $(BIN)/.bench-installed
	$(BIN)/python -m bench --unpaced $(BENCH_ARGS)

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet --editable ".[test,bench]"
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache *.egg-info
