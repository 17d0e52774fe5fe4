# The two set-up commands: `make demo` and `make test`. Each bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint tools clean-state

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

tools:
	@bash scripts/ensure-debian-tools

demo: $(STAMP) tools
	$(VENV)/bin/debflow demo

test: $(STAMP) tools
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy workflows activities models worker client support

clean-state:
	rm -rf .debflow
