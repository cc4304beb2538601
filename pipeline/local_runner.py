"""The local runner: executes a validated pipeline in dependency order, recording it in MLMD.

For each node: register a RUNNING execution with its inputs, let the component resolve what it
needs for the cache key, reuse the outputs of an earlier identical execution (CACHED) or run the
component into staging directories, rename them into place and publish them (COMPLETE). A failure
is recorded FAILED, its staged and renamed output directories removed, and nothing downstream runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline import step_worker
from pipeline.artifacts import Artifact
from pipeline.cache import cache_key, directory_fingerprint, params_fingerprint
from pipeline.component import ExecutionContext, Node
from pipeline.dag import Pipeline
from pipeline.errors import ExecutionError, RunBlocked, UserInputError, describe_error
from pipeline.lock import RootLock
from pipeline.memory import peak_rss_mb, release_free_memory, rss_mb, settle_heap
from pipeline.metadata import Contexts, MetadataStore, custom
from pipeline.step_worker import StepWorker

STAGING_PREFIX = ".staging-"
TEMP_DIR = ".tmp"
HOST = socket.gethostname()


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

    @property
    def metadata_spec(self) -> str:
        return self.metadata or os.path.join(self.pipeline_root, "metadata.sqlite")


@dataclass
class StepResult:
    node_id: str
    status: str  # COMPLETE, CACHED, FAILED, SKIPPED, or BLOCKED (a gate completed and said stop)
    execution_id: int | None = None
    seconds: float = 0.0
    outputs: dict[str, Artifact] = field(default_factory=dict)
    note: str = ""
    held_back: str = ""  # the step completed but kept its result from taking effect, and why


@dataclass
class RunResult:
    run_id: str
    steps: list[StepResult]
    seconds: float
    error: ExecutionError | RunBlocked | None = None
    report: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def held_back(self) -> list[tuple[str, str]]:
        """(node id, reason) of each step that completed but held its result back (a model not
        blessed, a push refused): a normal outcome, yet not the one a new run hopes for."""
        return [(s.node_id, s.held_back) for s in self.steps if s.held_back]

    @property
    def status(self) -> str:
        """COMPLETE, HELD_BACK (every step ran, one held its result back), BLOCKED (a gate
        stopped the run) or FAILED."""
        if isinstance(self.error, RunBlocked):
            return "BLOCKED"
        if self.error is not None:
            return "FAILED"
        return "HELD_BACK" if self.held_back else "COMPLETE"

    def step(self, node_id: str) -> StepResult:
        return next(s for s in self.steps if s.node_id == node_id)


def run_pipeline(pipeline: Pipeline, options: RunOptions) -> RunResult:
    """Runs `pipeline` once. Raises DefinitionError before anything runs, LockHeldError if another
    run holds the root; a failing component ends the run with `RunResult.error` set."""
    order = pipeline.validate()
    forced = pipeline.downstream_of(options.rerun_from) if options.rerun_from else set()
    root = os.path.abspath(options.pipeline_root)
    os.makedirs(root, exist_ok=True)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)
    with RootLock(root, run_id, options.lock_wait_seconds, log=options.log), _run_temp_dir(root, run_id):
        started = time.monotonic()  # a wait for the lock is not the run's time
        store = MetadataStore(options.metadata_spec)
        _recover_interrupted(store, pipeline.name, root, run_id, options.log)
        pipeline_ctx, run_ctx = store.start_run(
            pipeline.name, run_id, pipeline_root=root, host=HOST, pid=os.getpid()
        )
        options.log(f"run {run_id} of pipeline {pipeline.name} (root {root})")
        runner = _NodeRunner(pipeline, options, store, root, run_id, pipeline_ctx, run_ctx, forced)
        steps: list[StepResult] = []
        error: ExecutionError | RunBlocked | None = None
        try:
            for index, node in enumerate(order, 1):
                if error is not None:
                    steps.append(StepResult(node.id, "SKIPPED", note=f"{error.component_id} stopped the run"))
                    continue
                options.log(f"[{index}/{len(order)}] {node.id}")
                runner.next_nodes = order[index : index + WARM_UP_AHEAD]
                runner.remaining = order[index - 1 :]
                step_started = time.monotonic()
                try:
                    step = runner.run(node)
                except ExecutionError as failure:
                    error = failure
                    spent = time.monotonic() - step_started
                    steps.append(
                        StepResult(node.id, "FAILED", failure.execution_id, spent, note=str(failure.cause))
                    )
                    continue
                steps.append(step)
                if step.status == "BLOCKED":
                    error = RunBlocked(node.id, step.execution_id, step.note)
        finally:
            runner.release()
        seconds = time.monotonic() - started
        result = RunResult(run_id, steps, seconds, error)
        store.update_context(
            run_ctx,
            status=result.status,
            end_time=time.time(),
            seconds=round(seconds, 3),
            held_back="\n".join(f"{node}: {reason}" for node, reason in result.held_back),
        )
        result.report, full = _write_report(result, pipeline.name, root, store)
        store.update_context(run_ctx, report=result.report, report_full=int(full))
        if pipeline.retention is not None:
            from pipeline.retention import collect

            collect(store, pipeline.name, root, pipeline.retention, apply=True, log=options.log)
    return result


@contextlib.contextmanager
def _run_temp_dir(root: str, run_id: str):
    """Every temporary file of the run (Beam's, TensorFlow's, the libraries', its child processes')
    under `<root>/.tmp/<run_id>/`, removed when the run ends. Whatever is there from before belongs
    to a run that was killed (this one holds the root's lock), and is removed first."""
    base = os.path.join(root, TEMP_DIR)
    for stale in os.listdir(base) if os.path.isdir(base) else []:
        shutil.rmtree(os.path.join(base, stale), ignore_errors=True)
    path = os.path.join(base, run_id)
    os.makedirs(path)
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


def _write_report(result: RunResult, pipeline_name: str, root: str, store: MetadataStore) -> tuple[str, bool]:
    """The run's report and whether it is a full one. A run that only reused earlier outputs gets
    a few lines pointing to the last full report of the root, not another copy of it."""
    from pipeline.lineage import format_lineage, lineage
    from pipeline.report import write_pointer_report, write_run_report

    if result.steps and all(step.status == "CACHED" for step in result.steps):
        earlier = [
            custom(run, "report")
            for run in store.pipeline_runs(pipeline_name)
            if custom(run, "pipeline_root") == root
            and custom(run, "report_full") == 1
            and custom(run, "report")
        ]
        if earlier and os.path.exists(earlier[0]):
            return write_pointer_report(result, pipeline_name, root, earlier[0]), False
    last = [a for step in result.steps for a in step.outputs.values() if a.id is not None]
    lines = format_lineage(lineage(store, last[-1])) if last else []
    return write_run_report(result, pipeline_name, root, lines), True


# How many steps ahead a step's warm-up starts: the Pusher's smoke-check process takes about 3 s to
# import TensorFlow, longer than the Evaluator alone now takes on small data.
WARM_UP_AHEAD = 2


class _NodeRunner:
    def __init__(self, pipeline, options, store, root, run_id, pipeline_ctx, run_ctx, forced=frozenset()):
        self.pipeline = pipeline
        self.options = options
        self.store: MetadataStore = store
        self.root = root
        self.run_id = run_id
        self.pipeline_ctx = pipeline_ctx
        self.run_ctx = run_ctx
        self.published: dict[tuple[str, str], Artifact] = {}
        self.forced = forced  # ids of the steps that run even if unchanged (--rerun-from)
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

    def execute(self, node: Node, ctx: ExecutionContext, inputs: dict, outputs: dict) -> str:
        """Runs the component, in the worker process if it preloads modules; says where and how
        much memory that process holds."""
        if self.worker is not None and node.component.preload:
            outcome = self.worker.execute(
                node.component.run, ctx, node.params, inputs, outputs, self.options.metadata_spec
            )
            outputs.update(outcome.outputs)
            ctx.blocked, ctx.held_back = outcome.blocked, outcome.held_back
            return f"worker memory {outcome.rss_mb} MB, peak so far {outcome.peak_rss_mb} MB"
        node.component.run(ctx, node.params, **inputs, **outputs)
        settle_heap()
        release_free_memory()
        return f"memory {rss_mb()} MB, peak so far {peak_rss_mb()} MB"

    def run(self, node: Node) -> StepResult:
        started = time.monotonic()
        log = self.options.log
        channels = {key: node.inputs.get(key) for key in node.component.inputs}
        inputs = {
            key: None if ch is None else self.published[(ch.producer.id, ch.key)]
            for key, ch in channels.items()
        }
        contexts = Contexts(
            self.pipeline_ctx, self.run_ctx, self.store.node_context(self.pipeline.name, node.id)
        )
        execution_id = self.store.start_execution(
            node.component.name,
            contexts,
            inputs,
            node_id=node.id,
            run_id=self.run_id,
            code_version=node.component.version,
            # Whose it is: recovery closes only this root's executions whose process is gone.
            pipeline_root=self.root,
            host=HOST,
            pid=os.getpid(),
        )
        final_uris = {key: self._uri(node, key, execution_id) for key in node.component.outputs}
        self.store.update_execution(execution_id, output_uris=final_uris)
        ctx = ExecutionContext(
            pipeline_name=self.pipeline.name,
            pipeline_root=self.root,
            component_id=node.id,
            execution_id=execution_id,
            run_id=self.run_id,
            beam_args=[*self.pipeline.beam_args, *self.options.beam_args],
            store=self.store,
            log=lambda message: log(f"      {message}"),
            pipeline_file=self.pipeline.source_file,
        )
        staging = {key: self._staging_uri(uri) for key, uri in final_uris.items()}
        try:
            if node.component.resolve is not None:
                ctx.resolved = node.component.resolve(ctx, node.params, **inputs)
            key = cache_key(node.component.name, node.component.version, node.params, inputs, ctx.resolved)
            ctx.cache_key = key
            self.store.update_execution(
                execution_id,
                cache_key=key,
                resolved=ctx.resolved,
                parameters=params_fingerprint(node.params),
            )
            cached = self._lookup_cache(node, key)
            if cached is not None:
                earlier, outputs, blocked, held_back = cached
                self.store.cache_execution(
                    execution_id, contexts, outputs, cached_from=earlier, blocked=blocked, held_back=held_back
                )
                self._remember(node, outputs)
                seconds = time.monotonic() - started
                log(f"      CACHED: reused the outputs of execution {earlier} ({seconds:.1f} s)")
                if held_back:
                    log(f"      held back: {held_back}")
                if blocked:
                    return StepResult(node.id, "BLOCKED", execution_id, seconds, outputs, blocked)
                return StepResult(
                    node.id, "CACHED", execution_id, seconds, outputs, f"from {earlier}", held_back
                )
            for name, artifact in inputs.items():
                if artifact is not None and (problem := damage(artifact)):
                    raise UserInputError(
                        f"input {name!r} ({artifact.TYPE_NAME} #{artifact.id}) {problem}; "
                        "run again with --no-cache to rebuild it"
                    )
            outputs = {key: cls(staging[key]) for key, cls in node.component.outputs.items()}
            for uri in staging.values():
                os.makedirs(uri)
            self.start_worker()
            self.warm_up_next()
            memory = self.execute(node, ctx, inputs, outputs)
            for key, artifact in outputs.items():
                os.replace(staging[key], final_uris[key])
                artifact.uri = final_uris[key]
                artifact.custom_properties["fingerprint"] = directory_fingerprint(artifact.uri)
            seconds = time.monotonic() - started
            self.store.complete_execution(
                execution_id,
                contexts,
                outputs,
                seconds=round(seconds, 3),
                blocked=ctx.blocked or "",
                held_back=ctx.held_back or "",
            )
        except BaseException as error:  # noqa: BLE001 - recorded, cleaned up, re-raised
            _remove_dirs([*staging.values(), *final_uris.values()])
            # An error from the worker process carries the traceback it had there.
            detail = getattr(error, "worker_traceback", None) or traceback.format_exc()
            detail = "" if isinstance(error, UserInputError) else detail
            self.store.fail_execution(execution_id, describe_error(error), traceback=detail)
            log(f"      FAILED after {time.monotonic() - started:.1f} s")
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            raise ExecutionError(node.id, execution_id, error) from error
        self._remember(node, outputs)
        log(f"      COMPLETE in {seconds:.1f} s (execution {execution_id}; {memory})")
        if ctx.blocked:
            return StepResult(node.id, "BLOCKED", execution_id, seconds, outputs, ctx.blocked)
        return StepResult(node.id, "COMPLETE", execution_id, seconds, outputs, held_back=ctx.held_back or "")

    def _lookup_cache(self, node: Node, key: str) -> tuple[int, dict[str, Artifact], str, str] | None:
        if not self.options.enable_cache or node.id in self.forced:
            return None
        found = self.store.find_cached(self.pipeline.name, node.id, key, self.root)
        if found is None:
            return None
        execution, outputs = found
        damaged = [(a, problem) for a in outputs.values() if (problem := damage(a))]
        for artifact, problem in damaged:
            self.store.abandon_artifact(artifact.id, f"found by run {self.run_id}: {problem}")
        if damaged:
            self.options.log(
                f"      cache miss: an output of execution {execution.id} {damaged[0][1]}; "
                f"{damaged[0][0].TYPE_NAME} #{damaged[0][0].id} is marked ABANDONED and will be rebuilt"
            )
            return None
        return execution.id, outputs, custom(execution, "blocked", ""), custom(execution, "held_back", "")

    def _remember(self, node: Node, outputs: dict[str, Artifact]) -> None:
        for key, artifact in outputs.items():
            self.published[(node.id, key)] = artifact

    def _uri(self, node: Node, key: str, execution_id: int | None) -> str:
        return os.path.join(self.root, node.id, key, str(execution_id))

    @staticmethod
    def _staging_uri(final_uri: str) -> str:
        parent, name = os.path.split(final_uri)
        return os.path.join(parent, STAGING_PREFIX + name)


def damage(artifact: Artifact) -> str | None:
    """How a published artifact's directory differs from when it was published, or None: gone,
    or files added, removed or resized (its fingerprint covers names and sizes)."""
    if "://" in artifact.uri:
        return None  # remote storage: trusted
    if not os.path.isdir(artifact.uri):
        return f"has lost its files ({artifact.uri} is gone)"
    expected = artifact.custom_properties.get("fingerprint")
    if expected and directory_fingerprint(artifact.uri) != expected:
        return f"changed on disk since it was written (under {artifact.uri} a file was added, removed or resized)"
    return None


def _recover_interrupted(store: MetadataStore, pipeline_name: str, root: str, run_id: str, log) -> None:
    """Executions of this root still RUNNING while we hold its lock were cut off (killed process,
    power loss): record them FAILED with a note and remove whatever they had written. Another
    root's executions are never touched (they may be running now, on the same store), nor one
    whose process on this host is alive."""
    for execution in store.running_executions(pipeline_name):
        uris = json.loads(custom(execution, "output_uris", "{}") or "{}")
        if not _of_root(execution, uris, root):
            continue
        if custom(execution, "host") == HOST and process_alive(custom(execution, "pid")):
            log(
                f"execution {execution.id} ({custom(execution, 'node_id')}) is RUNNING in live process "
                f"{custom(execution, 'pid')}; left alone"
            )
            continue
        _remove_dirs([*uris.values(), *(_NodeRunner._staging_uri(u) for u in uris.values())])
        note = (
            f"interrupted: the process running it stopped before it finished; "
            f"found and closed by run {run_id}"
        )
        store.fail_execution(execution.id, note)
        log(f"execution {execution.id} ({custom(execution, 'node_id')}) was interrupted; marked FAILED")
    for run in store.pipeline_runs(pipeline_name):
        if custom(run, "status") == "RUNNING" and custom(run, "pipeline_root") in (None, root):
            store.update_context(run, status="INTERRUPTED")


def _of_root(execution, uris: dict, root: str) -> bool:
    """Whether an execution is this root's: recorded so, or (recorded before executions named
    their root) with every output under it."""
    recorded = custom(execution, "pipeline_root")
    if recorded is not None:
        return recorded == root
    return all(uri.startswith(root + os.sep) for uri in uris.values())


def process_alive(pid) -> bool:
    """Whether process `pid` of this host is running (False for no pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dirs(paths: list[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
