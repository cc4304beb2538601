"""Questions about past runs and models, answered from ML Metadata: which runs, which steps,
which models, and which of them were blessed and pushed."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.artifacts import Artifact
from pipeline.metadata import MetadataStore, custom, state_name


@dataclass
class StepRecord:
    node_id: str
    execution_id: int
    state: str
    seconds: float
    note: str = ""


@dataclass
class RunRecord:
    run_id: str
    status: str
    started: float  # seconds since the epoch
    seconds: float | None
    steps: list[StepRecord]


def runs(store: MetadataStore, pipeline_name: str, limit: int = 20) -> list[RunRecord]:
    """The pipeline's latest runs, newest first, with each step's state."""
    records = []
    for run in store.pipeline_runs(pipeline_name)[:limit]:
        executions = sorted(store.mlmd.get_executions_by_context(run.id), key=lambda e: e.id)
        steps = [
            StepRecord(
                _step_name(e),
                e.id,
                state_name(e),
                (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000,
                custom(e, "error", "")
                or (f"from execution {custom(e, 'cached_from')}" if custom(e, "cached_from") else ""),
            )
            for e in executions
        ]
        records.append(
            RunRecord(
                run.name,
                _status(run),
                custom(run, "start_time", 0.0),
                custom(run, "seconds"),
                steps,
            )
        )
    return records


def _step_name(execution) -> str:
    """The node id, with the item for a node that runs once per item: `ExampleGen[span 2008]`."""
    node, item = custom(execution, "node_id", "?"), custom(execution, "map_label", "")
    return f"{node}[{item}]" if item else node


def _status(run) -> str:
    """The run's recorded status; RUNNING only while its process lives (a killed run stays
    RUNNING in the store until the next run on its root closes it)."""
    from pipeline.lease import HOST, process_alive

    status = custom(run, "status", "?")
    if status == "RUNNING" and custom(run, "host") == HOST and not process_alive(custom(run, "pid")):
        return "INTERRUPTED"
    return status


@dataclass
class ModelRecord:
    model: Artifact
    run_id: str
    created: float  # seconds since the epoch
    spans: list  # every span the model saw: numbers, or the dates of dated spans (`2024-03-01`)
    blessing: Artifact | None
    pushed: Artifact | None


def models(store: MetadataStore, pipeline_name: str) -> list[ModelRecord]:
    """Every model the pipeline trained, newest first, with its blessing and push (if any)."""
    from pipeline.artifacts import Model, ModelBlessing, PushedModel

    blessings = {b.get("current_model_id"): b for b in store.live_artifacts(ModelBlessing, pipeline_name)}
    pushes = {}
    for pushed in store.live_artifacts(PushedModel, pipeline_name):
        producer = store.producer_of(pushed.stored_id)
        model = store.inputs_of(producer.id).get("model") if producer else None
        if model is not None and (pushed.get("pushed") or model.id not in pushes):
            pushes[model.id] = pushed
    records = []
    for model in reversed(store.live_artifacts(Model, pipeline_name)):
        producer = store.producer_of(model.stored_id)
        records.append(
            ModelRecord(
                model,
                custom(producer, "run_id", "?") if producer else "?",
                producer.create_time_since_epoch / 1000 if producer else 0.0,
                spans_of(store, model),
                blessings.get(model.id),
                pushes.get(model.id),
            )
        )
    return records


def spans_of(store: MetadataStore, artifact: Artifact) -> list:
    """Every span of raw examples upstream of `artifact`, oldest first: each one's date for a
    dated pattern, else its number."""
    from pipeline.lineage import lineage, raw_spans

    return raw_spans(lineage(store, artifact))


def spans_text(spans: list) -> str:
    """`2007`, `2007-2009` (consecutive numbers), `2007, 2009`, or dates joined the same way."""
    if not spans:
        return "?"
    numbers = all(isinstance(s, int) for s in spans)
    if numbers and len(spans) > 2 and spans == list(range(spans[0], spans[-1] + 1)):
        return f"{spans[0]}-{spans[-1]}"
    if len(spans) > 3:
        return f"{spans[0]} ... {spans[-1]} ({len(spans)} spans)"
    return ", ".join(map(str, spans))


def latest_pushed(store: MetadataStore, pipeline_name: str, version: int | None = None) -> Artifact:
    """The PushedModel of the newest push, or of push `version`; LookupError if there is none."""
    from pipeline.artifacts import PushedModel

    pushed = [p for p in store.live_artifacts(PushedModel, pipeline_name) if p.get("pushed")]
    if version is not None:
        pushed = [p for p in pushed if p.pushed_version() == version]
    if not pushed:
        which = f"version {version}" if version is not None else "any model"
        raise LookupError(f"pipeline {pipeline_name!r} has not pushed {which}")
    return max(pushed, key=lambda p: (p.pushed_version(), p.id))
