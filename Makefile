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

# System tools some tests drive: headless Chromium (the browser tests, through Playwright) and kcat (the Kafka client
# table, docs/clients.md). Installed from Debian when missing and we may (root); otherwise the
# tests that need them skip or say "not installed". (kubectl, hadolint and the schema validators
# come from PyPI with the dev extras.)
APT_TOOLS := $(if $(shell command -v chromium),,chromium) $(if $(shell command -v kcat),,kcat)
# kafka-python 2.0.2 (upstream Kafka-ML's pin) cannot share the venv with the current
# kafka-python: it gets a folder of its own, which the client table puts on PYTHONPATH.
OLD_KAFKA_PYTHON := $(VENV)/clients/kafka-python-2.0.2
# axe-core, the accessibility checker the browser tests inject into each page (tests/web.py):
# pinned by version and by the registry's sha512 of the package, unpacked next to the venv.
AXE_VERSION := 4.14.1
AXE_SHA512 := 1477dafa598d8d065f273d6af302aa203c02e83131707b7fa648cd41bd3d6b734f8c22a0dab86ee6a6f64b8afbe804b214d36db85a2826965edfb3a0b9d546b5
AXE := $(VENV)/clients/axe-core/axe.min.js
tools: $(OLD_KAFKA_PYTHON) $(AXE)
	@if [ -n "$(strip $(APT_TOOLS))" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(strip $(APT_TOOLS)) from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_TOOLS) >/dev/null \
			|| echo "could not install $(APT_TOOLS): the tests that need them will skip"; \
	fi

$(OLD_KAFKA_PYTHON): | $(STAMP)
	$(PY) -m pip install -q --no-deps --target $@ kafka-python==2.0.2 \
		|| echo "could not install kafka-python 2.0.2: its row of the client table says not installed"

$(AXE):
	@command -v npm >/dev/null || { echo "npm is missing: the browser tests' accessibility checks will fail (install npm, then make tools)"; exit 0; }; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	{ (cd "$$tmp" && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null) \
		|| { echo "could not fetch axe-core: the browser tests' accessibility checks will fail"; exit 0; }; } && \
	echo "$(AXE_SHA512)  $$tmp/axe-core-$(AXE_VERSION).tgz" | sha512sum -c --quiet - && \
	tar -xzf "$$tmp/axe-core-$(AXE_VERSION).tgz" -C "$$tmp" package/axe.min.js package/LICENSE && \
	mkdir -p $(dir $@) && cp "$$tmp/package/axe.min.js" "$$tmp/package/LICENSE" $(dir $@) && \
	echo "axe-core $(AXE_VERSION) in $(dir $@)"

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
