"""What the history browser reads beyond `pipeline.history`'s answers, each in a few batched MLMD
queries whose cost does not grow with the number of runs: a page of runs, one run with its steps'
executions, events and outputs, the artifact whose lineage tells most about a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.artifacts import Artifact
from pipeline.history import ModelRecord, RunRecord, model_record, run_records, runs
from pipeline.metadata import PIPELINE, PIPELINE_RUN, MetadataStore, custom

__all__ = ["model_record"]


@dataclass
class RunsPage:
    records: list[RunRecord]
    next_before: str | None  # the run id to page on from, None on the last page


def runs_page(store: MetadataStore, pipeline: str, limit: int, before: str | None = None) -> RunsPage:
    """The pipeline's runs, newest first: `limit` of them, started before run `before` when given
    (its id): `history.runs` with one more, to know whether a next page follows."""
    records = runs(store, pipeline, limit + 1, before)
    more = len(records) > limit
    records = records[:limit]
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
    [record] = run_records(store, pipeline, [context])
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
