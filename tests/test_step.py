"""One step of one run (`pipeline.step`, `runner.py step`): idempotent tasks, the run opened by
the first and closed by the last, recovery of a dead task, the root's lease in the store, and
resolver inputs recorded as INPUT events."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Annotated

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline import Component, InputArtifact, LockHeldError, OutputArtifact, Pipeline
from pipeline.artifacts import Examples, Schema
from pipeline.errors import DefinitionError
from pipeline.launcher import HOST, output_uri, staging_uri
from pipeline.metadata import Contexts, MetadataStore, custom, state_name
from pipeline.resolvers import PreviousSpan
from pipeline.runs import open_run
from pipeline.step import StepBusy, StepOptions, UpstreamNotDone, run_step
from tests.toy_components import toy_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def step(pipeline, node_id, root, run_id, **options):
    lines: list[str] = []
    task = run_step(
        pipeline, node_id, StepOptions(pipeline_root=str(root), run_id=run_id, log=lines.append, **options)
    )
    task.log = lines
    return task


def store_of(root) -> MetadataStore:
    return MetadataStore(os.path.join(root, "metadata.sqlite"))


def run_context(root, run_id):
    return store_of(root).mlmd.get_context_by_type_and_name("pipeline_run", run_id)


def test_steps_one_by_one_make_a_run_the_last_closes(tmp_path):
    pipeline = toy_pipeline()
    first = step(pipeline, "Write", tmp_path, "r1")
    assert first.step.status == "COMPLETE" and first.run is None
    assert custom(run_context(tmp_path, "r1"), "status") == "RUNNING"
    again = step(pipeline, "Write", tmp_path, "r1")
    assert again.already_done and again.step.execution_id == first.step.execution_id
    last = step(pipeline, "Read", tmp_path, "r1")
    assert last.step.status == "COMPLETE"
    assert last.run is not None and last.run.status == "COMPLETE" and os.path.exists(last.run.report)
    run = run_context(tmp_path, "r1")
    assert custom(run, "status") == "COMPLETE"
    store = store_of(tmp_path)
    [read] = [e for e in store.executions_in(run) if custom(e, "node_id") == "Read"]
    assert store.inputs_of(read.id)["examples"].id == first.step.outputs["examples"].id
    # The root is free again: a new run takes it, and reuses both steps' outputs.
    assert step(pipeline, "Write", tmp_path, "r2").step.status == "CACHED"
    assert step(pipeline, "Read", tmp_path, "r2").run.status == "COMPLETE"


def test_a_step_whose_upstream_has_not_run_names_it(tmp_path):
    with pytest.raises(
        UpstreamNotDone, match=r"Read needs the outputs of Write, which has not run in run r1"
    ):
        step(toy_pipeline(), "Read", tmp_path, "r1")
    assert run_context(tmp_path, "r1") is None  # nothing was opened


def test_an_unknown_step_lists_the_steps_and_a_foreign_run_id_is_refused(tmp_path):
    with pytest.raises(DefinitionError, match=r"has no step 'Nope'; its steps: Write, Read"):
        step(toy_pipeline(), "Nope", tmp_path, "r1")
    step(toy_pipeline(), "Write", tmp_path, "r1")
    other = toy_pipeline()
    other.name = "other"
    with pytest.raises(DefinitionError, match=r"run id 'r1' is a run of pipeline 'toy'"):
        step(other, "Write", tmp_path, "r1")


def test_another_run_holding_the_root_makes_a_step_busy_until_it_ends(tmp_path):
    pipeline = toy_pipeline()
    step(pipeline, "Write", tmp_path, "r1")
    with pytest.raises(LockHeldError, match=r"another run holds .* \(run r1"):
        step(pipeline, "Write", tmp_path, "r2")
    step(pipeline, "Read", tmp_path, "r1")  # r1 ends and frees the root
    assert step(pipeline, "Write", tmp_path, "r2").step.status == "CACHED"


def _running(root, run_id, node_id, pid):
    """A RUNNING execution of `node_id` in run `run_id` with a staged output, as a task killed
    mid-step leaves it."""
    pipeline = toy_pipeline()
    store = store_of(root)
    scope = open_run(store, pipeline, str(root), run_id, log=lambda m: None)
    contexts = Contexts(scope.pipeline_ctx, scope.run_ctx, store.node_context("toy", node_id))
    execution = store.register_execution(
        node_id, contexts, {}, node_id=node_id, run_id=run_id, pipeline_root=str(root), host=HOST, pid=pid
    )
    staged = staging_uri(output_uri(str(root), node_id, "examples", execution.id))
    os.makedirs(staged)
    return execution, staged


def test_a_step_left_running_by_a_dead_task_is_closed_and_run_again(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    execution, staged = _running(tmp_path, "r1", "Write", dead.pid)
    task = step(toy_pipeline(), "Write", tmp_path, "r1")
    assert task.step.status == "COMPLETE"
    [closed] = store_of(tmp_path).mlmd.get_executions_by_id([execution.id])
    assert state_name(closed) == "FAILED" and "interrupted" in custom(closed, "error")
    assert not os.path.exists(staged)


def test_a_step_running_in_a_live_process_is_busy(tmp_path):
    _running(tmp_path, "r1", "Write", os.getpid())
    with pytest.raises(StepBusy, match=r"Write of run r1 is running \(execution 1, pid"):
        step(toy_pipeline(), "Write", tmp_path, "r1")


def test_a_failed_step_closes_the_run_and_its_retry_reopens_it(tmp_path):
    task = step(toy_pipeline(fail=True), "Write", tmp_path, "r1")
    assert task.step.status == "FAILED" and "asked to fail" in task.step.note
    assert task.run.status == "FAILED" and custom(run_context(tmp_path, "r1"), "status") == "FAILED"
    assert not os.listdir(os.path.join(tmp_path, "Write", "examples"))  # nothing half-written
    step(toy_pipeline(), "Write", tmp_path, "r1")
    assert custom(run_context(tmp_path, "r1"), "status") == "RUNNING"
    assert step(toy_pipeline(), "Read", tmp_path, "r1").run.status == "COMPLETE"


def test_a_held_back_step_ends_the_run_held_back(tmp_path):
    pipeline = toy_pipeline(hold_back="kept back on purpose")
    assert step(pipeline, "Write", tmp_path, "r1").step.held_back == "kept back on purpose"
    assert step(pipeline, "Read", tmp_path, "r1").run.status == "HELD_BACK"
    # The next run reuses that result: it repeats run r1's decision, and is not held back itself.
    again = step(pipeline, "Write", tmp_path, "r2").step
    assert again.status == "CACHED" and again.held_back_in == "r1"
    assert step(pipeline, "Read", tmp_path, "r2").run.status == "COMPLETE"


@dataclass(frozen=True)
class CompareParams:
    pass


def run_compare(
    ctx,
    params,
    examples: InputArtifact[Examples],
    previous: Annotated[Examples | None, PreviousSpan(of="examples")],
    schema: OutputArtifact[Schema],
):
    with open(os.path.join(schema.uri, "schema.pbtxt"), "w") as f:
        f.write(f"# previous: {previous.id if previous else None}\n")


Compare = Component(
    name="Compare",
    run=run_compare,
    parameters=CompareParams,
    version="1",
)


def test_a_resolver_input_is_an_input_event_and_part_of_the_cache_key(tmp_path):
    from tests.toy_components import Write

    def pipeline(span):
        write = Write(text=f"span {span}")
        return Pipeline(name="toy", nodes=[write, Compare(examples=write.outputs["examples"])])

    with pytest.raises(DefinitionError, match="is found by the runner"):
        Compare(examples=Write().outputs["examples"], previous=Write().outputs["examples"])
    first = step(pipeline(1), "Write", tmp_path, "r1")
    step(pipeline(1), "Compare", tmp_path, "r1")
    store = store_of(tmp_path)
    # Write records span 1 every time; make the first one span 0 so the next has a previous span.
    [proto] = store.mlmd.get_artifacts_by_id([first.step.outputs["examples"].id])
    proto.properties["span"].int_value = 0
    store.mlmd.put_artifacts([proto])
    step(pipeline(2), "Write", tmp_path, "r2")
    task = step(pipeline(2), "Compare", tmp_path, "r2")
    inputs = store.inputs_of(task.step.execution_id)
    assert inputs["previous"].id == first.step.outputs["examples"].id
    [execution] = store.mlmd.get_executions_by_id([task.step.execution_id])
    assert custom(execution, "resolver_inputs") == '["previous"]'
    events = store.mlmd.get_events_by_execution_ids([execution.id])
    assert sorted(e.path.steps[0].key for e in events if e.type == pb.Event.INPUT) == ["examples", "previous"]


def test_the_step_command_exit_codes(tmp_path):
    """2 for an unknown step, 1 for an upstream that has not run, 0 for a step done."""

    def cli(*args):
        command = [sys.executable, "runner.py", "--pipeline-root", str(tmp_path), *args]
        return subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PIPELINE_FILE": ""}
        )

    unknown = cli("step", "Nope", "--run-id", "r1")
    assert unknown.returncode == 2 and "its steps: ImportSchemaGen, ExampleGen" in unknown.stderr
    upstream = cli("step", "StatisticsGen", "--run-id", "r1")
    assert upstream.returncode == 1
    assert "StatisticsGen needs the outputs of ExampleGen, which has not run in run r1" in upstream.stderr
    assert "Traceback" not in unknown.stderr + upstream.stderr
    done = cli("step", "ImportSchemaGen", "--run-id", "r1")
    assert done.returncode == 0 and "ImportSchemaGen: COMPLETE" in done.stdout


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_step_task_stopped_by_a_signal_is_recorded_and_closes_the_run(tmp_path, name, code):
    """A scheduler stopping a task (Airflow's and Kubernetes' SIGTERM) or Ctrl-C: exit 128 + the
    signal with one line, the execution FAILED 'interrupted by SIG...', nothing staged left, the
    run INTERRUPTED."""
    import signal
    import time

    from tests.test_pipeline_files import TOY, pipeline_file

    toy = pipeline_file(tmp_path, TOY.format(args="sleep=60"))
    root = tmp_path / "root"
    child = subprocess.Popen(
        [
            sys.executable,
            "runner.py",
            "--pipeline",
            toy,
            "--pipeline-root",
            str(root),
            "step",
            "Write",
            "--run-id",
            "r1",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = root / "write-started"
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert started.exists(), child.stderr.read() if child.poll() is not None else "Write did not start"
    child.send_signal(getattr(signal, name))
    error = child.communicate(timeout=60)[1]
    assert child.returncode == code, error
    assert sum("INTERRUPTED" in line for line in error.splitlines()) == 1, error
    assert f"run r1 INTERRUPTED by {name}: Write stopped (execution" in error and "Traceback" not in error
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    [execution] = [e for e in store.mlmd.get_executions() if custom(e, "node_id") == "Write"]
    assert state_name(execution) == "FAILED" and custom(execution, "error") == f"interrupted by {name}"
    assert custom(store.pipeline_runs("toy")[0], "status") == "INTERRUPTED"
    assert os.listdir(root / "Write" / "examples") == []  # what it staged is gone
