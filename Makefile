# The README's commands. Each target does its own set-up: a virtualenv in .venv, the local
# stack (Kafka 4 + Redis 7 on 127.0.0.1, see deploy/local/stack.sh), and the topics.
SHELL := /bin/bash
# The interpreter the virtualenv is built on (see deploy/local/pick-python.sh for the choice).
ifndef PYTHON
PYTHON := $(shell deploy/local/pick-python.sh)
endif
VENV := .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack.sh

.PHONY: demo test deps venv stack-up stack-down stack-status topics lint bench clean

demo: deps venv stack-up topics
	$(BIN)/enforcer demo

test: deps venv stack-up
	$(BIN)/python -m pytest $(PYTEST_ARGS)

deps:
	deploy/local/install-deps.sh

venv:
	@test -n "$(PYTHON)" || { echo "no usable Python 3.11+ (see deploy/local/pick-python.sh)" >&2; exit 1; }
	deploy/local/venv.sh "$(PYTHON)" $(VENV)

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

topics: venv stack-up
	$(BIN)/enforcer topics apply

lint: venv
	$(BIN)/ruff check enforcer tests
	$(BIN)/mypy enforcer

bench: venv stack-up
	$(BIN)/enforcer bench

clean: stack-down
	rm -rf .stack $(VENV) *.egg-info
