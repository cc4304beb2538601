"""The local runner: executes a validated pipeline in dependency order, recording it in MLMD.

Each step goes through `pipeline.launcher` (prepare, execute, publish) as a `runner.py step` task
does; this module adds what one process running a whole run can: the root's file lock as well as
its lease in the store, the worker process that imports TensorFlow ahead, and warm-ups of the next
steps. A failure is recorded FAILED, its files removed, and nothing downstream runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline import step_worker
from pipeline.artifacts import STAGING_PREFIX, Artifact
from pipeline.component import Item, Node, Outcome
from pipeline.dag import Pipeline
from pipeline.errors import ExecutionError, Interrupted, RunBlocked
from pipeline.launcher import Prepared, StepResult, Upstream, damage, items_of, launch, new_outputs
from pipeline.lock import RootLock
from pipeline.memory import peak_rss_mb, release_free_memory, rss_mb, settle_heap
from pipeline.metadata import MetadataStore
from pipeline.runs import RunResult, close_run, new_run_id, open_run, run_temp_dir
from pipeline.step_worker import StepWorker
from pipeline.text import never_world_writable

__all__ = [
    "STAGING_PREFIX",
    "RunOptions",
    "RunResult",
    "StepResult",
    "damage",
    "new_run_id",
    "run_pipeline",
]


@dataclass
class RunOptions:
    """How to run: where artifacts and metadata go, caching, Beam flags, lock waiting, output."""

    pipeline_root: str
    metadata: str | None = None  # a sqlite path or a postgresql:// / mysql:// URL
    enable_cache: bool = True
    rerun_from: str | None = None  # run this step and the steps after it even if unchanged
    beam_args: list[str] = field(default_factory=list)
    lock_wait_seconds: float = 0.0
    log: Callable[[str], None] = print
    # Steps whose component names modules to preload execute in a worker process that imports
    # them ahead (see pipeline.step_worker); False executes every step in this process.
    step_worker: bool = True
    run_id: str | None = None  # default: a new one, from the time

    @property
    def metadata_spec(self) -> str:
        return self.metadata or os.path.join(self.pipeline_root, "metadata.sqlite")


def run_pipeline(pipeline: Pipeline, options: RunOptions) -> RunResult:
    """Runs `pipeline` once. Raises DefinitionError before anything runs, LockHeldError if another
    run holds the root; a failing component ends the run with `RunResult.error` set."""
    order = pipeline.validate()
    never_world_writable()
    forced = frozenset(pipeline.downstream_of(options.rerun_from)) if options.rerun_from else frozenset()
    root = os.path.abspath(options.pipeline_root)
    os.makedirs(root, exist_ok=True)
    run_id = options.run_id or new_run_id()
    with RootLock(root, run_id, options.lock_wait_seconds, log=options.log), run_temp_dir(root, run_id):
        started = time.monotonic()  # a wait for the lock is not the run's time
        store = MetadataStore(options.metadata_spec)
        scope = open_run(
            store,
            pipeline,
            root,
            run_id,
            pid=os.getpid(),
            wait_seconds=options.lock_wait_seconds,
            log=options.log,
            beam_args=list(options.beam_args),
            enable_cache=options.enable_cache,
            forced=forced,
        )
        options.log(f"run {run_id} of pipeline {pipeline.name} (root {root})")
        steps = _Steps(options)
        results: list[StepResult] = []
        published: Upstream = {}
        items_by_node: dict[str, list[Item]] = {}
        error: ExecutionError | RunBlocked | None = None
        interrupted: Interrupted | None = None
        try:
            for index, node in enumerate(order, 1):
                if interrupted is not None or error is not None:
                    why = (
                        f"the run was {interrupted}"
                        if interrupted is not None
                        else f"{error.component_id} stopped the run"  # type: ignore[union-attr]
                    )
                    results.append(StepResult(node.id, "SKIPPED", note=why))
                    continue
                options.log(f"[{index}/{len(order)}] {node.id}")
                steps.next_nodes = order[index : index + WARM_UP_AHEAD]
                steps.remaining = order[index - 1 :]
                try:
                    items = items_of(scope, node, items_by_node)
                except ExecutionError as failure:
                    error = failure
                    results.append(
                        StepResult(node.id, "FAILED", failure.execution_id, note=str(failure.cause))
                    )
                    continue
                outputs: dict[str, list[Artifact]] = {}
                for item in items if items is not None else [None]:
                    if item is not None:
                        options.log(f"    {node.id} {item.label} ({item.index + 1} of {len(items or [])})")
                    step_started = time.monotonic()
                    try:
                        step = launch(scope, node, published, steps.execute, item)
                    except Interrupted as stop:
                        interrupted = stop
                        spent = time.monotonic() - step_started
                        label = item.label if item else ""
                        results.append(
                            StepResult(
                                node.id, "FAILED", stop.execution_id, spent, note=str(stop), item=label
                            )
                        )
                        break
                    except ExecutionError as failure:
                        error = failure
                        spent = time.monotonic() - step_started
                        results.append(
                            StepResult(
                                node.id,
                                "FAILED",
                                failure.execution_id,
                                spent,
                                note=str(failure.cause),
                                item=item.label if item else "",
                            )
                        )
                        break
                    results.append(step)
                    for key, artifact in step.outputs.items():
                        outputs.setdefault(key, []).append(artifact)
                    if step.status == "BLOCKED":
                        error = RunBlocked(node.id, step.execution_id, step.note)
                        break
                if items is not None:
                    items_by_node[node.id] = items
                published.update(
                    {
                        (node.id, key): found if items is not None else found[0]
                        for key, found in outputs.items()
                    }
                )
        finally:
            steps.release()
        result = RunResult(run_id, results, time.monotonic() - started, error)
        if interrupted is not None:
            result.interrupted = interrupted.signal_name
            close_run(scope, result, None)  # recorded INTERRUPTED, with its report; no retention now
            interrupted.result = result
            raise interrupted
        close_run(scope, result, pipeline.retention)
    return result


# How many steps ahead a step's warm-up starts: the Pusher's smoke-check process takes about 3 s to
# import TensorFlow, longer than the Evaluator alone now takes on small data.
WARM_UP_AHEAD = 2


class _Steps:
    """How this process executes prepared steps: TensorFlow's in the worker process, the others
    here, each starting the warm-ups of the steps after it."""

    def __init__(self, options: RunOptions):
        self.options = options
        self.next_nodes: list[Node] = []  # the steps after the one running, which may warm up
        self.remaining: list[Node] = []  # the step running and the ones after it
        self.warm_ups: dict[str, Callable[[], None]] = {}  # node id -> undo its warm-up
        self.worker: StepWorker | None = None

    def warm_up_next(self) -> None:
        """Lets the next steps prepare in the background while this one executes."""
        for upcoming in self.next_nodes:
            if upcoming.component.warm_up and upcoming.id not in self.warm_ups:
                self.warm_ups[upcoming.id] = upcoming.component.warm_up()

    def start_worker(self) -> None:
        """When the first step executes: the worker process for this and later steps that preload
        modules, so that it imports the first one's while the steps before it execute. (Only the
        first one's: the next steps import theirs as they start, after the first one's peak of
        memory rather than under it.)"""
        modules = next((n.component.preload for n in self.remaining if n.component.preload), ())
        if self.worker is None and modules and self.options.step_worker:
            self.worker = step_worker.acquire(list(modules))

    def release(self) -> None:
        """At the end of the run: undoes unused warm-ups and stops the worker process."""
        for release in self.warm_ups.values():
            release()
        self.warm_ups.clear()
        if self.worker is not None:
            step_worker.give_back(self.worker)
            self.worker = None

    def execute(self, prepared: Prepared) -> Outcome:
        """Runs the component, in the worker process if it preloads modules."""
        self.start_worker()
        self.warm_up_next()
        node, ctx = prepared.node, prepared.ctx
        outputs = new_outputs(prepared)
        if self.worker is not None and node.component.preload:
            return self.worker.execute(node.component.run, ctx, prepared.params, prepared.inputs, outputs)
        node.component.run(ctx, prepared.params, **prepared.inputs, **outputs)
        settle_heap()
        release_free_memory()
        return ctx.outcome(outputs, f"memory {rss_mb()} MB, peak so far {peak_rss_mb()} MB")
