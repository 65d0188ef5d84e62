# The two commands of the README. Each sets up what it needs: a virtual
# environment in .venv with uv and nox, then the project and its test servers.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test bench clean

$(BIN)/nox:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv nox

# The server only, on the embedded stack: no test tools, no production backend.
$(VENV)/.installed: pyproject.toml | $(BIN)/nox
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[server]'
	touch $@

## Run the service: API and worker in one process, SQLite + ./data + the in-process broker.
serve: $(VENV)/.installed
	$(BIN)/imagecore serve

## Run every test session: lint, types, unit, integration (nox).
test: $(BIN)/nox
	$(BIN)/nox

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/nox
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test,bench]'
	touch $@

## Run the benchmarks and write BENCHMARKS.md and bench/plots/ (BENCH_ARGS=--quick to try it out).
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .nox
