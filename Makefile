# The two commands: `make run` runs the penguin pipeline, `make test` runs the tests.
# Both build .venv from requirements.lock first when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test bench lint venv lock

run: venv
	$(PY) runner.py run $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

bench: venv
	$(PY) -m bench.pipeline $(ARGS)

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

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

# Regenerates the lock from requirements.in, with overrides.txt lifting ml-metadata's caps.
lock:
	uv pip compile requirements.in --override overrides.txt --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock
