"""One step in three phases, as TFX's launcher has them: prepare, execute, publish.

*prepare* (in the orchestrating process, the only one that talks to the store): resolve every
input, the upstream outputs and the resolver inputs (`pipeline.resolvers`); let the component
resolve what its cache key must cover; look up the cache; register the execution once, with all
its properties and INPUT events: RUNNING, or CACHED with OUTPUT events to the outputs it reuses,
or FAILED when preparing failed.

*execute* (here or in a worker process): the component gets its resolved artifacts and parameters,
never the store, writes its outputs into staging directories and returns an `Outcome`.

*publish*: the staging directories are renamed into place and fingerprinted, and one
`put_execution` marks the execution COMPLETE with its outputs LIVE. A failure anywhere is recorded
FAILED and what the step wrote is removed.

`runner.py run` (pipeline.local_runner) and `runner.py step` (pipeline.step) both launch steps
through `launch`, so the two paths cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.artifacts import STAGING_PREFIX, Artifact
from pipeline.cache import cache_key, directory_fingerprint, fingerprint_changed, params_fingerprint
from pipeline.component import ExecutionContext, Item, Node, Outcome
from pipeline.dag import Pipeline
from pipeline.errors import ExecutionError, Interrupted, UserInputError, describe_error
from pipeline.metadata import Contexts, MetadataStore, custom, flat
from pipeline.resolvers import Query

HOST = socket.gethostname()

# Executes a prepared step and says what it did: in this process (`execute_here`) or in a worker.
Executor = Callable[["Prepared"], Outcome]


@dataclass
class RunScope:
    """What every step of one run shares: the pipeline, the store, the root and the run's contexts."""

    pipeline: Pipeline
    store: MetadataStore
    root: str
    run_id: str
    pipeline_ctx: Any  # MLMD Context protos
    run_ctx: Any
    beam_args: list[str] = field(default_factory=list)
    enable_cache: bool = True
    forced: frozenset[str] = frozenset()  # steps that run even if unchanged (--rerun-from)
    log: Callable[[str], None] = print


@dataclass
class StepResult:
    node_id: str
    status: str  # COMPLETE, CACHED, FAILED, SKIPPED, or BLOCKED (a gate completed and said stop)
    execution_id: int | None = None
    seconds: float = 0.0
    outputs: dict[str, Artifact] = field(default_factory=dict)
    note: str = ""
    held_back: str = ""  # the step completed but kept its result from taking effect, and why
    # A CACHED step that repeats a result held back earlier: the run that held it back. Not a new
    # decision, so it does not hold this run back (an idle run after a held-back one exits 0).
    held_back_in: str = ""
    item: str = ""  # for a node that runs once per item: which one, as a person reads it (`span 2008`)

    @property
    def name(self) -> str:
        """The node id, and the item for a node that runs once per item: `ExampleGen[span 2008]`."""
        return f"{self.node_id}[{self.item}]" if self.item else self.node_id


@dataclass
class Prepared:
    """A step registered in the store, ready to execute (or already CACHED: `cached` is set)."""

    node: Node
    contexts: Contexts
    execution: Any  # the registered MLMD execution proto
    inputs: dict[str, Any]  # an artifact, None, or a list of artifacts for a list input
    ctx: ExecutionContext
    params: Any = None  # the node's parameters, or its item's
    final_uris: dict[str, str] = field(default_factory=dict)
    staging: dict[str, str] = field(default_factory=dict)
    cached: StepResult | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def execution_id(self) -> int:
        return self.execution.id


# What steps before a node published in the run: (producer id, output key) -> its artifact, or
# the list of them, in item order, for a producer that runs once per item.
Upstream = dict[tuple[str, str], Any]


def launch(
    scope: RunScope, node: Node, upstream: Upstream, executor: Executor, item: Item | None = None
) -> StepResult:
    """Prepares, executes and publishes one step (one `item` of a node that runs per item).
    Raises ExecutionError (recorded FAILED, its files removed) when it fails; KeyboardInterrupt
    and SystemExit are recorded, then re-raised."""
    prepared = prepare(scope, node, upstream, item)
    if prepared.cached is not None:
        return prepared.cached
    try:
        outcome = executor(prepared)
        return publish(scope, prepared, outcome)
    except BaseException as error:  # noqa: BLE001 - recorded, cleaned up, re-raised
        fail(scope, prepared, error)
        raise  # unreachable: fail raises


def items_of(scope: RunScope, node: Node, upstream_items: dict[str, list[Item]]) -> list[Item] | None:
    """The items a node runs once each in this run, or None for a node that runs once: what its
    component's fan-out lists (ExampleGen's window of spans, found on disk now), or the items of
    the node that feeds its single input. Listing nothing is an ExecutionError, recorded FAILED
    like a step that failed before it ran."""
    if not node.mapped:
        return None
    fan_out = node.component.fan_out
    try:
        if fan_out is not None and fan_out.applies(node.params):
            found, note = fan_out.items(node.params)
            scope.log(f"      {note}")
        else:
            producers = {
                channel.producer.id
                for key, channel in node.inputs.items()
                if channel is not None and channel.producer.mapped and not node.component.inputs[key].many
            }
            keyed = {p: [i.key for i in upstream_items[p]] for p in sorted(producers)}
            if len({tuple(keys) for keys in keyed.values()}) > 1:
                raise UserInputError(
                    f"its inputs come once per item from nodes with different items: {keyed}; feed it "
                    "from nodes that run over the same items"
                )
            found = [Item(i.key, i.label, node.params) for i in upstream_items[sorted(producers)[0]]]
    except (UserInputError, OSError) as error:
        execution = scope.store.register_execution(
            node.component.name,
            Contexts(
                scope.pipeline_ctx, scope.run_ctx, scope.store.node_context(scope.pipeline.name, node.id)
            ),
            {},
            state="FAILED",
            error=describe_error(error),
            node_id=node.id,
            pipeline=scope.pipeline.name,
            run_id=scope.run_id,
            code_version=node.component.version,
            pipeline_root=scope.root,
            host=HOST,
            pid=os.getpid(),
        )
        scope.log(f"      FAILED before it ran: {describe_error(error)}")
        raise ExecutionError(node.id, execution.id, error) from error
    keys = tuple(i.key for i in found)
    return [dataclasses.replace(item, index=n, keys=keys) for n, item in enumerate(found)]


def wired_input(node: Node, key: str, upstream: Upstream, item: Item | None) -> Any:
    """What input `key` of `node` takes from `upstream`: the producer's artifact; for a producer
    that ran once per item, the list of them (a list input) or the item's own (a single input)."""
    channel = node.inputs.get(key)
    if channel is None:
        return None
    value = upstream[(channel.producer.id, channel.key)]
    if node.component.inputs[key].many:
        return value if isinstance(value, list) else [value]
    if isinstance(value, list):
        if item is None or item.index >= len(value):
            raise UserInputError(f"{node.id}: input {key!r} has {len(value)} artifacts and no item to pick")
        return value[item.index]
    return value


def prepare(scope: RunScope, node: Node, upstream: Upstream, item: Item | None = None) -> Prepared:
    store, log = scope.store, scope.log
    contexts = Contexts(scope.pipeline_ctx, scope.run_ctx, store.node_context(scope.pipeline.name, node.id))
    params = item.params if item is not None else node.params
    inputs: dict[str, Any] = {}
    ctx = ExecutionContext(
        pipeline_name=scope.pipeline.name,
        pipeline_root=scope.root,
        component_id=node.id,
        execution_id=0,
        run_id=scope.run_id,
        beam_args=[*scope.pipeline.beam_args, *scope.beam_args],
        sink=lambda message: log(f"      {message}"),
        pipeline_file=scope.pipeline.source_file,
    )
    props: dict[str, Any] = {
        "node_id": node.id,
        "pipeline": scope.pipeline.name,
        "run_id": scope.run_id,
        "code_version": node.component.version,
        # Whose it is: recovery closes only this root's executions whose process is gone.
        "pipeline_root": scope.root,
        "host": HOST,
        "pid": os.getpid(),
        # Inputs found in the store, not produced upstream in this run: lineage shows them as
        # leaves (the baseline model's own history is its own lineage, not this one's).
        "resolver_inputs": [
            key
            for key, declared in node.component.inputs.items()
            if not declared.wired and not declared.resolver.follows_lineage
        ],
    }
    if item is not None:
        ctx.item = item.label
        props.update(map_key=item.key, map_label=item.label, map_index=item.index, map_keys=list(item.keys))
    try:
        for key, declared in node.component.inputs.items():
            if declared.wired:
                inputs[key] = wired_input(node, key, upstream, item)
        for key, declared in node.component.inputs.items():
            if not declared.wired:
                query = Query(store, scope.pipeline.name, node.id, scope.root, params, declared.type)
                inputs[key] = declared.resolver.resolve(query, inputs)
        if node.component.resolve is not None:
            ctx.resolved = node.component.resolve(ctx, params, **inputs)
        keyed = {
            key: value
            for key, value in inputs.items()
            if node.component.inputs[key].wired or node.component.inputs[key].resolver.in_cache_key
        }
        ctx.cache_key = cache_key(node.component.name, node.component.version, params, keyed, ctx.resolved)
        props.update(cache_key=ctx.cache_key, resolved=ctx.resolved, parameters=params_fingerprint(params))
        cached = _lookup_cache(scope, node, ctx.cache_key)
    except BaseException as error:  # noqa: BLE001 - recorded FAILED, then raised
        detail = "" if isinstance(error, UserInputError) else traceback.format_exc()
        execution = store.register_execution(
            node.component.name,
            contexts,
            {k: a for k, a in inputs.items() if a and all(one.id is not None for one in flat([a]))},
            state="FAILED",
            error=describe_error(error),
            traceback=detail,
            **props,
        )
        log(f"      FAILED before it ran: {describe_error(error)}")
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        raise ExecutionError(node.id, execution.id, error) from error
    if cached is not None:
        earlier, outputs = cached
        blocked, held_back = custom(earlier, "blocked", ""), custom(earlier, "held_back", "")
        execution = store.register_execution(
            node.component.name,
            contexts,
            inputs,
            state="CACHED",
            outputs=outputs,
            cached_from=earlier.id,
            blocked=blocked,
            held_back=held_back,
            **props,
        )
        prepared = Prepared(node, contexts, execution, inputs, ctx, params)
        seconds = time.monotonic() - prepared.started
        log(f"      CACHED: reused the outputs of execution {earlier.id} ({seconds:.1f} s)")
        held_back_in = store.deciding_run(earlier) if held_back else ""
        if held_back:
            log(f"      unchanged since run {held_back_in}, which held back: {held_back.splitlines()[0]}")
        status, note = ("BLOCKED", blocked) if blocked else ("CACHED", f"from {earlier.id}")
        prepared.cached = StepResult(
            node.id, status, execution.id, seconds, outputs, note, held_back, held_back_in, ctx.item
        )
        return prepared
    execution = store.register_execution(node.component.name, contexts, inputs, **props)
    ctx.execution_id = execution.id
    prepared = Prepared(node, contexts, execution, inputs, ctx, params)
    prepared.final_uris = {
        key: output_uri(scope.root, node.id, key, execution.id) for key in node.component.outputs
    }
    prepared.staging = {key: staging_uri(uri) for key, uri in prepared.final_uris.items()}
    try:
        for name, artifact in [(k, a) for k, v in inputs.items() if v for a in flat([v])]:
            if problem := damage(artifact):
                raise UserInputError(
                    f"input {name!r} ({artifact.TYPE_NAME} #{artifact.id}) {problem}; "
                    "run again with --no-cache to rebuild it"
                )
        for uri in prepared.staging.values():
            os.makedirs(uri)
    except BaseException as error:  # noqa: BLE001
        fail(scope, prepared, error)
    return prepared


def execute_here(prepared: Prepared) -> Outcome:
    """Runs the component in this process."""
    outputs = new_outputs(prepared)
    prepared.node.component.run(prepared.ctx, prepared.params, **prepared.inputs, **outputs)
    return prepared.ctx.outcome(outputs)


def new_outputs(prepared: Prepared) -> dict[str, Artifact]:
    return {key: cls(prepared.staging[key]) for key, cls in prepared.node.component.outputs.items()}


def publish(scope: RunScope, prepared: Prepared, outcome: Outcome) -> StepResult:
    """Renames the staged outputs into place and records the execution COMPLETE, in one call."""
    outputs = outcome.outputs
    for key, artifact in outputs.items():
        os.replace(prepared.staging[key], prepared.final_uris[key])
        artifact.uri = prepared.final_uris[key]
        artifact.custom_properties["fingerprint"] = directory_fingerprint(artifact.uri)
    seconds = time.monotonic() - prepared.started
    scope.store.publish_execution(
        prepared.execution,
        prepared.contexts,
        outputs,
        seconds=round(seconds, 3),
        blocked=outcome.blocked or "",
        held_back=outcome.held_back or "",
    )
    where = f"; {outcome.where}" if outcome.where else ""
    scope.log(f"      COMPLETE in {seconds:.1f} s (execution {prepared.execution_id}{where})")
    node_id, execution_id, item = prepared.node.id, prepared.execution_id, prepared.ctx.item
    if outcome.blocked:
        return StepResult(node_id, "BLOCKED", execution_id, seconds, outputs, outcome.blocked, item=item)
    return StepResult(
        node_id, "COMPLETE", execution_id, seconds, outputs, held_back=outcome.held_back or "", item=item
    )


def fail(scope: RunScope, prepared: Prepared, error: BaseException) -> None:
    """Records the execution FAILED, removes what it wrote and raises ExecutionError (or
    re-raises KeyboardInterrupt and SystemExit)."""
    remove_dirs([*prepared.staging.values(), *prepared.final_uris.values()])
    # An error from the worker process carries the traceback it had there.
    detail = getattr(error, "worker_traceback", None) or traceback.format_exc()
    detail = "" if isinstance(error, UserInputError) else detail
    if isinstance(error, Interrupted):
        detail, error.execution_id = "", prepared.execution_id
    scope.store.fail_execution(prepared.execution, describe_error(error), traceback=detail)
    why = f" ({error})" if isinstance(error, Interrupted) else ""
    scope.log(f"      FAILED after {time.monotonic() - prepared.started:.1f} s{why}")
    if isinstance(error, (KeyboardInterrupt, SystemExit, Interrupted)):
        raise error
    raise ExecutionError(prepared.node.id, prepared.execution_id, error) from error


def _lookup_cache(scope: RunScope, node: Node, key: str):
    """(the earlier execution, its outputs) to reuse, or None. An earlier output whose files
    changed is marked ABANDONED (and rebuilt)."""
    if not scope.enable_cache or node.id in scope.forced:
        return None
    found = scope.store.find_cached(scope.pipeline.name, node.id, key, scope.root)
    if found is None:
        return None
    execution, outputs = found
    damaged = [(a, problem) for a in outputs.values() if (problem := damage(a))]
    for artifact, problem in damaged:
        scope.store.abandon_artifact(artifact.stored_id, f"found by run {scope.run_id}: {problem}")
    if damaged:
        scope.log(
            f"      cache miss: an output of execution {execution.id} {damaged[0][1]}; "
            f"{damaged[0][0].TYPE_NAME} #{damaged[0][0].id} is marked ABANDONED and will be rebuilt"
        )
        return None
    return execution, outputs


def output_uri(root: str, node_id: str, key: str, execution_id: int) -> str:
    """Where an output lives: `<root>/<node id>/<output key>/<execution id>/`."""
    return os.path.join(root, node_id, key, str(execution_id))


def staging_uri(final_uri: str) -> str:
    parent, name = os.path.split(final_uri)
    return os.path.join(parent, STAGING_PREFIX + name)


def output_dirs(root: str, node_id: str, execution_id: int) -> list[str]:
    """Every directory an execution may have written, staged or renamed into place (from the
    layout, so that recovery needs nothing recorded beyond the execution's id and node)."""
    pattern = os.path.join(glob.escape(root), glob.escape(node_id), "*")
    found = []
    for key_dir in glob.glob(pattern):
        found += [
            os.path.join(key_dir, str(execution_id)),
            os.path.join(key_dir, STAGING_PREFIX + str(execution_id)),
        ]
    return [path for path in found if os.path.isdir(path)]


def damage(artifact: Artifact) -> str | None:
    """How a published artifact's directory differs from when it was published, or None: gone,
    or files added, removed, resized or (up to CONTENT_FINGERPRINT_MAX_BYTES) rewritten."""
    if "://" in artifact.uri:
        return None  # remote storage: trusted
    if not os.path.isdir(artifact.uri):
        return f"has lost its files ({artifact.uri} is gone)"
    expected = artifact.custom_properties.get("fingerprint")
    if expected and fingerprint_changed(artifact.uri, expected):
        changed = "changed" if expected.startswith("content:") else "added, removed or resized"
        return f"changed on disk since it was written (under {artifact.uri} a file was {changed})"
    return None


def remove_dirs(paths: list[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
