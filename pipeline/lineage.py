"""Where an artifact came from: its upstream tree from one MLMD lineage-subgraph query, as text or
JSON, and the facts that tell two models' histories apart (`diff`)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.artifacts import Artifact
from pipeline.metadata import MetadataStore, custom, event_index, get_value, state_name
from pipeline.text import shorten

MAX_HOPS = 40


@dataclass
class LineageNode:
    """An artifact, the execution that produced it, and that execution's inputs, recursively.
    `checks` are gate results about the artifact found downstream (the data validation)."""

    artifact: Artifact
    execution: pb.Execution | None = None
    component: str = ""
    inputs: dict[str, LineageNode] = field(default_factory=dict)
    checks: list[Artifact] = field(default_factory=list)


def find_artifact(store: MetadataStore, ref: str) -> Artifact:
    """An artifact by id or by URI; raises LookupError if there is none."""
    if ref.isdigit():
        found = store.artifacts_by_id([int(ref)])
    else:
        found = store.artifacts_by_uri(ref.rstrip("/")) or store.artifacts_by_uri(
            os.path.abspath(ref).rstrip("/")
        )
    if not found:
        raise LookupError(f"no artifact with id or URI {ref!r} in {store.name}")
    return found[-1]


def lineage(store: MetadataStore, artifact: Artifact) -> LineageNode:
    """The upstream tree of `artifact`: one `get_lineage_subgraph` query (UPSTREAM), then the
    tree is built from its events. Each artifact's producer is its first (COMPLETE) execution;
    later CACHED executions only reuse it."""
    options = pb.LineageSubgraphQueryOptions(
        max_num_hops=MAX_HOPS, direction=pb.LineageSubgraphQueryOptions.UPSTREAM
    )
    options.starting_artifacts.filter_query = f"id = {artifact.id}"
    graph = store.mlmd.get_lineage_subgraph(options)
    artifacts = {a.id: a for a in store.artifacts_by_id([a.id for a in graph.artifacts])}
    executions = {e.id: e for e in graph.executions}
    types = {t.id: t.name for t in graph.execution_types} or {
        t.id: t.name
        for t in store.mlmd.get_execution_types_by_id(list({e.type_id for e in graph.executions}))
    }
    producer: dict[int, int] = {}
    inputs: dict[int, list[tuple[str, int]]] = {}
    for event in graph.events:
        if event.type == pb.Event.OUTPUT and event.execution_id in executions:
            producer[event.artifact_id] = min(
                producer.get(event.artifact_id, event.execution_id), event.execution_id
            )
        elif event.type == pb.Event.INPUT:
            key, index = event.path.steps[0].key, event_index(event)
            # One of a list input (a window's spans): keyed by its place, `examples[0]`, ...
            label = key if index is None else f"{key}[{index}]"
            inputs.setdefault(event.execution_id, []).append((label, event.artifact_id))

    def build(artifact_id: int, leaf: bool = False) -> LineageNode:
        node = LineageNode(artifacts.get(artifact_id) or store.artifacts_by_id([artifact_id])[0])
        execution = executions.get(producer.get(artifact_id, -1))
        if execution is None or leaf:
            return node
        node.execution = execution
        node.component = custom(execution, "node_id") or types.get(execution.type_id, "?")
        # Resolver inputs (the baseline model, the previous statistics) are shown, not followed.
        resolved = set(json.loads(custom(execution, "resolver_inputs", "[]") or "[]"))
        for key, parent in sorted(inputs.get(execution.id, []), key=lambda pair: _input_order(pair[0])):
            node.inputs[key] = build(parent, leaf=key.split("[")[0] in resolved)
        if node.component and node.artifact.TYPE_NAME == "Examples" and "span" in node.artifact.properties:
            node.checks = validations_of(store, node.artifact)
        return node

    return build(artifact.stored_id)


def raw_spans(node: LineageNode) -> list:
    """The spans of the raw examples (ExampleGen's outputs) in a lineage tree, oldest first, each
    its date where the span is dated."""
    found: dict[int, Any] = {}
    stack = [node]
    while stack:
        here = stack.pop()
        a = here.artifact
        if a.TYPE_NAME == "Examples" and here.component == "ExampleGen" and a.get("span") is not None:
            found[a.get("span")] = a.get("span_date") or a.get("span")
        stack.extend(here.inputs.values())
    return [found[span] for span in sorted(found)]


def _input_order(label: str) -> tuple[str, int]:
    """`examples[10]` after `examples[9]`: the key, then the index as a number."""
    key, _, index = label.partition("[")
    return key, int(index.rstrip("]") or -1)


def validations_of(store: MetadataStore, examples: Artifact) -> list[Artifact]:
    """The ExampleAnomalies judging these raw examples: two hops downstream (statistics, then
    validation), found through MLMD's DOWNSTREAM lineage subgraph."""
    options = pb.LineageSubgraphQueryOptions(
        max_num_hops=4, direction=pb.LineageSubgraphQueryOptions.DOWNSTREAM
    )
    options.starting_artifacts.filter_query = f"id = {examples.id}"
    graph = store.mlmd.get_lineage_subgraph(options)
    type_names = {t.id: t.name for t in store.mlmd.get_artifact_types()}
    ids = [a.id for a in graph.artifacts if type_names.get(a.type_id) == "ExampleAnomalies"]
    return store.artifacts_by_id(sorted(set(ids)))


def format_lineage(
    node: LineageNode, indent: str = "", label: str = "", seen: set | None = None
) -> list[str]:
    """The tree as indented text: each artifact with its properties, the execution that made it
    (component, run, time, parameters, input files), then its inputs. An artifact reached a
    second time (the DAG shares inputs) is named, not expanded again."""
    seen = set() if seen is None else seen
    a = node.artifact
    lines = [f"{indent}{label}{a.TYPE_NAME} #{a.id} {a.state} {a.uri}"]
    if a.id in seen:
        return [lines[0] + "  (shown above)"]
    seen.add(a.id)
    props = _shown_properties(a)
    if props:
        lines.append(f"{indent}    {props}")
    renamed = json.loads(a.custom_properties.get("column_names") or "{}")
    if renamed:
        mapping = ", ".join(f"{column!r} -> {name}" for column, name in renamed.items())
        lines.append(f"{indent}    CSV columns renamed: {mapping}")
    for check in node.checks:
        lines.append(
            f"{indent}    validated by ExampleAnomalies #{check.id}: {check.get('decision')}, "
            f"{check.get('anomaly_count')} anomalies, {check.get('warning_count')} warnings"
        )
    if node.execution is None:
        return lines
    e = node.execution
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.create_time_since_epoch / 1000))
    lines.append(
        f"{indent}  <- {node.component} execution {e.id} ({state_name(e)}, run {custom(e, 'run_id')}, {when})"
    )
    lines.extend(f"{indent}     {line}" for line in _execution_lines(e))
    for key, parent in node.inputs.items():
        lines.extend(format_lineage(parent, indent + "     ", f"{key}: ", seen))
    return lines


def _shown_properties(a: Artifact) -> str:
    hidden = {"fingerprint", "page", "column_types", "column_names", "signatures"}
    props = {**a.properties, **{k: v for k, v in a.custom_properties.items() if k not in hidden}}
    return ", ".join(f"{k}={shorten(v, 90)}" for k, v in sorted(props.items()))


def _execution_lines(e: pb.Execution) -> list[str]:
    lines = []
    resolved = json.loads(custom(e, "resolved", "{}") or "{}")
    for f in resolved.get("files", []):
        lines.append(f"file {f['path']} ({f['bytes']} bytes, sha256 {f['sha256'][:16]})")
    params = json.loads(custom(e, "parameters", "{}") or "{}")
    for name, value in sorted(params.items()):
        if isinstance(value, dict) and "sha256" in value:
            source = value.get("module_file") or value.get("callable")
            lines.append(f"{name}: {source} (sha256 {value['sha256'][:16]})")
        elif value not in (None, {}, [], ()):
            lines.append(f"{name}: {shorten(json.dumps(value), 90)}")
    return lines


def to_json(node: LineageNode) -> dict[str, Any]:
    a = node.artifact
    result: dict[str, Any] = {
        "artifact": {
            "id": a.id,
            "type": a.TYPE_NAME,
            "uri": a.uri,
            "state": a.state,
            "properties": a.properties,
            "custom_properties": a.custom_properties,
        },
    }
    if node.checks:
        result["validations"] = [{"id": c.id, **c.custom_properties} for c in node.checks]
    if node.execution is not None:
        e = node.execution
        result["execution"] = {
            "id": e.id,
            "component": node.component,
            "state": state_name(e),
            "custom_properties": {
                k: get_value(v) for k, v in e.custom_properties.items() if k != "traceback"
            },
        }
        result["inputs"] = {key: to_json(parent) for key, parent in node.inputs.items()}
    return result


def facts(node: LineageNode, prefix: str = "") -> dict[str, Any]:
    """A flat dict of what shaped the artifact: spans, input fingerprints, schema, module source
    hashes, parameters, metrics; keys are paths through the tree (`model <- Trainer.examples ...`)."""
    a = node.artifact
    result: dict[str, Any] = {} if prefix else {"spans": raw_spans(node)}
    here = prefix or a.TYPE_NAME
    for name in (
        "span",
        "span_date",
        "version",
        "input_fingerprint",
        "source",
        "schema_file",
        "best_step",
        "best_metric_value",
        "eval_metrics",
        "blessed",
        "reason",
        "pushed_version",
        "decision",
    ):
        value = a.get(name)
        if value is not None:
            result[f"{here}: {name}"] = value
    if node.execution is None:
        return result
    params = json.loads(custom(node.execution, "parameters", "{}") or "{}")
    for name, value in params.items():
        if isinstance(value, dict) and "sha256" in value:
            result[f"{node.component}: {name} sha256"] = value["sha256"]
        elif value not in (None, {}, []):
            result[f"{node.component}: {name}"] = json.dumps(value, sort_keys=True)
    for key, parent in node.inputs.items():
        result.update(facts(parent, f"{node.component}.{key}"))
    return result


def diff(first: LineageNode, second: LineageNode) -> list[tuple[str, Any, Any]]:
    """(fact, first's value, second's value) for every fact that differs."""
    a, b = facts(first), facts(second)
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
