# pgarchitect — the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PACKAGES := pgarchitect exporter analyzer

.PHONY: demo test lint typecheck unit bench debian-packages clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

debian-packages:
	@scripts/ensure-debian-packages.sh

demo: $(STAMP)
	$(VENV)/bin/pgarchitect demo

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
