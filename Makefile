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

# Two test processes, each with its own Temporal dev server and PostgreSQL (real tools wait on I/O as much
# as they compute); work stealing keeps both busy until the last slow test. The 25 slowest are listed.
TEST_PROCESSES ?= 2

test: $(STAMP) tools
	$(VENV)/bin/pytest -n $(TEST_PROCESSES) --dist worksteal --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy workflows activities models worker client support web

clean-state:
	rm -rf .debflow
