# gpuctl developer tasks. `make install` then `make test` is all a new machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install test lint bench clean

install: $(BIN)/gpuctl

$(BIN)/gpuctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e '.[dev]'
	@touch $@

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check gpuctl tests bench deploy
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
