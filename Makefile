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
	$(BIN)/python -m compileall -q pipeline operators sinks
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pattern-tracker run

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The long reliability suite (README "Reliability suite"): 100k-event crash/restart, 20k events
# through every chaos fault, long fuzzing, disk pressure. Not part of `make test`.
soak: $(STAMP)
	$(BIN)/python -m pytest -q tests/soak -o python_files='soak_*.py' --durations=0

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' --config-settings editable_mode=compat
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info
