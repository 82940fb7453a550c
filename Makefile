# Run `make help` for the list. Every target installs what it needs on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOT := $(shell infra/scripts/find_python.sh)
# Each virtualenv is stamped with its interpreter's version: another interpreter (3.12 -> 3.13)
# recreates it instead of leaving packages built for the old one.
PYTHON_VERSION := $(shell $(PYTHON_BOOT) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
STAMP := .installed-py$(PYTHON_VERSION)
VENV := .venv
CHROMA_VENV := .venv-chroma
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
PIP_FLAGS := --disable-pip-version-check --quiet
SAM := $(SAM_VENV)/bin/sam
# sam build needs the runtime's interpreter (python3.13) on PATH.
SAM_PATH := $(dir $(PYTHON_BOOT)):$(PATH)
BUILD_DIR ?= .aws-sam/build
export PYTHONPATH := $(CURDIR):$(CURDIR)/functions/api
# No telemetry from the SAM CLI: CI and tests reach nothing but loopback and the package registries.
export SAM_CLI_TELEMETRY := 0

.PHONY: help install dev test unit integration e2e e2e-sam sam-local docker-engine lint format build validate package-size import-time cold-start bench capacity eval reconcile clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/$(STAMP): requirements.txt layers/deps/requirements.txt tests/requirements.txt
	$(PYTHON_BOOT) -m venv --clear $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements.txt
	touch $@

$(CHROMA_VENV)/$(STAMP): infra/requirements-chroma.txt
	$(PYTHON_BOOT) -m venv --clear $(CHROMA_VENV)
	$(CHROMA_VENV)/bin/pip install $(PIP_FLAGS) -r infra/requirements-chroma.txt
	touch $@

$(SAM_VENV)/$(STAMP): infra/requirements-sam.txt
	$(PYTHON_BOOT) -m venv --clear $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_FLAGS) -r infra/requirements-sam.txt
	touch $@

install: $(VENV)/$(STAMP) $(CHROMA_VENV)/$(STAMP) ## Create the virtualenvs (app + local Chroma server)

dev: install ## Start the whole local stack on 127.0.0.1:5000 (Ctrl-C stops it)
	$(PY) -m infra.local.stack

test: install ## Run every test tier (unit, integration, end-to-end)
	@# pytest exits 5 when it collects nothing: say so instead of failing obscurely
	$(PY) -m pytest || { status=$$?; [ $$status -eq 5 ] && echo "pytest: no tests collected" || exit $$status; }

unit: install ## Unit tests only (pure logic, no servers)
	$(PY) -m pytest tests/unit

integration: install ## Handlers in-process against the local emulator, Chroma and fakes
	$(PY) -m pytest tests/integration

e2e: install ## HTTP against a started local stack
	$(PY) -m pytest tests/e2e

docker-engine: ## Start a Docker engine (headless Linux, as root) unless one answers already
	infra/scripts/docker_engine.sh

sam-local: install $(SAM_VENV)/$(STAMP) ## The built function behind sam local start-api on 127.0.0.1:3001 (SAM_LOCAL_PORT; Docker; Ctrl-C stops it)
	SAM_CLI="$(CURDIR)/$(SAM)" $(PY) -m infra.local.sam_local

e2e-sam: install $(SAM_VENV)/$(STAMP) ## The e2e contract tests through sam local start-api on the built function (Docker)
	SAM_CLI="$(CURDIR)/$(SAM)" $(PY) -m pytest -m sam_local tests/sam_local

lint: $(VENV)/$(STAMP) ## Ruff lint and format check, mypy on the Lambda code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/$(STAMP) ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: $(SAM_VENV)/$(STAMP) ## sam validate --lint (and cfn-lint) on template.yaml
	$(SAM) validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml

build: $(SAM_VENV)/$(STAMP) ## sam build (arm64, python3.13, no Docker)
	PATH="$(SAM_PATH)" $(SAM) build --build-dir $(BUILD_DIR)

package-size: build ## Print the unzipped size of the built function and layer
	du -sh $(BUILD_DIR)/*

bench: install ## Limiter and query cost: latency ratios to a bare GetItem, DynamoDB round trips
	POWERTOOLS_LOG_LEVEL=WARNING $(PY) -m infra.scripts.bench

capacity: install ## Budget store at a scaled per-item write ceiling: answered q/s and WCU per query by shard count and load (~5 min)
	POWERTOOLS_LOG_LEVEL=WARNING $(PY) -m infra.scripts.capacity

reconcile: install ## Compare finished UTC days' books with OpenAI's usage/costs records, then today so far (OPENAI_ADMIN_KEY; DAYS="YYYY-MM-DD ..." to redo days)
	POWERTOOLS_LOG_LEVEL=WARNING $(PY) -m infra.scripts.reconcile $(foreach day,$(DAYS),--day $(day))

eval: install ## Retrieval on a generated corpus: recall@k and comparison coverage, with/without entity queries
	POWERTOOLS_LOG_LEVEL=WARNING $(PY) -m infra.eval.evaluate

import-time: $(VENV)/$(STAMP) ## Cold-start import time of the Lambda handler
	$(PY) infra/scripts/import_time.py

cold-start: $(SAM_VENV)/$(STAMP) ## With make sam-local running: first and warm invocation durations through the runtime emulator
	$(SAM_VENV)/bin/python -m infra.scripts.cold_start

clean: ## Remove virtualenvs, build output and local data
	rm -rf $(VENV) $(CHROMA_VENV) $(SAM_VENV) .aws-sam .local .pytest_cache .ruff_cache
