# Two commands matter: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint fmt bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The address printed (console, curl example, links in the billing provider) is where this serves, unless
# ENTITLE_PUBLIC_URL says otherwise (behind a proxy).
run: install
	$(BIN)/entitle migrate
	ENTITLE_PUBLIC_URL="$${ENTITLE_PUBLIC_URL:-$${ENTITLE_CONSOLE_URL:-http://$(HOST):$(PORT)}}" $(BIN)/entitle demo
	ENTITLE_PUBLIC_URL="$${ENTITLE_PUBLIC_URL:-$${ENTITLE_CONSOLE_URL:-http://$(HOST):$(PORT)}}" ENTITLE_DEMO_PAGE=on \
		$(BIN)/entitle serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# Parallel test processes (pytest-xdist): twice the CPUs, at least 4. Much of a test's time is spent
# waiting (on its live server, subprocesses, PostgreSQL), so more workers than cores pay off.
# TEST_WORKERS=0 runs everything in one process. The 15 slowest tests are listed after each run: the
# whole `make test` should stay under ten minutes on a 2-core machine.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n * 2 > 4 ? n * 2 : 4 )))

# mypy (~17 s of CPU from a clean clone, as in CI: no cache to reuse) runs beside the tests instead of
# before them; its report is printed after theirs, and either failing fails `make test`.
test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	@$(BIN)/mypy > $(VENV)/mypy-report.txt 2>&1 & mypy=$$!; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=15; tests=$$?; \
	wait $$mypy; typed=$$?; echo "$(BIN)/mypy"; cat $(VENV)/mypy-report.txt; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

bench: install
	$(BIN)/python bench/catalog_reads.py

clean:
	rm -rf $(VENV) .entitle .pytest_cache .mypy_cache .ruff_cache
