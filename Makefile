# Two commands do all set-up: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench soak clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

# Byte-compile our packages every time (fast when up to date): the hook is a new process per edit,
# and where PYTHONDONTWRITEBYTECODE is set a changed module would be compiled on every hook run.
COMPILE := $(BIN)/python -m compileall -q pipeline operators sinks

run: $(STAMP)
	$(COMPILE)
	$(BIN)/pattern-tracker run

test: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q tests

# The long reliability suite (README "Reliability suite"): 100k-event crash/restart, 20k events
# through every chaos fault, long fuzzing, disk pressure. Not part of `make test`.
soak: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q tests/soak -o python_files='soak_*.py' --durations=0

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' --config-settings editable_mode=compat
	$(COMPILE)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info
