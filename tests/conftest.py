"""The suite runs on one worker process per core and one more (pytest-xdist, `-n auto --dist loadfile` in
pyproject.toml): a test module stays on one worker, so its module fixtures (whole pipeline runs)
are built once. Modules that run whole pipelines go first, the longest first, so that the workers
finish together instead of one starting the longest module last. `-n 0` runs it in one process.

Those modules are marked `pipeline` (and the cron sequence also `soak`), so a quick loop over
the unit tests is `make test ARGS="-m 'not pipeline'"` (markers in pyproject.toml)."""

from __future__ import annotations

import os

import pytest

# Longest first (seconds each took with two workers on a 2-core machine); the rest keep their order.
SOAK_MODULES = {"test_operations.py"}
LONG_MODULES = [
    "test_operations.py",  # six pipeline runs: the soak
    "test_reliability.py",  # a SIGKILL in each component, then a run that completes
    "test_schedulers.py",  # a local run, the same on Airflow, on KFP, a kill on Airflow
    "test_distributed_training.py",
    "test_portable_runner.py",
    "test_end_to_end.py",
    "test_your_data.py",
    "test_trainer.py",
    "test_evaluator_pusher.py",
    "test_shared_store.py",
    "test_estimator.py",
    "test_tfx_compat.py",
    "test_transform_cache.py",  # tensorflow-transform's analyzer cache, on Beam
    "test_transform.py",  # TF Transform on Beam, ~35 s: started last, it ended the suite alone
    "test_estimator_guide.py",
]

MAX_WORKERS = 4  # each worker may run a pipeline of a few processes and ~2 GB


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = os.path.basename(str(item.path))
        return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)  # stable: tests keep their order within a module
    for item in items:
        name = os.path.basename(str(item.path))
        if name in LONG_MODULES:
            item.add_marker(pytest.mark.pipeline)
        if name in SOAK_MODULES:
            item.add_marker(pytest.mark.soak)


def pytest_xdist_auto_num_workers(config):
    # One more than the cores: a pipeline test spends much of its time waiting on the processes
    # it starts (a run, its step worker, a server), which a third worker fills (2 cores: 11:25 with
    # two workers, 10:57 with three, on the same code).
    return max(1, min((os.cpu_count() or 1) + 1, MAX_WORKERS))
