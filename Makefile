# Kafka-ML. `make demo` and `make test` work on a fresh machine: both install first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# These machines keep the CPU build of torch in /opt/wheels; elsewhere pip finds it on PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install tools test demo lint schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(FIND_LINKS) -e ".[dev]"
	@touch $(STAMP)
	@echo "installed into $(VENV)"

# System tools some tests drive: headless Chromium (the live view) and kcat (the Kafka client
# table, docs/clients.md). Installed from Debian when missing and we may (root); otherwise the
# tests that need them skip or say "not installed". (kubectl, hadolint and the schema validators
# come from PyPI with the dev extras.)
APT_TOOLS := $(if $(shell command -v chromium),,chromium) $(if $(shell command -v kcat),,kcat)
# kafka-python 2.0.2 (upstream Kafka-ML's pin) cannot share the venv with the current
# kafka-python: it gets a folder of its own, which the client table puts on PYTHONPATH.
OLD_KAFKA_PYTHON := $(VENV)/clients/kafka-python-2.0.2
tools: $(OLD_KAFKA_PYTHON)
	@if [ -n "$(strip $(APT_TOOLS))" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(strip $(APT_TOOLS)) from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_TOOLS) >/dev/null \
			|| echo "could not install $(APT_TOOLS): the tests that need them will skip"; \
	fi

$(OLD_KAFKA_PYTHON): | $(STAMP)
	$(PY) -m pip install -q --no-deps --target $@ kafka-python==2.0.2 \
		|| echo "could not install kafka-python 2.0.2: its row of the client table says not installed"

test: install tools
	$(PY) -m pytest

demo: install
	$(PY) examples/demo.py

# mypy takes its files from pyproject.toml: shared/ and services/, the control logger through
# its link services/control_logger (mypy cannot check the hyphenated folder by name).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

schemas: install
	$(PY) -m shared.events.schemas

clean:
	rm -rf $(VENV) .kafkaml .pytest_cache .mypy_cache .ruff_cache
