# Every target sets up what it needs; a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB ?= demo-data/demo.db

.PHONY: demo test lint typecheck docs dist bench services chromium clean constraints

# constraints-dev.txt: the exact versions every check ran on (see its header).
$(BIN)/.installed-base: pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e . -c constraints-dev.txt
	touch $@

$(BIN)/.installed-dev: pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -c constraints-dev.txt
	touch $@ $(BIN)/.installed-base

## Re-resolve the development dependencies at their newest into constraints-dev.txt.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q --upgrade pip
	.venv-constraints/bin/pip install -q -e '.[dev]'
	head -3 constraints-dev.txt > .constraints.new
	.venv-constraints/bin/pip freeze --exclude-editable >> .constraints.new
	mv .constraints.new constraints-dev.txt
	rm -rf .venv-constraints

## The main job: a simulated agent session written to SQLite, then its timeline.
demo: $(BIN)/.installed-base
	$(BIN)/agent-session-store demo --db $(DEMO_DB)

services:
	bash scripts/ensure-services.sh

## Debian's chromium for the web inspector's browser tests (Playwright drives it; no download).
chromium:
	bash scripts/ensure-chromium.sh

## Every test on every backend against real servers (tests/test_imports.py also builds the
## wheel and sdist and installs the wheel in a fresh venv), then ruff, mypy --strict, the docs.
## The servers are the ones scripts/ensure-services.sh chose: .services/env is exported
## (ASS_TEST_PG_DSN, ASS_TEST_REDIS_URL, read by tests/service_urls.py and bench/common.py).
SERVICES_ENV := set -a; . ./.services/env; set +a;

test: $(BIN)/.installed-dev services chromium
	$(SERVICES_ENV) $(BIN)/python -m pytest
	$(MAKE) lint typecheck docs

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/.installed-dev
	$(BIN)/mypy

## The documentation site (docs/ + the API reference from the docstrings), strict: a broken
## link, anchor or reference fails the build. Output in site/.
docs: $(BIN)/.installed-dev
	$(BIN)/mkdocs build --strict --quiet

## A wheel and an sdist in dist/.
dist: $(BIN)/.installed-dev
	$(BIN)/python -m build --outdir dist .

## Our stores against the raw drivers doing the same work; markdown table + bench/results.json.
bench: $(BIN)/.installed-dev services
	$(SERVICES_ENV) $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache site dist
