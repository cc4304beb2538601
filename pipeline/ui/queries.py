"""What the history browser reads beyond `pipeline.history`'s answers, each in a few batched MLMD
queries whose cost does not grow with the number of runs: a page of runs (by context id, newest
first), one run with its steps' executions, events and outputs, and one model's record (its
blessing, evaluation and pushes found by the ids recorded on them, not by listing every model).

The store is opened read-only: a sqlite file in SQLite's read-only mode (a write would fail), a
server database without creating it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.artifacts import Artifact
from pipeline.history import ModelRecord, RunRecord, runs, spans_of
from pipeline.metadata import PIPELINE, PIPELINE_RUN, MetadataStore, _quoted, custom


class ReadOnlyStore(MetadataStore):
    """A `MetadataStore` that cannot write: sqlite opened in read-only mode; a server database
    never created (`create=False`)."""

    def __init__(self, spec: str):
        from pipeline.metadata import _connect, connection_config, masked

        config = connection_config(spec, create=False)
        if config.WhichOneof("config") == "sqlite":
            config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
        self.spec = spec
        self.name = masked(spec)
        self.mlmd = _connect(config, self.name)
        self._type_ids: dict[tuple[str, str], int] = {}
        self._node_contexts: dict[str, pb.Context] = {}
        self.is_sqlite = config.WhichOneof("config") == "sqlite"


class _RunsView:
    """The store as `pipeline.history.runs` reads it, its pipeline's runs being the given
    contexts: how a page of runs, or a single run, gets the same record as `runner.py runs`."""

    def __init__(self, store: MetadataStore, contexts: list[pb.Context]):
        self.store, self.contexts, self.mlmd = store, contexts, store.mlmd

    def pipeline_runs(self, pipeline_name: str) -> list[pb.Context]:
        return self.contexts

    def artifacts_by_id(self, ids: list[int]) -> list[Artifact]:
        return self.store.artifacts_by_id(ids)


def _records(store: MetadataStore, pipeline: str, contexts: list[pb.Context]) -> list[RunRecord]:
    return runs(cast(MetadataStore, _RunsView(store, contexts)), pipeline, len(contexts))


@dataclass
class RunsPage:
    records: list[RunRecord]
    next_before: str | None  # the run id to page on from, None on the last page


def runs_page(store: MetadataStore, pipeline: str, limit: int, before: str | None = None) -> RunsPage:
    """The pipeline's runs, newest first: `limit` of them, started before run `before` when given
    (its id); one contexts query with a limit, then `history.runs`' queries for those runs."""
    query = (
        f"type = '{PIPELINE_RUN}' AND parent_contexts_a.type = '{PIPELINE}' "
        f"AND parent_contexts_a.name = '{_quoted(pipeline)}'"
    )
    if before:
        cursor = store.mlmd.get_context_by_type_and_name(PIPELINE_RUN, before)
        if cursor is None:
            raise LookupError(f"no run {before!r} in {store.name}")
        query += f" AND id < {cursor.id}"
    options = metadata_store.ListOptions(
        filter_query=query, order_by=metadata_store.OrderByField.ID, is_asc=False, limit=limit + 1
    )
    contexts = list(store.mlmd.get_contexts(list_options=options))
    more = len(contexts) > limit
    contexts = contexts[:limit]
    records = _records(store, pipeline, contexts)
    return RunsPage(records, records[-1].run_id if more and records else None)


def run_context(store: MetadataStore, run_id: str) -> pb.Context:
    context = store.mlmd.get_context_by_type_and_name(PIPELINE_RUN, run_id)
    if context is None:
        raise LookupError(f"no run {run_id!r} in {store.name}")
    return context


@dataclass
class RunDetail:
    """One run: its record, its executions (by id), their events, and every artifact they output."""

    context: pb.Context
    record: RunRecord
    executions: list[pb.Execution]
    events: list[pb.Event]
    artifacts: dict[int, Artifact]

    def outputs(self, execution_id: int) -> list[tuple[str, Artifact]]:
        """(output key, artifact) of one execution, in key order."""
        return sorted(
            (e.path.steps[0].key, self.artifacts[e.artifact_id])
            for e in self.events
            if e.execution_id == execution_id
            and e.type == pb.Event.OUTPUT
            and e.artifact_id in self.artifacts
        )


def run_detail(store: MetadataStore, run_id: str) -> RunDetail:
    """A run and everything its page shows, in five queries."""
    context = run_context(store, run_id)
    pipeline = custom(context, "pipeline") or _pipeline_of(store, context)
    [record] = _records(store, pipeline, [context])
    executions = store.executions_in(context)
    events = store.mlmd.get_events_by_execution_ids([e.id for e in executions]) if executions else []
    outputs = sorted({e.artifact_id for e in events if e.type == pb.Event.OUTPUT})
    artifacts = {a.stored_id: a for a in store.artifacts_by_id(outputs)}
    return RunDetail(context, record, executions, events, artifacts)


def _pipeline_of(store: MetadataStore, context: pb.Context) -> str:
    parents = store.mlmd.get_parent_contexts_by_context(context.id)
    return parents[0].name if parents else "?"


def executions_and_events(
    store: MetadataStore, ids: list[int]
) -> tuple[dict[int, pb.Execution], list[pb.Event]]:
    """Executions by id and all their events, in two queries (the steps of a page of runs)."""
    if not ids:
        return {}, []
    executions = {e.id: e for e in store.mlmd.get_executions_by_id(ids)}
    return executions, list(store.mlmd.get_events_by_execution_ids(ids))


def pipeline_of_artifact(store: MetadataStore, artifact: Artifact) -> str | None:
    """The pipeline an artifact was recorded in (its pipeline context), None if none."""
    pipeline_type = store.context_type_id(PIPELINE)
    for context in store.mlmd.get_contexts_by_artifact(artifact.stored_id):
        if context.type_id == pipeline_type:
            return context.name
    return None


def model_record(store: MetadataStore, model_id: int) -> ModelRecord:
    """One model's record as `pipeline.history.models` makes it, read from the ids the Evaluator
    and the Pusher record (a blessing's `current_model_id`, a push's `model_id`), so that its
    cost does not grow with the number of models or runs. LookupError if it is not a model."""
    from pipeline.lineage import serving_pushes

    found = store.artifacts_by_id([model_id])
    if not found or found[0].TYPE_NAME != "Model":
        raise LookupError(f"no model with id {model_id} in {store.name}")
    model = found[0]
    producer = _producer(store, model)
    blessings = store.artifacts_where(
        f"type = 'ModelBlessing' AND custom_properties.current_model_id.int_value = {model_id}"
    )
    blessing = (
        max(blessings, key=lambda b: b.stored_id) if blessings else None
    )  # by id: the newest, as `models` takes it
    evaluation = _sibling(store, blessing, "ModelEvaluation") if blessing is not None else None
    pushes = sorted(
        store.artifacts_where(f"type = 'PushedModel' AND custom_properties.model_id.int_value = {model_id}"),
        key=lambda p: p.stored_id,
    )
    done = [p for p in pushes if p.get("pushed")]
    serving = serving_pushes(store, done)
    recorded = model.get("span_dates") or model.get("spans")
    return ModelRecord(
        model,
        custom(producer, "run_id", "?") if producer else "?",
        producer.create_time_since_epoch / 1000 if producer else 0.0,
        json.loads(recorded) if recorded else spans_of(store, model),
        blessing,
        done[-1] if done else (pushes[-1] if pushes else None),
        pushes,
        json.loads(evaluation.get("metrics") or "{}") if evaluation is not None else {},
        custom(producer, "pipeline_root", "") if producer else "",
        any(p.stored_id in serving for p in done),
    )


def _producer(store: MetadataStore, artifact: Artifact) -> Any:
    """The COMPLETE execution that output the artifact (later CACHED ones only reuse it)."""
    made = store.executions_where(
        f"events_0.artifact_id = {artifact.stored_id} AND events_0.type = OUTPUT AND last_known_state = COMPLETE",
        limit=1,
    )
    return made[0] if made else None


def _sibling(store: MetadataStore, artifact: Artifact, type_name: str) -> Artifact | None:
    """The output of type `type_name` of the execution that made `artifact` (a blessing's evaluation)."""
    producer = _producer(store, artifact)
    if producer is None:
        return None
    outputs = store.outputs_of(producer.id)
    return next((a for a in outputs.values() if a.TYPE_NAME == type_name), None)


def richest(record: ModelRecord) -> Artifact:
    """The artifact whose lineage tells the most about the model: its latest push (the Pusher took
    the model and its blessing), else its blessing (the Evaluator took the model, the examples
    and the baseline), else the model itself."""
    if record.pushed is not None:
        return record.pushed
    return record.blessing if record.blessing is not None else record.model


def model_choices(store: MetadataStore, pipeline: str) -> list[Artifact]:
    """The pipeline's models, newest first (one query): for the diff page's choices."""
    from pipeline.artifacts import Model

    return list(reversed(store.artifacts_of(Model, pipeline)))
