# openline — every task a newcomer or CI needs. `make help` lists them.
# The first run of any target creates .venv and installs openline with its extras.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8765
# Pythons the core and interop tests also run on (CI runs them all); on 3.12 with
# OPENLINE_NO_SPEEDUPS=1, so the interop tests also cover the pure-Python frame path.
# `make fuzz`: seconds per harness, and the harnesses.
FUZZ_TIME ?= 14
FUZZ_HARNESSES ?= connection handshake wire hub deflate
MATRIX ?= $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3 $(HOME)/.pyenv/versions/3.12.*/bin/python3 $(HOME)/.pyenv/versions/3.13.*/bin/python3)

.PHONY: help serve test test-matrix style types coverage coverage-protocol suite-under-coverage fuzz docs autobahn autobahn-all node-deps autobahn-deps e2e screenshot bench bench-quick bench-check bench-cluster bench-hub bench-node-deps clean

help:
	@echo "make serve        run the main job: the hub and its demo page on http://$(HOST):$(PORT)/"
	@echo "make test         install everything and run the whole test suite (what CI runs)"
	@echo "make test-matrix  core, asyncio and interop tests on Python 3.10, 3.12 (pure Python) and 3.13"
	@echo "make style        ruff check and ruff format --check"
	@echo "make types        mypy --strict on src/"
	@echo "make coverage     branch coverage: protocol/ at 100 %, the rest at its floor; htmlcov/"
	@echo "make coverage-protocol  the protocol/ gate alone (about a minute)"
	@echo "make docs         the reference site into site/ (mkdocs, warnings are errors)"
	@echo "make fuzz         every atheris harness in fuzz/ for FUZZ_TIME (14) s each; CI runs it"
	@echo "make e2e          the browser tests: the demo page in headless Chromium (apt: chromium)"
	@echo "make screenshot   the browser tests, refreshing docs/demo.png"
	@echo "make examples     the FastAPI and Django example apps, under real servers and Chromium"
	@echo "make autobahn-all Autobahn|Testsuite including compression (sections 12-13, ~45 min with the uvicorn engine)"
	@echo "make bench        openline side by side with its peers into bench/results (~30 min)"
	@echo "make bench-quick  the same as a 1-minute smoke run into bench/results/quick"
	@echo "make bench-check  a 3-minute run: which ratios moved since bench/results (informative)"
	@echo "make bench-hub    one room: the hub vs python-socketio and Socket.IO on Node (~15 min)"
	@echo "make bench-cluster fan-out over 2 hub nodes + Redis vs 1 node in memory (~3 min)"

$(STAMP): pyproject.toml setup.py src/openline/protocol/_speedups.c
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

# Branch coverage is part of `make test` (and so of CI), in two gates:
# - protocol/ at 100 %, from its own tests only (`make coverage-protocol`, about 30 s of CPU):
#   it runs first, so a gap there fails in a minute, not after the whole suite;
# - everything else at no less than COVERAGE_FLOOR %, from the whole suite, which runs under
#   coverage (the C tracer; child processes too, see [tool.coverage.run]).
# `make coverage` runs the same and shows every file's missing lines, and htmlcov/.
# The floor is today's level rounded down, so that branches that depend on timing don't fail a
# run (90.3 % when it was set; 91.2 % on 2026-12-02 with the ASGI, uvicorn and sync layers;
# protocol/ 100 %, all 92.3 %): raise it as tests are added.
# Under coverage the suite costs about 1.85x the CPU, but most of its time is spent waiting
# (outages, timeouts, peers): on tests/asyncio the wall time grew by 2-12 %.
COVERAGE_FLOOR ?= 90
COV_DIR := $(CURDIR)/.cache/coverage
COV_PROTOCOL := COVERAGE_FILE=$(COV_DIR)/protocol $(BIN)/coverage
COV_SUITE := COVERAGE_FILE=$(COV_DIR)/suite $(BIN)/coverage
COV_REST := --omit='*/openline/protocol/*' --fail-under=$(COVERAGE_FLOOR)

test: $(STAMP) node-deps bench-node-deps autobahn-deps style types docs coverage-protocol suite-under-coverage
	@$(COV_SUITE) report $(COV_REST) --format=total >/dev/null || { \
		echo "branch coverage outside protocol/ is $$($(COV_SUITE) report --omit='*/openline/protocol/*' --format=total) %, below the floor of $(COVERAGE_FLOOR) %: make coverage shows what is missing"; exit 1; }
	@echo "branch coverage: protocol/ 100 %, the rest $$($(COV_SUITE) report --omit='*/openline/protocol/*' --format=total) % (floor $(COVERAGE_FLOOR) %)"

coverage-protocol: $(STAMP)
	@mkdir -p $(COV_DIR) && rm -f $(COV_DIR)/protocol*
	$(COV_PROTOCOL) run -m pytest -q tests/protocol
	@$(COV_PROTOCOL) combine -q
	$(COV_PROTOCOL) report --include='*/openline/protocol/*' --fail-under=100

suite-under-coverage: $(STAMP) node-deps bench-node-deps autobahn-deps
	@mkdir -p $(COV_DIR) && rm -f $(COV_DIR)/suite*
	$(COV_SUITE) run -m pytest
	@$(COV_SUITE) combine -q

test-matrix:
	@test -n "$(MATRIX)" || { echo "no Python 3.10/3.12/3.13 found under ~/.pyenv"; exit 1; }
	@set -e; for py in $(MATRIX); do \
		v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		venv=.venv-$$v; \
		if [ ! -f $$venv/.installed ] || [ src/openline/protocol/_speedups.c -nt $$venv/.installed ]; then \
			$$py -m venv $$venv; \
			$$venv/bin/python -m pip install -q -U pip; \
			OPENLINE_BUILD_EXTENSION=yes $$venv/bin/python -m pip install -q -e '.[dev]'; \
			touch $$venv/.installed; \
		fi; \
		pure=; [ "$$v" = 3.12 ] && pure=1; \
		echo "== Python $$v$${pure:+ (pure-Python frame path: OPENLINE_NO_SPEEDUPS=1)}"; \
		OPENLINE_NO_SPEEDUPS=$$pure $$venv/bin/python -m pytest -q -p no:cacheprovider tests/protocol tests/asyncio tests/interop tests/sync tests/test_layering.py; \
	done

style: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz examples docs/_hooks
	$(BIN)/ruff format --check src tests bench fuzz examples docs/_hooks

types: $(STAMP)
	$(BIN)/mypy

coverage: coverage-protocol suite-under-coverage
	$(COV_SUITE) html -q --directory=htmlcov
	$(COV_SUITE) report $(COV_REST)

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

# The FastAPI and Django example apps under uvicorn and hypercorn, with the Python client and Chromium.
.PHONY: examples
examples: $(STAMP)
	$(BIN)/python -m pytest tests/examples tests/e2e/test_example_apps.py -v

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

# The reference site: tutorial, how-to guides, docs/*.md and the API reference from the
# docstrings, into site/. --strict makes every warning (broken link or anchor, a docs/*.md
# missing from mkdocs.yml's nav, a docstring that doesn't parse) an error.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) .venv-3.* .cache build dist site src/*.egg-info src/openline/protocol/*.so
