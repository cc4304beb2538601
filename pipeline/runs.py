"""A run's life in the store: opened (the root's lease, recovery of what a dead run left, the run
context), its outcome, and closed (status, report, retention, the lease released).

Both orchestrations use it: `runner.py run` opens and closes a run around its loop; with
`runner.py step`, the first task of a run opens it and the last one closes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

from pipeline import lease
from pipeline.errors import DefinitionError, ExecutionError, RunBlocked
from pipeline.launcher import HOST, RunScope, StepResult, output_dirs, remove_dirs
from pipeline.metadata import PIPELINE_RUN, MetadataStore, custom, quoted, state_name

TEMP_DIR = ".tmp"


@dataclass
class RunResult:
    run_id: str
    steps: list[StepResult]
    seconds: float
    error: ExecutionError | RunBlocked | None = None
    report: str | None = None
    interrupted: str | None = None  # the signal that stopped the run (SIGTERM, SIGINT)

    @property
    def ok(self) -> bool:
        return self.error is None and self.interrupted is None

    @property
    def held_back(self) -> list[tuple[str, str]]:
        """(node id, reason) of each step of this run that held its result back (a model not
        blessed, a push refused): a normal outcome, yet not the one a new run hopes for. A step
        that reused such a result (nothing new since) repeats an earlier run's decision: see
        `unchanged_since`."""
        return [(s.node_id, s.held_back) for s in self.steps if s.held_back and not s.held_back_in]

    @property
    def unchanged_since(self) -> list[tuple[str, str, str]]:
        """(node id, reason, run id) of each step that reused a result an earlier run held back."""
        return [(s.node_id, s.held_back, s.held_back_in) for s in self.steps if s.held_back_in]

    @property
    def status(self) -> str:
        """COMPLETE, HELD_BACK (every step ran, one held its result back), BLOCKED (a gate
        stopped the run), FAILED, or INTERRUPTED (a signal stopped it)."""
        if self.interrupted:
            return "INTERRUPTED"
        if isinstance(self.error, RunBlocked):
            return "BLOCKED"
        if self.error is not None:
            return "FAILED"
        return "HELD_BACK" if self.held_back else "COMPLETE"

    def step(self, node_id: str) -> StepResult:
        """The node's step (its last item's, for a node that ran once per item)."""
        return [s for s in self.steps if s.node_id == node_id][-1]

    def steps_of(self, node_id: str) -> list[StepResult]:
        """Every step of a node: one per item for a node that ran once per item."""
        return [s for s in self.steps if s.node_id == node_id]


def new_run_id() -> str:
    import secrets

    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)


def open_run(
    store: MetadataStore,
    pipeline,
    root: str,
    run_id: str,
    *,
    pid: int = 0,
    wait_seconds: float = 0.0,
    log=print,
    **scope_options,
) -> RunScope:
    """Takes the root for `run_id` and opens (or joins) its run context. A run new to the root
    first closes what an interrupted run left there. A run id that belongs to another pipeline or
    root is a DefinitionError."""
    check_same_run(store, pipeline.name, root, run_id)
    lease.acquire(store, root, run_id, pid=pid, wait_seconds=wait_seconds, log=log)
    existing = store.mlmd.get_context_by_type_and_name(PIPELINE_RUN, run_id)
    if existing is None:
        recover_interrupted(store, pipeline.name, root, run_id, log)
    pipeline_ctx, run_ctx = store.start_run(
        pipeline.name, run_id, pipeline_root=root, host=HOST, pid=pid or os.getpid()
    )
    if custom(run_ctx, "status") != "RUNNING":  # a retried task of a run that had ended
        store.update_context(run_ctx, status="RUNNING")
    return RunScope(pipeline, store, root, run_id, pipeline_ctx, run_ctx, log=log, **scope_options)


def check_same_run(store: MetadataStore, pipeline_name: str, root: str, run_id: str) -> None:
    run = store.mlmd.get_context_by_type_and_name(PIPELINE_RUN, run_id)
    if run is None:
        return
    if custom(run, "pipeline") != pipeline_name or custom(run, "pipeline_root") != root:
        raise DefinitionError(
            f"run id {run_id!r} is a run of pipeline {custom(run, 'pipeline')!r} on "
            f"{custom(run, 'pipeline_root')}, not of {pipeline_name!r} on {root}; give another run id"
        )


def close_run(scope: RunScope, result: RunResult, retention=None) -> RunResult:
    """Records the run's outcome, writes its report, applies retention and frees the root."""
    store = scope.store
    store.update_context(
        scope.run_ctx,
        status=result.status,
        end_time=time.time(),
        seconds=round(result.seconds, 3),
        held_back="\n".join(f"{node}: {reason}" for node, reason in result.held_back),
    )
    result.report, full = write_report(result, scope.pipeline.name, scope.root, store)
    store.update_context(scope.run_ctx, report=result.report, report_full=int(full))
    if retention is not None:
        from pipeline.retention import collect

        collect(store, scope.pipeline.name, scope.root, retention, apply=True, log=scope.log)
    lease.release(store, scope.root, scope.run_id)
    return result


def write_report(result: RunResult, pipeline_name: str, root: str, store: MetadataStore) -> tuple[str, bool]:
    """The run's report and whether it is a full one. A run that only reused earlier outputs gets
    a few lines pointing to the last full report of the root, not another copy of it."""
    from pipeline.lineage import format_lineage, lineage
    from pipeline.report import write_pointer_report, write_run_report

    if result.steps and all(step.status == "CACHED" for step in result.steps):
        full = f"custom_properties.report_full.int_value = 1 AND custom_properties.pipeline_root.string_value = '{quoted(root)}'"
        earlier = [
            custom(run, "report") for run in store.pipeline_runs(pipeline_name, limit=1, condition=full)
        ]
        if earlier and os.path.exists(earlier[0]):
            return write_pointer_report(result, pipeline_name, root, earlier[0]), False
    last = [a for step in result.steps for a in step.outputs.values() if a.id is not None]
    lines = format_lineage(lineage(store, last[-1])) if last else []
    return write_run_report(result, pipeline_name, root, lines), True


def recover_interrupted(store: MetadataStore, pipeline_name: str, root: str, run_id: str, log) -> None:
    """Executions of this root still RUNNING when a new run takes it were cut off (killed
    process, power loss): record them FAILED with a note and remove whatever they had written, and
    mark their runs INTERRUPTED. Another root's executions are never touched (they may be running
    now, on the same store), nor one whose process on this host is alive."""
    for execution in store.running_executions(pipeline_name):
        if custom(execution, "pipeline_root") != root:
            continue
        close_interrupted(store, execution, root, f"found and closed by run {run_id}", log)
    running = "custom_properties.status.string_value = 'RUNNING'"
    for run in store.pipeline_runs(pipeline_name, condition=running):
        if custom(run, "pipeline_root") in (None, root):
            store.update_context(run, status="INTERRUPTED")


def close_interrupted(store: MetadataStore, execution, root: str, by: str, log) -> bool:
    """Closes one RUNNING execution whose process is gone: FAILED, its files removed. Returns
    False (and leaves it) if its process on this host is alive."""
    node_id = custom(execution, "node_id")
    if custom(execution, "host") == HOST and lease.process_alive(custom(execution, "pid")):
        log(
            f"execution {execution.id} ({node_id}) is RUNNING in live process {custom(execution, 'pid')}; left alone"
        )
        return False
    remove_dirs(output_dirs(root, node_id, execution.id))
    store.fail_execution(execution, f"interrupted: the process running it stopped before it finished; {by}")
    log(f"execution {execution.id} ({node_id}) was interrupted; marked FAILED")
    return True


def result_from_store(store: MetadataStore, run_ctx, order, seconds: float) -> RunResult:
    """The run's result as its executions in the store say (for a run made of step tasks): per
    node (per item of a node that runs once per item) the newest execution; a node never started
    is SKIPPED after a failure or a block."""
    from pipeline.step import recorded_executions

    recorded = recorded_executions(store, run_ctx)
    steps: list[StepResult] = []
    error: ExecutionError | RunBlocked | None = None
    for node in order:
        executions = sorted(
            recorded.get(node.id, {}).values(), key=lambda e: (custom(e, "map_index", 0), e.id)
        )
        if not executions:
            steps.append(StepResult(node.id, "SKIPPED", note="not run"))
            continue
        for execution in executions:
            step = step_from_execution(store, execution)
            steps.append(step)
            if error is None and step.status == "FAILED":
                error = ExecutionError(node.id, execution.id, RuntimeError(step.note))
            elif error is None and step.status == "BLOCKED":
                error = RunBlocked(node.id, execution.id, step.note)
    return RunResult(run_ctx.name, steps, seconds, error)


def step_from_execution(store: MetadataStore, execution) -> StepResult:
    state = state_name(execution)
    node_id = custom(execution, "node_id")
    outputs = store.outputs_of(execution.id) if state in ("COMPLETE", "CACHED") else {}
    blocked, held_back = custom(execution, "blocked", ""), custom(execution, "held_back", "")
    status = "BLOCKED" if blocked and state in ("COMPLETE", "CACHED") else state
    note = (
        blocked
        or custom(execution, "error", "")
        or (f"from {custom(execution, 'cached_from')}" if state == "CACHED" else "")
    )
    seconds = custom(execution, "seconds", 0.0)
    held_back_in = store.deciding_run(execution) if held_back and state == "CACHED" else ""
    item = custom(execution, "map_label", "")
    return StepResult(node_id, status, execution.id, seconds, outputs, note, held_back, held_back_in, item)


@contextlib.contextmanager
def run_temp_dir(root: str, run_id: str, *, clean_others: bool = True):
    """Every temporary file of the run (Beam's, TensorFlow's, the libraries', its child processes')
    under `<root>/.tmp/<run_id>/`, removed when the block ends. With `clean_others`, whatever else
    is there belongs to a run that was killed (this one holds the root) and is removed first."""
    base = os.path.join(root, TEMP_DIR)
    if clean_others:
        for stale in os.listdir(base) if os.path.isdir(base) else []:
            if stale != run_id:
                shutil.rmtree(os.path.join(base, stale), ignore_errors=True)
    path = os.path.join(base, run_id)
    os.makedirs(path, exist_ok=True)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = path, path
    try:
        yield path
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(path, ignore_errors=True)
