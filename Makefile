# Two commands do all set-up: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench soak clean venv

venv: $(STAMP)

# An editable install: `pattern_tracker` maps onto pipeline/, operators/, sinks/ and config/
# (pyproject.toml [tool.setuptools.package-dir]); nothing is importable through the source root.
# Strict mode links each file under build/__editable__.*: edits show at once, and start-up pays
# for no import finder (the lenient finder costs every hook ~10 ms). Adding or removing a file
# changes its folder's mtime, which relinks on the next make.
EDITABLE := --config-settings editable_mode=strict
# pip's build warnings go to a log, shown only when the install fails.
PIP = sh -c '$(BIN)/python -m pip install --quiet "$$@" >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }' pip
SOURCE_DIRS := $(filter-out %__pycache__/,$(wildcard pipeline pipeline/*/ operators sinks config config/chaos \
	pipeline/web/static/*/ pipeline/web/static/*/*/))
$(STAMP): pyproject.toml $(SOURCE_DIRS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e . $(EDITABLE)
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) -e '.[test]' $(EDITABLE)
	touch $(TEST_STAMP)

$(BENCH_STAMP): $(TEST_STAMP)
	$(PIP) -e '.[test,bench]' $(EDITABLE)
	touch $(BENCH_STAMP)

# Byte-compile our packages every time (fast when up to date): the hook is a new process per edit,
# and where PYTHONDONTWRITEBYTECODE is set a changed module would be compiled on every hook run.
COMPILE := $(BIN)/python -m compileall -q build/__editable__.pattern_tracker-*

run: $(STAMP)
	$(COMPILE)
	$(BIN)/pattern-tracker run

# The layer contracts (pyproject [tool.importlinter], docs/architecture.md) run first: a
# violation fails make test before the suite starts (tests/test_architecture.py checks it too).
test: $(TEST_STAMP)
	$(COMPILE)
	@command -v chromium >/dev/null 2>&1 || echo "note: browser tests skip without Chromium: apt-get install chromium (CI's .ci/run does)"
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || echo "note: PostgreSQL tests skip without its server: apt-get install postgresql (CI's .ci/run does)"
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests

# The long reliability suite (docs/reliability.md): 100k-event crash/restart, 20k events
# through every chaos fault, long fuzzing, disk pressure. Not part of `make test`.
soak: $(TEST_STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q tests/soak -o python_files='soak_*.py' --durations=0

bench: $(BENCH_STAMP)
	$(COMPILE)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info
