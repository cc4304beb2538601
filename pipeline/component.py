"""Component declaration: typed inputs and outputs, typed parameters, one function that runs.

A component's inputs and outputs are stated once, in its run function's annotations (as TFX's
`@component` functions state them), and the rest in a `Component`:

    def run_example_gen(
        ctx: ExecutionContext,
        params: ExampleGenParams,                          # a frozen dataclass
        schema: InputArtifact[Schema | None],              # wired from another node; may be absent
        examples: OutputArtifact[Examples],
    ) -> None: ...

    def run_example_validator(
        ...,
        previous_statistics: Annotated[ExampleStatistics | None, PreviousSpan(of="statistics")],
        ...,                                               # found in the store by a resolver
    ) -> None: ...

    ExampleGen = Component(
        name="ExampleGen",
        run=run_example_gen,
        parameters=ExampleGenParams,
        version="1",                    # bump when the code's output changes
        resolve=resolve_span,           # optional: facts found before the cache lookup
    )

Calling it makes a pipeline node: `ExampleGen(input_pattern="data/span-{SPAN}/*.csv")`, with
inputs given as other nodes' output channels and parameters checked against the dataclass.
To a type checker an `InputArtifact[Schema | None]` is a `Schema | None`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pipeline.artifacts import Artifact
from pipeline.errors import DefinitionError

_RESERVED_ARGUMENTS = ("ctx", "params")


class _Role:
    """The mark an annotation carries: the argument is an input wired from another node, or an output."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


INPUT, OUTPUT = _Role("InputArtifact"), _Role("OutputArtifact")
T = TypeVar("T")
InputArtifact = Annotated[T, INPUT]
OutputArtifact = Annotated[T, OUTPUT]


@dataclass(frozen=True)
class Input:
    """A declared input: the artifact type it takes and whether it may be left out.

    With a `resolver` (see `pipeline.resolvers`) the input is not wired to another node: the
    runner finds it in the store before the step executes (the latest blessed model, the previous
    span's statistics) and records it as an INPUT event like any other; None when nothing matches.

    `many` (annotated `InputArtifact[list[T]]`): the step takes every artifact of the channel at
    once, in order (Transform takes the examples of every span of a window); a channel of one
    artifact arrives as a list of one. A single input wired to a channel of several artifacts
    instead runs the step once per artifact (see `FanOut`)."""

    type: type[Artifact]
    optional: bool = False
    resolver: Any = None
    many: bool = False

    @property
    def wired(self) -> bool:
        return self.resolver is None


@dataclass(frozen=True)
class Item:
    """One execution of a node that runs once per item: its key (recorded on the execution as
    `map_key`, such as the span number), how a person reads it (`span 2024-03-01`) and the
    parameters it runs with."""

    key: str
    label: str
    params: Any
    index: int = 0  # its place among the node's items in the run
    keys: tuple = ()  # the keys of all of the node's items in the run


@dataclass(frozen=True)
class FanOut:
    """How a component runs once per item rather than once per run: ExampleGen with a window of
    spans ingests each span in an execution of its own, so that a span already ingested is a
    CACHED execution, not read again. `applies(params)` says whether the node's parameters ask for
    it (a definition-time check); `items(params)` lists the items when the run gets to the node
    (ExampleGen lists the span folders then) and a line saying what was chosen; it raises a
    UserInputError when there is nothing to run.

    A node fed by such a node through a single input (`InputArtifact[T]`) runs once per item too,
    with the item's artifact (StatisticsGen and ExampleValidator check each span); one that
    declares `InputArtifact[list[T]]` runs once with all of them (Transform, the Evaluator)."""

    applies: Callable[[Any], bool]
    items: Callable[[Any], tuple[list[Item], str]]


@dataclass(frozen=True)
class Channel:
    """One output of one node, as seen by the nodes that consume it."""

    producer: Node
    key: str
    type: type[Artifact]

    def __repr__(self) -> str:
        return f"{self.producer.id}.outputs[{self.key!r}]"


class Component:
    """A declared component; calling it with inputs and parameters makes a `Node`.

    `resolve(ctx, params, **inputs)` finds what the cache key must also cover (files, a baseline).
    `warm_up()`, when given, is called as the step before this one starts executing, to prepare in
    the background (the Pusher starts its smoke-check process); it returns a function that undoes
    the preparation, which the runner calls at the end of the run if the step did not use it.
    `preload` names the modules the step imports that take seconds (TensorFlow): a component that
    names some executes in the run's worker process, which imports them while the steps before
    it execute (see `pipeline.step_worker`); its run function and parameters must then pickle.
    `check(node)`, when given, is called as a pipeline is validated, its inputs' producers wired:
    it raises a DefinitionError for what would only fail once the step ran (the Evaluator's
    thresholds on metrics the model will not produce). `fan_out`, when given, runs a node of the
    component once per item its parameters name (see `FanOut`). `gate`: its step may stop the run
    (`ctx.block_run`, the data gate): every node that takes data it checks waits for it, in a local
    run and as a scheduler's task alike."""

    def __init__(
        self,
        *,
        name: str,
        run: Callable[..., None],
        parameters: type,
        version: str,
        resolve: Callable[..., dict[str, Any]] | None = None,
        warm_up: Callable[[], Callable[[], None]] | None = None,
        preload: tuple[str, ...] = (),
        check: Callable[[Node], None] | None = None,
        fan_out: FanOut | None = None,
        gate: bool = False,
    ):
        self.name = name
        self.fan_out = fan_out
        self.gate = gate
        self.check = check
        self.warm_up = warm_up
        self.preload = tuple(preload)
        self.run = run
        self.parameters = parameters
        self.version = version
        self.resolve = resolve
        frozen = dataclasses.is_dataclass(parameters) and parameters.__dataclass_params__.frozen  # type: ignore[attr-defined]
        if not frozen:
            raise DefinitionError(f"{name}: parameters must be a frozen dataclass")
        self.inputs, self.outputs = _declared_artifacts(name, run)

    @property
    def source_file(self) -> str:
        return os.path.abspath(inspect.getsourcefile(self.run) or "?")

    def __call__(self, id: str | None = None, **kwargs: Any) -> Node:
        node_id = id or self.name
        inputs: dict[str, Channel | None] = {}
        params: dict[str, Any] = {}
        param_names = [f.name for f in dataclasses.fields(self.parameters)]
        for key, value in kwargs.items():
            if key in self.inputs:
                inputs[key] = value
            elif key in param_names:
                params[key] = value
            else:
                known = [*self.inputs, *param_names]
                hint = difflib.get_close_matches(key, known, n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else f"known names: {', '.join(known)}"
                raise DefinitionError(f"{node_id}: unknown parameter or input {key!r}; {fix}")
        return Node(node_id, self, inputs, _make_params(node_id, self.parameters, params))

    def with_params(self, node_id: str, params: Any, values: dict[str, Any]) -> Any:
        """`params` with `values` replaced, checked as when the node was made."""
        current = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
        return _make_params(node_id, self.parameters, {**current, **values})

    def __repr__(self) -> str:
        return f"Component({self.name})"


def _declared_artifacts(
    name: str, run: Callable[..., None]
) -> tuple[dict[str, Input], dict[str, type[Artifact]]]:
    """The inputs and outputs the run function's annotations state: every argument but `ctx` and
    `params` is an `InputArtifact[T]` (`T | None`: optional), an `OutputArtifact[T]`, or an
    `Annotated[T | None, resolver]` found in the store by a `pipeline.resolvers.Resolver`."""
    from pipeline.resolvers import Resolver

    where = f"{name}: run function {run.__qualname__} ({inspect.getsourcefile(run) or '?'})"
    try:
        hints = typing.get_type_hints(run, include_extras=True)
    except Exception as error:  # noqa: BLE001 - a name in an annotation that does not resolve
        raise DefinitionError(f"{where}: its annotations do not resolve: {error}") from None
    arguments = list(inspect.signature(run).parameters)
    missing = [a for a in _RESERVED_ARGUMENTS if a not in arguments]
    if missing:
        raise DefinitionError(f"{where} must take {', '.join(_RESERVED_ARGUMENTS)} first; it lacks {missing}")
    inputs: dict[str, Input] = {}
    outputs: dict[str, type[Artifact]] = {}
    for argument in arguments:
        if argument in _RESERVED_ARGUMENTS:
            continue
        hint = hints.get(argument)
        marks = typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ()
        role = next((m for m in marks if m is INPUT or m is OUTPUT or isinstance(m, Resolver)), None)
        if role is None:
            raise DefinitionError(
                f"{where}: argument {argument!r} must be annotated InputArtifact[T], OutputArtifact[T] "
                f"or Annotated[T | None, a resolver] with T an artifact type; it is {hint!r}"
            )
        kind, optional, many = _artifact_type(typing.get_args(hint)[0])
        if kind is None:
            raise DefinitionError(f"{where}: argument {argument!r} must hold an artifact type, not {hint!r}")
        if role is OUTPUT:
            if optional or many:
                raise DefinitionError(
                    f"{where}: output {argument!r} must be one artifact, not optional or a list"
                )
            outputs[argument] = kind
        elif role is INPUT:
            inputs[argument] = Input(kind, optional=optional, many=many)
        else:
            if many:
                raise DefinitionError(f"{where}: input {argument!r} found by {role!r} must be one artifact")
            if not optional:
                raise DefinitionError(
                    f"{where}: input {argument!r} is found by {role!r}, which may find nothing; "
                    f"annotate it {kind.__name__} | None"
                )
            inputs[argument] = Input(kind, optional=True, resolver=role)
    return inputs, outputs


def _artifact_type(annotation: Any) -> tuple[type[Artifact] | None, bool, bool]:
    """(the artifact class, whether None is allowed, whether it is a list) of `T`, `T | None`
    or `list[T]`."""
    if typing.get_origin(annotation) is list:
        kind, optional, _ = _artifact_type(typing.get_args(annotation)[0])
        return (None, False, False) if optional else (kind, False, kind is not None)
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    kinds = [o for o in options if o is not type(None)]
    if len(kinds) != 1 or not (isinstance(kinds[0], type) and issubclass(kinds[0], Artifact)):
        return None, False, False
    return kinds[0], len(options) > 1, False


def _make_params(node_id: str, cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise DefinitionError(f"{node_id}: missing required parameter(s) {', '.join(missing)}")
    for name, value in values.items():
        if not _matches(value, hints[name]):
            raise DefinitionError(
                f"{node_id}: parameter {name!r} must be {_type_name(hints[name])}, got {value!r}"
            )
    return cls(**values)


def _matches(value: Any, annotation: Any) -> bool:
    """A shallow type check for parameter values: enough to catch a string given for a number."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    check = origin or annotation
    if check is typing.Callable or check is Callable:
        return callable(value)
    return isinstance(check, type) and isinstance(value, check)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


class Node:
    """One use of a component in a pipeline: an id, input channels and parameter values."""

    def __init__(self, id: str, component: Component, inputs: dict[str, Channel | None], params: Any):
        self.id = id
        self.component = component
        self.params = params
        self.inputs: dict[str, Channel | None] = {}
        self.outputs = {key: Channel(self, key, t) for key, t in component.outputs.items()}
        # Whether the node runs once per item (set by Pipeline.validate: it fans out, or a single
        # input takes the outputs of a node that does).
        self.mapped = False
        # Gates this node waits for though it takes none of their outputs (set by Pipeline.validate).
        self.after: list[Node] = []
        for key, channel in inputs.items():
            self.connect(key, channel)

    def connect(self, key: str, channel: Channel | None) -> None:
        """Wires `channel` into input `key`, checking the artifact type."""
        declared = self.component.inputs.get(key)
        if declared is None:
            raise DefinitionError(
                f"{self.id}: {self.component.name} has no input {key!r}; "
                f"inputs: {', '.join(self.component.inputs) or 'none'}"
            )
        if not declared.wired:
            raise DefinitionError(
                f"{self.id}: input {key!r} is found by the runner ({declared.resolver}), not wired; "
                "leave it out"
            )
        if channel is not None and not isinstance(channel, Channel):
            raise DefinitionError(
                f"{self.id}: input {key!r} must be another node's output, such as "
                f"node.outputs['...'], got {channel!r}"
            )
        if channel is not None and not issubclass(channel.type, declared.type):
            raise DefinitionError(
                f"{self.id}: input {key!r} takes {declared.type.TYPE_NAME}, but {channel!r} "
                f"gives {channel.type.TYPE_NAME}; connect an output of type {declared.type.TYPE_NAME}"
            )
        self.inputs[key] = channel

    @property
    def upstream(self) -> list[Node]:
        """The nodes this one waits for: its inputs' producers, and the gates that check its data."""
        producers = [channel.producer for channel in self.inputs.values() if channel is not None]
        return [*producers, *(gate for gate in self.after if gate not in producers)]

    def __repr__(self) -> str:
        return f"Node({self.id})"


@dataclass
class Outcome:
    """What an executed step returns, the same in this process and from a worker: its outputs as
    it left them, whether it stopped the run (`blocked`) or held its result back, and where it ran
    (a line for the log, such as the memory its process holds)."""

    outputs: dict[str, Artifact]
    blocked: str | None = None
    held_back: str | None = None
    where: str = ""


class StepLines(logging.Handler):
    """The one handler that puts steps' log records in the run's output: each record goes to the
    `sink` of the step that logged it (a callable taking a line; the launcher indents it under the
    step), a warning marked `warning: `. It sits on the `pipeline.step` logger; other handlers a
    user adds to `pipeline` (a file, a syslog) see the same records, with their levels."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(record, "sink", None)
        if sink is None:
            return
        text = record.getMessage()
        sink(f"warning: {text}" if record.levelno >= logging.WARNING else text)


STEP_LOGGER = "pipeline.step"
if not any(isinstance(h, StepLines) for h in logging.getLogger(STEP_LOGGER).handlers):
    logging.getLogger(STEP_LOGGER).addHandler(StepLines())
    logging.getLogger(STEP_LOGGER).setLevel(logging.INFO)
    # Records stop at `pipeline`: a handler a library put on the root logger (absl, Beam) would
    # print each line a second time.
    logging.getLogger("pipeline").propagate = False


@dataclass
class ExecutionContext:
    """What a running component may know beyond its artifacts and parameters. It never holds the
    metadata store: whatever a step needs from there is resolved before it executes.

    A step logs with `ctx.log(message)` (INFO) and `ctx.warn(message)` (WARNING), through the
    standard `logging` module, on the logger `pipeline.step.<node id>`; `sink` is where the run's
    output takes its lines (`StepLines`). In the run's worker process the records travel to the
    runner, which logs them there (`forward`)."""

    pipeline_name: str
    pipeline_root: str
    component_id: str
    execution_id: int
    run_id: str
    beam_args: list[str] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    sink: Callable[[str], None] | None = print
    blocked: str | None = None
    held_back: str | None = None
    pipeline_file: str | None = None  # the file that defined the pipeline, for errors to name
    forward: Callable[[int, str], None] | None = (
        None  # set in the worker process: (level, message) to the runner
    )
    item: str = ""  # for a node that runs once per item (a span of a window): which one

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"{STEP_LOGGER}.{self.component_id}")

    def log(self, message: str, level: int = logging.INFO) -> None:
        """A line of the step's progress, for the run's output and any handler on `pipeline`."""
        if self.forward is not None:
            self.forward(level, message)
            return
        self.logger.log(level, message, extra={"sink": self.sink, "run_id": self.run_id})

    def warn(self, message: str) -> None:
        """Something a person should look at that does not stop the step (a WARNING record)."""
        self.log(message, logging.WARNING)

    def block_run(self, reason: str) -> None:
        """Lets a gate stop the run: its outputs are still published (COMPLETE), the decision is
        recorded on the execution, and no downstream step runs."""
        self.blocked = reason

    def hold_back(self, reason: str) -> None:
        """Says that the step completed but kept its result from taking effect (a model not
        blessed, a push refused): the run goes on and ends HELD_BACK, with `reason`, instead of
        COMPLETE. A cached rerun of the step says the same."""
        self.held_back = reason

    def outcome(self, outputs: dict[str, Artifact], where: str = "") -> Outcome:
        """The step's `Outcome`, from what it wrote and decided."""
        return Outcome(outputs, self.blocked, self.held_back, where)

    def where_defined(self) -> str:
        """`in <pipeline file>` for errors that tell a person which parameter to set."""
        return f"in {self.pipeline_file}" if self.pipeline_file else "in the pipeline definition"

    def beam_runs_in_process(self, *, input_bytes: int = 0) -> bool:
        """Whether `beam_pipeline` would run in this process (see `pipeline.beam.runs_in_process`)."""
        from pipeline.beam import runs_in_process

        return runs_in_process(self.beam_args, input_bytes=input_bytes)

    def threads_without_pipeline(self, *, input_bytes: int) -> int | None:
        """Threads for doing the step's work here without Beam, or None to build a pipeline (see
        `pipeline.beam.threads_without_pipeline`)."""
        from pipeline.beam import threads_without_pipeline

        return threads_without_pipeline(self.beam_args, input_bytes=input_bytes)

    def beam_pipeline(self, *, input_bytes: int = 0, threads: bool = False):
        """A Beam pipeline with the run's options; see `pipeline.beam.pipeline_options`."""
        import apache_beam as beam

        from pipeline.beam import pipeline_options

        return beam.Pipeline(
            options=pipeline_options(self.beam_args, input_bytes=input_bytes, threads=threads)
        )
