# openline — every task a newcomer or CI needs. `make help` lists them.
# The first run of any target creates .venv and installs openline with its extras.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8765
# Pythons the core and interop tests also run on (CI runs them all).
# `make fuzz`: seconds per harness, and the harnesses.
FUZZ_TIME ?= 14
FUZZ_HARNESSES ?= connection handshake wire hub deflate
MATRIX ?= $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3 $(HOME)/.pyenv/versions/3.12.*/bin/python3 $(HOME)/.pyenv/versions/3.13.*/bin/python3)

.PHONY: help serve test test-matrix style types coverage fuzz docs autobahn autobahn-all node-deps autobahn-deps e2e screenshot bench bench-quick bench-check bench-cluster bench-hub bench-node-deps clean

help:
	@echo "make serve        run the main job: the hub and its demo page on http://$(HOST):$(PORT)/"
	@echo "make test         install everything and run the whole test suite (what CI runs)"
	@echo "make test-matrix  core, asyncio and interop tests on Python 3.10, 3.12 and 3.13"
	@echo "make style        ruff check and ruff format --check"
	@echo "make types        mypy --strict on src/"
	@echo "make coverage     the suite with branch coverage"
	@echo "make fuzz         every atheris harness in fuzz/ for FUZZ_TIME (14) s each; CI runs it"
	@echo "make e2e          the browser tests: the demo page in headless Chromium (apt: chromium)"
	@echo "make screenshot   the browser tests, refreshing docs/demo.png"
	@echo "make autobahn-all Autobahn|Testsuite including compression (sections 12-13, ~45 min with the uvicorn engine)"
	@echo "make bench        openline side by side with its peers into bench/results (~30 min)"
	@echo "make bench-quick  the same as a 1-minute smoke run into bench/results/quick"
	@echo "make bench-check  a 3-minute run: which ratios moved since bench/results (informative)"
	@echo "make bench-hub    one room: the hub vs python-socketio and Socket.IO on Node (~15 min)"
	@echo "make bench-cluster fan-out over 2 hub nodes + Redis vs 1 node in memory (~3 min)"

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	OPENLINE_BUILD_EXTENSION=$${OPENLINE_BUILD_EXTENSION:-yes} $(BIN)/python -m pip install -q -e '.[dev,speed]'
	touch $@

serve: $(STAMP)
	$(BIN)/openline serve --host $(HOST) --port $(PORT) --data .cache/openline.db

node-deps: tests/interop/node/node_modules/.package-lock.json

tests/interop/node/node_modules/.package-lock.json: tests/interop/node/package-lock.json
	cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error

autobahn-deps:
	bash tests/autobahn/install.sh

test: $(STAMP) node-deps bench-node-deps autobahn-deps style types
	$(BIN)/python -m pytest

test-matrix:
	@test -n "$(MATRIX)" || { echo "no Python 3.10/3.12/3.13 found under ~/.pyenv"; exit 1; }
	@set -e; for py in $(MATRIX); do \
		v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		venv=.venv-$$v; \
		if [ ! -f $$venv/.installed ]; then \
			$$py -m venv $$venv; \
			$$venv/bin/python -m pip install -q -U pip; \
			OPENLINE_BUILD_EXTENSION=yes $$venv/bin/python -m pip install -q -e '.[dev]'; \
			touch $$venv/.installed; \
		fi; \
		echo "== Python $$v"; \
		$$venv/bin/python -m pytest -q -p no:cacheprovider tests/protocol tests/asyncio tests/interop tests/test_layering.py; \
	done

style: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz examples
	$(BIN)/ruff format --check src tests bench fuzz examples

types: $(STAMP)
	$(BIN)/mypy

coverage: $(STAMP) node-deps bench-node-deps autobahn-deps
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

autobahn: $(STAMP) autobahn-deps
	$(BIN)/python -m pytest tests/autobahn -v

autobahn-all: $(STAMP) autobahn-deps
	OPENLINE_AUTOBAHN_ALL=1 $(BIN)/python -m pytest tests/autobahn -v -s

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/openline bench $(BENCH_ARGS)

bench-node-deps: bench/node/node_modules/.package-lock.json

bench/node/node_modules/.package-lock.json: bench/node/package-lock.json
	cd bench/node && npm ci --no-audit --no-fund --loglevel=error

bench-hub: $(STAMP) bench-node-deps
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/openline bench --hub $(BENCH_ARGS)

bench-cluster: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/openline bench --cluster $(BENCH_ARGS)

# Informative: exits non-zero only with BENCH_ARGS=--fail-on-change.
bench-check: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/openline bench --check $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/openline bench --quick $(BENCH_ARGS)

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -v

screenshot: $(STAMP)
	OPENLINE_UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest tests/e2e -q -k fresher

# Each harness runs for FUZZ_TIME seconds from its committed seeds (fuzz/corpus/<name>) and
# what earlier runs found (.cache/fuzz/<name>). A crash writes its input to fuzz/crashes/
# (git-ignored) and fails the target after every harness has had its turn; the full
# libFuzzer output of each harness is in .cache/fuzz/<name>.log.
fuzz: $(STAMP)
	@mkdir -p fuzz/crashes
	@failed=""; for h in $(FUZZ_HARNESSES); do \
		mkdir -p .cache/fuzz/$$h; \
		if $(BIN)/python fuzz/fuzz_$$h.py -max_total_time=$(FUZZ_TIME) -timeout=10 \
			-rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix=fuzz/crashes/$$h- \
			.cache/fuzz/$$h fuzz/corpus/$$h >.cache/fuzz/$$h.log 2>&1; then \
			echo "fuzz_$$h: $$(grep -h -e '^Done' -e 'contract held' .cache/fuzz/$$h.log)"; \
		else \
			grep -v -e '^stat::' -e '^#[0-9]' .cache/fuzz/$$h.log | tail -n 30; failed="$$failed $$h"; \
		fi; \
	done; \
	test -z "$$failed" || { echo "fuzz: failed:$$failed; reproducers in fuzz/crashes/"; exit 1; }

docs:
	@echo "docs live in docs/*.md"

clean:
	rm -rf $(VENV) .venv-3.* .cache build dist src/*.egg-info src/openline/protocol/*.so
