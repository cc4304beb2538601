"""Questions about past runs, answered from ML Metadata: which runs, which steps, where from."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from ml_metadata.proto import metadata_store_pb2 as pb

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
                custom(e, "node_id", "?"),
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
                custom(run, "status", "?"),
                custom(run, "start_time", 0.0),
                custom(run, "seconds"),
                steps,
            )
        )
    return records


@dataclass
class LineageNode:
    """An artifact, the execution that produced it, and that execution's inputs, recursively."""

    artifact: Artifact
    execution: pb.Execution | None = None
    component: str = ""
    inputs: dict[str, LineageNode] = field(default_factory=dict)


def find_artifact(store: MetadataStore, ref: str) -> Artifact:
    """An artifact by id or by URI; raises LookupError if there is none."""
    if ref.isdigit():
        found = store.artifacts_by_id([int(ref)])
    else:
        found = store.artifacts_by_uri(ref.rstrip("/")) or store.artifacts_by_uri(
            os.path.abspath(ref).rstrip("/")
        )
    if not found:
        raise LookupError(f"no artifact with id or URI {ref!r} in {store.spec}")
    return found[-1]


def lineage(store: MetadataStore, artifact: Artifact, depth: int = 20) -> LineageNode:
    """The chain of executions and artifacts upstream of `artifact`, from INPUT/OUTPUT events."""
    node = LineageNode(artifact)
    execution = store.producer_of(artifact.id)
    if execution is None or depth == 0:
        return node
    node.execution = execution
    [exec_type] = store.mlmd.get_execution_types_by_id([execution.type_id])
    node.component = custom(execution, "node_id") or exec_type.name
    for key, parent in sorted(store.inputs_of(execution.id).items()):
        node.inputs[key] = lineage(store, parent, depth - 1)
    return node


def format_lineage(node: LineageNode, indent: str = "", label: str = "") -> list[str]:
    a = node.artifact
    props = {**a.properties, **{k: v for k, v in a.custom_properties.items() if k != "fingerprint"}}
    shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(props.items()))
    lines = [
        f"{indent}{label}{a.TYPE_NAME} #{a.id} {a.state} {a.uri}"
        + (f"\n{indent}    {shown}" if shown else "")
    ]
    if node.execution is not None:
        e = node.execution
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.create_time_since_epoch / 1000))
        lines.append(
            f"{indent}  <- {node.component} execution {e.id} ({state_name(e)}, run {custom(e, 'run_id')}, {when})"
        )
        resolved = custom(e, "resolved")
        if resolved:
            lines.extend(_resolved_lines(resolved, indent + "     "))
        for key, parent in node.inputs.items():
            lines.extend(format_lineage(parent, indent + "     ", f"{key}: "))
    return lines


def _resolved_lines(resolved: str, indent: str) -> list[str]:
    data = json.loads(resolved)
    lines = []
    for f in data.get("files", []):
        lines.append(f"{indent}file {f['path']} ({f['bytes']} bytes, sha256 {f['sha256'][:16]})")
    return lines


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "..."
