# The two commands: `make run` runs the penguin pipeline, `make test` runs the tests.
# Both build .venv from requirements.lock first when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

AIRFLOW_VENV := .venv-airflow

.PHONY: run test test-fast bench lint typecheck check venv venv-airflow lock

run: venv
	$(PY) runner.py run $(ARGS)

test: venv venv-airflow
	$(PY) -m pytest $(ARGS)

# The unit tests alone (no whole-pipeline modules): the edit loop, under a minute.
test-fast: venv
	$(PY) -m pytest -m "not pipeline" $(ARGS)

bench: venv
	$(PY) -m bench.pipeline $(ARGS)

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# mypy over pipeline/, components/, runner.py, penguin/ and bench/ (settings in pyproject.toml).
typecheck: venv
	$(VENV)/bin/mypy

# What CI runs: lint, types, then the tests.
check: lint typecheck test

# The lock is installed without dependency resolution: ml-metadata 1.17.1 declares protobuf<5,
# yet runs with the protobuf 6 that TensorFlow 2.21 needs (see tests/test_metadata.py).
# requirements-tfx.lock: TFX's library, also without resolution (see the file).
venv:
	@want=$$(cat requirements.lock requirements-tfx.lock | sha256sum | cut -d' ' -f1); \
	if [ "$$(cat $(VENV)/.lock-sha256 2>/dev/null)" != "$$want" ]; then \
	  echo "Creating $(VENV) from requirements.lock and requirements-tfx.lock (a few minutes, once)..."; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && \
	  $(PY) -m pip install --quiet --no-deps -r requirements.lock -r requirements-tfx.lock && \
	  echo "$$want" > $(VENV)/.lock-sha256; \
	fi

# Airflow 3 in its own environment (its pins conflict with TensorFlow's): for exported DAGs.
venv-airflow:
	@want=$$(sha256sum requirements-airflow.lock | cut -d' ' -f1); \
	if [ "$$(cat $(AIRFLOW_VENV)/.lock-sha256 2>/dev/null)" != "$$want" ]; then \
	  echo "Creating $(AIRFLOW_VENV) from requirements-airflow.lock (a minute or two, once)..."; \
	  rm -rf $(AIRFLOW_VENV) && $(PYTHON) -m venv $(AIRFLOW_VENV) && \
	  $(AIRFLOW_VENV)/bin/pip install --quiet --no-deps -r requirements-airflow.lock && \
	  echo "$$want" > $(AIRFLOW_VENV)/.lock-sha256; \
	fi

# Regenerates the lock from requirements.in, with overrides.txt lifting ml-metadata's caps.
lock:
	uv pip compile requirements.in --override overrides.txt --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock
