VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format setup setup-test

setup:
	VENV=$(VENV) scripts/install-deps.sh

setup-test:
	VENV=$(VENV) EXTRAS=test WITH_DOCKER=1 scripts/install-deps.sh

run: setup
	exec $(PY) manage.py runstack

test: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

format: setup-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
