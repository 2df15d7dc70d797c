# mailplat: two commands do everything on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SITE ?= sites/example
STAMP := $(VENV)/.installed

.PHONY: run shell test lint fmt schemas docs bench bench-quick tools clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## run: install, make a self-signed certificate, apply and serve sites/example on high ports
run: $(STAMP)
	$(BIN)/mailplat tls self-signed $(SITE)/tls --host mail.example.test --if-missing
	$(BIN)/mailplat apply $(SITE) --yes
	$(BIN)/mailplat serve $(SITE)

## shell: a subshell with .venv's bin/ first on PATH, so `mailplat ...` works (exit leaves it)
shell: $(STAMP)
	@echo "mailplat is on PATH in this shell ($(CURDIR)/$(BIN)); type exit to leave."
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(BIN):$$PATH" $${SHELL:-/bin/sh} -i

## tools: system tools the integration tests drive (swaks, fetchmail, postfix)
tools:
	sh tests/setup-tools.sh

## lint: ruff check, ruff format --check, mypy, import contracts
lint: $(STAMP)
	$(BIN)/ruff check mailplat tests bench
	$(BIN)/ruff format --check mailplat tests bench
	$(BIN)/mypy mailplat
	$(BIN)/lint-imports

## test: lint, then the whole suite
test: $(STAMP) tools lint
	$(BIN)/pytest -q

fmt: $(STAMP)
	$(BIN)/ruff format mailplat tests bench
	$(BIN)/ruff check --fix mailplat tests bench

## schemas: regenerate schemas/ and the README config reference
schemas docs: $(STAMP)
	$(BIN)/mailplat schema

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
