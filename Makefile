# Kafka-ML. `make demo` and `make test` work on a fresh machine: both install first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# These machines keep the CPU build of torch in /opt/wheels; elsewhere pip finds it on PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install test demo lint schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(FIND_LINKS) -e ".[dev]"
	@touch $(STAMP)
	@echo "installed into $(VENV)"

test: install
	$(PY) -m pytest

demo: install
	$(PY) examples/demo.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

schemas: install
	$(PY) -m shared.events.schemas

clean:
	rm -rf $(VENV) .kafkaml .pytest_cache .mypy_cache .ruff_cache
