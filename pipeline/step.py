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

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.component import Item
from pipeline.dag import Pipeline
from pipeline.errors import DefinitionError, ExecutionError, Interrupted, PipelineError
from pipeline.launcher import HOST, StepResult, Upstream, execute_here, items_of, launch
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
    """Runs node `node_id` of run `options.run_id` (every item of a node that runs once per item,
    skipping those already done). Raises DefinitionError (unknown node, a run id of another
    pipeline), UpstreamNotDone, StepBusy or LockHeldError before anything runs; a failing step is
    a TaskResult whose step is FAILED (recorded, and the run closed)."""
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
    recorded = recorded_executions(store, run_ctx)
    earlier = recorded.get(node_id, {})
    if earlier and _all_done(earlier):
        last = max(earlier.values(), key=lambda e: e.id)
        log(f"{node_id} is already {state_name(last)} in run {run_id} (execution {last.id})")
        return TaskResult(step_from_execution(store, last), already_done=True)
    for execution in earlier.values():
        if state_name(execution) == "RUNNING" and (
            custom(execution, "host") != HOST or process_alive(custom(execution, "pid"))
        ):
            raise StepBusy(
                f"{node_id} of run {run_id} is running (execution {execution.id}, pid "
                f"{custom(execution, 'pid')} on {custom(execution, 'host')}); try again when it ends"
            )
    upstream, upstream_items = _upstream_outputs(store, node, recorded, run_id)
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
    for execution in earlier.values():
        if state_name(execution) == "RUNNING":
            close_interrupted(
                store, execution, root, f"found and closed by a retry of {node_id} in run {run_id}", log
            )
    started = time.monotonic()
    log(f"run {run_id} of pipeline {pipeline.name}: step {node_id} (root {root})")
    steps: list[StepResult] = []
    with run_temp_dir(root, f"{run_id}.{node_id}", clean_others=False):
        try:
            items = items_of(scope, node, upstream_items)
            for item in items if items is not None else [None]:
                done = earlier.get(item.key if item else "")
                if done is not None and state_name(done) in DONE:
                    steps.append(step_from_execution(store, done))
                    continue
                if item is not None:
                    log(f"    {node_id} {item.label} ({item.index + 1} of {len(items or [])})")
                steps.append(launch(scope, node, upstream, execute_here, item))
                if steps[-1].status == "BLOCKED":
                    break
        except ExecutionError as failure:
            steps.append(
                StepResult(
                    node_id,
                    "FAILED",
                    failure.execution_id,
                    time.monotonic() - started,
                    note=str(failure.cause),
                )
            )
        except Interrupted as stop:
            # Recorded FAILED ("interrupted by SIGTERM") and its staging removed by the launcher;
            # the run is closed INTERRUPTED, as a scheduler's stop of this task stops the run.
            seconds = time.time() - custom(scope.run_ctx, "start_time", time.time())
            run = result_from_store(store, scope.run_ctx, order, seconds)
            run.interrupted = stop.signal_name
            stop.result = close_run(scope, run, None)
            raise
    step = next((s for s in steps if s.status in ("FAILED", "BLOCKED")), steps[-1])
    result = TaskResult(step)
    recorded = recorded_executions(store, scope.run_ctx)
    finished = all(n.id in recorded and _all_done(recorded[n.id]) for n in order)
    if step.status in ("FAILED", "BLOCKED") or finished:
        seconds = time.time() - custom(scope.run_ctx, "start_time", time.time())
        run = result_from_store(store, scope.run_ctx, order, seconds)
        result.run = close_run(scope, run, pipeline.retention)
    return result


def _all_done(by_key: dict[str, Any]) -> bool:
    """Whether a node's executions in a run cover all its items, each COMPLETE or CACHED (an
    execution of an item records the keys of all its node's items)."""
    if not by_key:
        return False
    expected = set(json.loads(custom(next(iter(by_key.values())), "map_keys", "[]") or "[]")) or {""}
    return all(key in by_key and state_name(by_key[key]) in DONE for key in expected)


def _upstream_outputs(
    store: MetadataStore, node, recorded: dict[str, dict[str, Any]], run_id: str
) -> tuple[Upstream, dict[str, list[Item]]]:
    """What the node's producers published in the run (a list in item order for a producer that
    ran once per item), and the items of those producers."""
    found: Upstream = {}
    items: dict[str, list[Item]] = {}
    for producer in {up.id: up for up in node.upstream}.values():
        executions = sorted(recorded.get(producer.id, {}).values(), key=lambda e: custom(e, "map_index", 0))
        for execution in executions or [None]:
            state = state_name(execution) if execution is not None else None
            if execution is None or state not in DONE or custom(execution, "blocked"):
                why = {None: "has not run", "RUNNING": "is still running"}.get(state, f"is {state}")
                why = "stopped the run" if state in DONE else why
                raise UpstreamNotDone(
                    f"{node.id} needs the outputs of {producer.id}, which {why} in run {run_id}; "
                    f"run `step {producer.id} --run-id {run_id}` first"
                )
        if not _all_done(recorded[producer.id]):
            raise UpstreamNotDone(
                f"{node.id} needs the outputs of {producer.id}, which has not run all its items in "
                f"run {run_id}; run `step {producer.id} --run-id {run_id}` first"
            )
        for execution in executions:
            for key, artifact in store.outputs_of(execution.id).items():
                if producer.mapped:
                    found.setdefault((producer.id, key), []).append(artifact)
                else:
                    found[(producer.id, key)] = artifact
        if producer.mapped:
            items[producer.id] = [
                Item(custom(e, "map_key", ""), custom(e, "map_label", ""), None) for e in executions
            ]
    return found, items


def recorded_executions(store: MetadataStore, run_ctx) -> dict[str, dict[str, Any]]:
    """node id -> item key ("" for a node that runs once) -> its newest execution in the run."""
    found: dict[str, dict[str, Any]] = {}
    if run_ctx is None:
        return found
    for execution in store.executions_in(run_ctx):  # ascending ids: the newest wins
        found.setdefault(custom(execution, "node_id"), {})[custom(execution, "map_key", "")] = execution
    return found
