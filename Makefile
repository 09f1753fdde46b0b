# Two commands: `make serve` and `make test`. Each creates/refreshes .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= embedded,postgres,redis,dev
STAMP := $(VENV)/.installed-$(shell echo "$(EXTRAS)" | tr ',' '-')

.PHONY: serve test install test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# Reinstalls when pyproject.toml changes. llama-cpp-python compiles from source (a few minutes, once).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

serve: install
	$(BIN)/coderapi serve

test: install
	$(BIN)/python -m pytest -ra

# The unit and api tiers only (no real model, no external servers).
test-fast: install
	$(BIN)/python -m pytest -ra tests/unit tests/api

clean:
	rm -rf $(VENV) data
