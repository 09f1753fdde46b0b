# Two commands: `make serve` and `make test`. Each creates/refreshes .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= embedded,postgres,redis,dev
STAMP := $(VENV)/.installed-$(shell echo "$(EXTRAS)" | tr ',' '-')

.PHONY: serve test install llama llama-server smoke test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# llama-cpp-python is compiled for this CPU (AVX-512/AVX2, never AMX) and cached outside the clone;
# the script is a no-op when the right build is already installed. See scripts/build_llama.sh.
llama: | $(BIN)/python
	scripts/build_llama.sh wheel $(BIN)/python

# llama.cpp's llama-server from the same vendored source and flags, cached outside the clone; prints
# its path (the remote-engine integration tests run it as a replica: CODERAPI_LLAMA_SERVER).
llama-server: | $(BIN)/python
	@PYTHON=$(BIN)/python scripts/build_llama.sh server

# Reinstalls when pyproject.toml changes.
$(STAMP): pyproject.toml | llama
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

# A real decode in a subprocess: a build that crashes on this CPU is named, with the override to use.
smoke: $(STAMP)
	$(BIN)/coderapi smoke

install: $(STAMP) smoke

serve: install
	$(BIN)/coderapi serve

test: install
	$(BIN)/python -m pytest -ra

# The unit, store (SQLite files) and api tiers only (no real model, no external servers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit tests/store tests/api

clean:
	rm -rf $(VENV) data
