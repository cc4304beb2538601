"""One step of one run, as a task a scheduler runs (`runner.py step NODE --run-id ID`).

The task opens or joins the run's context, takes the root's lease for the run, resolves the
node's inputs from what its upstream nodes published in that run, and launches the step through
`pipeline.launcher`, as `runner.py run` does. It is idempotent: a node already COMPLETE or CACHED
in the run returns at once; one left RUNNING by a dead process is closed FAILED and run again;
one still running elsewhere raises StepBusy. The task that leaves nothing more to run closes the
run (its outcome, report, retention, the lease): the last step, or one that failed or stopped the
run. A failed run's retried task opens it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.artifacts import Artifact
from pipeline.dag import Pipeline
from pipeline.errors import DefinitionError, ExecutionError, Interrupted, PipelineError
from pipeline.launcher import HOST, StepResult, execute_here, launch
from pipeline.lease import process_alive
from pipeline.metadata import PIPELINE_RUN, MetadataStore, custom, state_name
from pipeline.runs import (
    RunResult,
    check_same_run,
    close_interrupted,
    close_run,
    open_run,
    result_from_store,
    run_temp_dir,
    step_from_execution,
)
from pipeline.text import never_world_writable

DONE = ("COMPLETE", "CACHED")


class UpstreamNotDone(PipelineError):
    """An input's producing step has not completed in this run."""


class StepBusy(PipelineError):
    """The step is running in another live process, or another run holds the root."""


@dataclass
class StepOptions:
    pipeline_root: str
    run_id: str
    metadata: str | None = None
    enable_cache: bool = True
    beam_args: list[str] = field(default_factory=list)
    wait_seconds: float = 0.0
    run_properties: dict = field(default_factory=dict)  # recorded on the run (orchestrator, logical date)
    log: Callable[[str], None] = print

    @property
    def metadata_spec(self) -> str:
        return self.metadata or os.path.join(self.pipeline_root, "metadata.sqlite")


@dataclass
class TaskResult:
    step: StepResult
    already_done: bool = False
    run: RunResult | None = None  # set when this task closed the run


def run_step(pipeline: Pipeline, node_id: str, options: StepOptions) -> TaskResult:
    """Runs node `node_id` of run `options.run_id`. Raises DefinitionError (unknown node, a run
    id of another pipeline), UpstreamNotDone, StepBusy or LockHeldError before anything runs;
    a failing step is a TaskResult whose step is FAILED (recorded, and the run closed)."""
    order = pipeline.validate()
    never_world_writable()
    by_id = {n.id: n for n in order}
    if node_id not in by_id:
        raise DefinitionError(
            f"pipeline {pipeline.name!r} has no step {node_id!r}; its steps: {', '.join(by_id)}"
        )
    node = by_id[node_id]
    root = os.path.abspath(options.pipeline_root)
    os.makedirs(root, exist_ok=True)
    store = MetadataStore(options.metadata_spec)
    run_id, log = options.run_id, options.log
    check_same_run(store, pipeline.name, root, run_id)
    run_ctx = store.mlmd.get_context_by_type_and_name(PIPELINE_RUN, run_id)
    newest = _newest_by_node(store, run_ctx)
    earlier = newest.get(node_id)
    if earlier is not None and state_name(earlier) in DONE:
        log(f"{node_id} is already {state_name(earlier)} in run {run_id} (execution {earlier.id})")
        return TaskResult(step_from_execution(store, earlier), already_done=True)
    if earlier is not None and state_name(earlier) == "RUNNING":
        if custom(earlier, "host") != HOST or process_alive(custom(earlier, "pid")):
            raise StepBusy(
                f"{node_id} of run {run_id} is running (execution {earlier.id}, pid "
                f"{custom(earlier, 'pid')} on {custom(earlier, 'host')}); try again when it ends"
            )
    upstream = _upstream_outputs(store, node, newest, run_id)
    scope = open_run(
        store,
        pipeline,
        root,
        run_id,
        wait_seconds=options.wait_seconds,
        log=log,
        beam_args=list(options.beam_args),
        enable_cache=options.enable_cache,
    )
    if options.run_properties:
        store.update_context(scope.run_ctx, **options.run_properties)
    if earlier is not None and state_name(earlier) == "RUNNING":
        close_interrupted(
            store, earlier, root, f"found and closed by a retry of {node_id} in run {run_id}", log
        )
    started = time.monotonic()
    log(f"run {run_id} of pipeline {pipeline.name}: step {node_id} (root {root})")
    with run_temp_dir(root, f"{run_id}.{node_id}", clean_others=False):
        try:
            step = launch(scope, node, upstream, execute_here)
        except ExecutionError as failure:
            step = StepResult(
                node_id, "FAILED", failure.execution_id, time.monotonic() - started, note=str(failure.cause)
            )
        except Interrupted as stop:
            # Recorded FAILED ("interrupted by SIGTERM") and its staging removed by the launcher;
            # the run is closed INTERRUPTED, as a scheduler's stop of this task stops the run.
            seconds = time.time() - custom(scope.run_ctx, "start_time", time.time())
            run = result_from_store(store, scope.run_ctx, order, seconds)
            run.interrupted = stop.signal_name
            stop.result = close_run(scope, run, None)
            raise
    result = TaskResult(step)
    newest = _newest_by_node(store, scope.run_ctx)
    finished = all(n.id in newest and state_name(newest[n.id]) in DONE for n in order)
    if step.status in ("FAILED", "BLOCKED") or finished:
        seconds = time.time() - custom(scope.run_ctx, "start_time", time.time())
        run = result_from_store(store, scope.run_ctx, order, seconds)
        result.run = close_run(scope, run, pipeline.retention)
    return result


def _newest_by_node(store: MetadataStore, run_ctx) -> dict[str, Any]:
    if run_ctx is None:
        return {}
    return {custom(e, "node_id"): e for e in store.executions_in(run_ctx)}


def _upstream_outputs(
    store: MetadataStore, node, newest: dict, run_id: str
) -> dict[tuple[str, str], Artifact]:
    found: dict[tuple[str, str], Artifact] = {}
    for producer in {up.id: up for up in node.upstream}.values():
        execution = newest.get(producer.id)
        state = state_name(execution) if execution is not None else None
        if execution is None or state not in DONE or custom(execution, "blocked"):
            why = {None: "has not run", "RUNNING": "is still running"}.get(state, f"is {state}")
            why = "stopped the run" if state in DONE else why
            raise UpstreamNotDone(
                f"{node.id} needs the outputs of {producer.id}, which {why} in run {run_id}; "
                f"run `step {producer.id} --run-id {run_id}` first"
            )
        for key, artifact in store.outputs_of(execution.id).items():
            found[(producer.id, key)] = artifact
    return found
