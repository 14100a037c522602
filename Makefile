# The single entry point: CI, hooks and people run these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: The folders installed as onepipe.<folder>.
PACKAGES := app agents tables schemas sinks

.PHONY: help venv browser dev test lint typecheck pytest bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create the environment (.venv) with every dependency

# The status page is tested in a real headless browser (Debian's chromium package).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive \
		sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium'

browser: $(CHROMIUM)  ## install headless Chromium for the status-page test

dev: $(STAMP)  ## run the embedded broker, apply catalog/, and one worker with its web server
	$(BIN)/onepipe dev --catalog catalog

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check onepipe $(PACKAGES) tests bench examples

# mypy cannot follow the editable install's import hook, so it reads `onepipe` through a
# tree of links laid out as the installed package is (onepipe/app -> app, ...).
TYPECHECK_TREE := .mypy_tree
typecheck: $(STAMP)  ## mypy over the package, the tests and the benchmarks
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)/onepipe
	ln -s ../../onepipe/__init__.py ../../onepipe/testing.py ../../onepipe/py.typed \
		$(TYPECHECK_TREE)/onepipe/
	for package in $(PACKAGES); do ln -s ../../$$package $(TYPECHECK_TREE)/onepipe/$$package; done
	$(BIN)/mypy

# Two processes, a test file each at a time (module fixtures are built once): most of a
# test's time is a broker or a worker holding a group join, a timeout or a restart, so two
# files share two cores without slowing each other much. Each process starts its own
# broker, S3 server and browser; tests name their own tables in the shared databases.
# Tests marked `alone` time the event loop's steps against wall time: they run after the
# rest, in one process, where no other test's load can preempt the loop they watch.
TEST_PROCESSES ?= 2
pytest: $(STAMP) $(CHROMIUM)  ## the test suite against a real broker and databases
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile -m "not alone"
	$(BIN)/pytest -m alone

test: lint typecheck pytest  ## everything CI runs

# Every script runs even when an earlier one misses a target (each exits 1 on a miss);
# the target fails at the end if any did. (load only prints figures: 1 vs 2 workers; replay
# against the raw producer, the current code only; dedup_stages dedup's planning by stage.)
BENCHES := produce archive dedup dedup_stages checksum_raw agent_processes compact verify sink \
	agents load
# Each script also appends its headline figures to one file (bench/summary.py), printed as
# one table at the end.
bench: $(STAMP)  ## performance ratios against a baseline measured in the same run
	@status=0; summary=$$(mktemp) || exit 1; trap 'rm -f "$$summary"' EXIT; \
	export ONEPIPE_BENCH_SUMMARY="$$summary"; \
	for script in $(BENCHES); do \
		$(BIN)/python bench/$$script.py || status=1; \
	done; $(BIN)/python bench/replay.py --only after --runs 1 || status=1; \
	$(BIN)/python bench/summary.py "$$summary" $(BENCHES) replay; exit $$status

clean:  ## remove the environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .mypy_tree .ruff_cache data
