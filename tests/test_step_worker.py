"""The run's worker process (pipeline.step_worker): steps whose component preloads modules execute
there, with their logs, outputs, decisions and errors carried back; it dies with the runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, Pipeline, UserInputError
from pipeline.artifacts import Examples, Schema
from pipeline.local_runner import RunOptions, run_pipeline
from pipeline.metadata import MetadataStore, custom, state_name
from pipeline.step_worker import StepWorker, StepWorkerDied
from tests.toy_components import Write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Unpicklable(Exception):
    def __init__(self, message, lock):  # two arguments: pickle cannot rebuild it from its args
        super().__init__(message)
        self.lock = lock


@dataclass(frozen=True)
class ApartParams:
    behave: str = "well"  # or: user_error, unpicklable, hold_back, die


def run_apart(
    ctx: ExecutionContext,
    params: ApartParams,
    examples: InputArtifact[Examples],
    schema: OutputArtifact[Schema],
) -> None:
    from_threads = [threading.Thread(target=ctx.log, args=(f"from thread {i}",)) for i in range(3)]
    for thread in from_threads:
        thread.start()
    for thread in from_threads:
        thread.join()
    ctx.log(f"in process {os.getpid()}")
    ctx.warn("a warning from the step")
    schema.custom_properties["pid"] = os.getpid()
    schema.custom_properties["run"] = ctx.run_id
    schema.custom_properties["tmp"] = tempfile.gettempdir()
    schema.custom_properties["sees"] = os.environ.get("APART_SEES", "")
    with open(os.path.join(schema.uri, "schema.pbtxt"), "w") as f:
        f.write("# written apart\n")
    if params.behave == "user_error":
        raise UserInputError("examples.csv, line 3: asked to fail")
    if params.behave == "unpicklable":
        raise Unpicklable("cannot travel as it is", threading.Lock())
    if params.behave == "hold_back":
        ctx.hold_back("kept back on purpose")
    if params.behave == "die":
        os.kill(os.getpid(), signal.SIGKILL)


Apart = Component(
    name="Apart",
    run=run_apart,
    parameters=ApartParams,
    version="1",
    preload=("json", "no_such_module_is_only_reported_when_used"),
)


def run(root, behave="well", **options):
    write = Write()
    apart = Apart(examples=write.outputs["examples"], behave=behave)
    lines: list[str] = []
    result = run_pipeline(
        Pipeline(name="apart", nodes=[write, apart]),
        RunOptions(pipeline_root=str(root), log=lines.append, enable_cache=False, **options),
    )
    return result, lines


def test_a_step_that_preloads_runs_in_the_worker_with_its_log_and_outputs(tmp_path, monkeypatch):
    result, lines = run(tmp_path)
    assert result.ok, result.error
    schema = result.step("Apart").outputs["schema"]
    assert schema.custom_properties["pid"] != os.getpid()
    assert schema.custom_properties["run"] == result.run_id
    assert schema.custom_properties["tmp"] == os.path.join(tmp_path, ".tmp", result.run_id)
    with open(os.path.join(schema.uri, "schema.pbtxt")) as f:
        assert f.read() == "# written apart\n"
    assert sorted(line.strip() for line in lines if "from thread" in line) == [
        f"from thread {i}" for i in range(3)
    ]
    assert f"in process {schema.custom_properties['pid']}" in "\n".join(lines)
    assert "worker memory" in "\n".join(lines)
    store = MetadataStore(os.path.join(tmp_path, "metadata.sqlite"))
    [artifact] = [a for a in store.mlmd.get_artifacts() if a.uri == schema.uri]
    assert artifact.custom_properties["pid"].int_value == schema.custom_properties["pid"]
    # The next run of this process reuses the worker, which sees the runner's environment as it is.
    monkeypatch.setenv("APART_SEES", "set after the worker started")
    again, _ = run(tmp_path)
    reused = again.step("Apart").outputs["schema"].custom_properties
    assert reused["pid"] == schema.custom_properties["pid"]
    assert reused["sees"] == "set after the worker started"
    assert reused["tmp"] == os.path.join(tmp_path, ".tmp", again.run_id)
    # Without the worker, the same step runs in this process.
    result, _ = run(tmp_path / "here", step_worker=False)
    assert result.step("Apart").outputs["schema"].custom_properties["pid"] == os.getpid()


@pytest.mark.parametrize("step_worker", [True, False])
def test_a_steps_log_is_standard_logging_in_the_runner_whichever_process_ran_it(tmp_path, step_worker):
    """Records of `pipeline.step.<node>` with their levels, for any handler a user adds to the
    `pipeline` logger (here one that keeps them), and the run's output marks the warning."""
    import logging

    kept: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = kept.append
    logging.getLogger("pipeline").addHandler(handler)
    try:
        result, lines = run(tmp_path, step_worker=step_worker)
    finally:
        logging.getLogger("pipeline").removeHandler(handler)
    assert result.ok, result.error
    apart = [(r.name, r.levelname, r.getMessage()) for r in kept if r.name == "pipeline.step.Apart"]
    assert ("pipeline.step.Apart", "WARNING", "a warning from the step") in apart
    assert sum(1 for _, level, message in apart if level == "INFO" and "from thread" in message) == 3
    assert all(r.process == os.getpid() for r in kept)  # logged here, wherever the step ran
    assert "      warning: a warning from the step" in lines


@pytest.mark.parametrize(
    "behave, expected",
    [
        ("user_error", "examples.csv, line 3: asked to fail"),
        ("unpicklable", "Unpicklable: cannot travel as it is"),
        ("die", "the step's worker process was killed by SIGKILL (out of memory?)"),
    ],
)
def test_a_failing_step_in_the_worker_is_recorded_as_in_the_runner(tmp_path, behave, expected):
    before, _ = run(tmp_path / "before")
    worker_before = before.step("Apart").outputs["schema"].custom_properties["pid"]
    result, _ = run(tmp_path, behave=behave)
    assert not result.ok and result.error.component_id == "Apart"
    assert expected in str(result.error)
    store = MetadataStore(os.path.join(tmp_path, "metadata.sqlite"))
    apart = [e for e in store.mlmd.get_executions() if custom(e, "node_id") == "Apart"][-1]
    assert state_name(apart) == "FAILED" and expected in custom(apart, "error")
    detail = custom(apart, "traceback", "")
    if behave == "unpicklable":  # the traceback is the worker's: it shows where it was raised
        assert 'raise Unpicklable("cannot travel as it is"' in detail
    if behave == "user_error":
        assert detail == ""  # a user's mistake is its message
    outputs = os.path.join(tmp_path, "Apart", "schema")
    assert not os.path.exists(outputs) or not os.listdir(outputs)  # nothing half-written left
    # The worker where the step failed is not kept: the next run gets a new one.
    after, _ = run(tmp_path / "after")
    assert after.step("Apart").outputs["schema"].custom_properties["pid"] != worker_before


def test_a_held_back_step_in_the_worker_holds_the_run_back(tmp_path):
    result, _ = run(tmp_path, behave="hold_back")
    assert result.status == "HELD_BACK" and result.held_back == [("Apart", "kept back on purpose")]


def test_the_worker_dies_with_the_process_that_started_it(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from pipeline.step_worker import StepWorker
        worker = StepWorker(["json"])
        print(worker.process.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    worker_pid = int(parent.stdout.readline())
    os.kill(worker_pid, 0)  # alive
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker_pid):
        time.sleep(0.1)
    assert not _alive(worker_pid)


def test_a_worker_that_died_between_steps_is_named_when_the_next_step_comes():
    worker = StepWorker([])
    worker.process.kill()
    worker.process.wait()
    ctx = ExecutionContext("p", "/nonexistent", "Apart", 1, "run")
    with pytest.raises(StepWorkerDied, match="killed by SIGKILL"):
        worker.execute(run_apart, ctx, ApartParams(), {}, {})
    worker.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
