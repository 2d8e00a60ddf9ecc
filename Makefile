# Two commands matter: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint fmt bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/entitle migrate
	$(BIN)/entitle demo
	$(BIN)/entitle serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# Parallel test processes (pytest-xdist). Much of the suite waits (on its servers, subprocesses and
# PostgreSQL), so a few more workers than cores pay off; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 4

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

bench: install
	$(BIN)/python bench/catalog_reads.py

clean:
	rm -rf $(VENV) .entitle .pytest_cache .mypy_cache .ruff_cache
