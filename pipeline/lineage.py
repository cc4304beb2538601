"""Where an artifact came from: its upstream tree from one MLMD lineage-subgraph query, as text or
JSON, and the facts that tell two models' histories apart (`diff`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.artifacts import Artifact, pushed_version
from pipeline.metadata import MetadataStore, custom, event_index, get_value, quoted, state_name
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
    """The upstream tree of `artifact`, hop by hop: each artifact's producer (the COMPLETE
    execution that output it; later CACHED executions only reuse it), that execution's inputs,
    and so on. Three batched queries a hop, whatever the length of the history: a resolver input
    (the baseline model, the previous span's statistics, an analyzer cache) is a leaf, its own
    history not followed, unless its resolver follows lineage (the model a BulkInferrer scored
    with)."""
    artifacts: dict[int, Artifact] = {artifact.stored_id: artifact}
    producers: dict[int, pb.Execution] = {}
    inputs: dict[int, list[tuple[str, int]]] = {}
    leaves: set[int] = set()
    frontier = [artifact.stored_id]
    for _ in range(MAX_HOPS):
        if not frontier:
            break
        made = store.completed_with(frontier, "OUTPUT")
        events = store.mlmd.get_events_by_execution_ids([e.id for e in made]) if made else []
        by_id = {e.id: e for e in made}
        wanted = set()
        for event in sorted(events, key=lambda e: e.execution_id):
            execution = by_id[event.execution_id]
            if event.type == pb.Event.OUTPUT and event.artifact_id in frontier:
                producers.setdefault(event.artifact_id, execution)
            elif event.type == pb.Event.INPUT:
                key, index = event.path.steps[0].key, event_index(event)
                # One of a list input (a window's spans): keyed by its place, `examples[0]`, ...
                label = key if index is None else f"{key}[{index}]"
                inputs.setdefault(execution.id, []).append((label, event.artifact_id))
                if key in set(json.loads(custom(execution, "resolver_inputs", "[]") or "[]")):
                    leaves.add(event.artifact_id)
                wanted.add(event.artifact_id)
        new = sorted(wanted - set(artifacts))
        artifacts.update({a.stored_id: a for a in store.artifacts_by_id(new)})
        frontier = [a for a in new if a not in leaves]
    types = {t.id: t.name for t in store.mlmd.get_execution_types()}

    def build(artifact_id: int, path: frozenset) -> LineageNode:
        node = LineageNode(artifacts[artifact_id])
        execution = producers.get(artifact_id)
        if execution is None or artifact_id in leaves or artifact_id in path:
            return node
        node.execution = execution
        node.component = custom(execution, "node_id") or types.get(execution.type_id, "?")
        for key, parent in sorted(inputs.get(execution.id, []), key=lambda pair: _input_order(pair[0])):
            if parent in artifacts:
                node.inputs[key] = build(parent, path | {artifact_id})
        if node.artifact.TYPE_NAME == "Examples" and "span" in node.artifact.properties:
            node.checks = validations_of(store, node.artifact)
        return node

    return build(artifact.stored_id, frozenset())


def walk(tree: LineageNode) -> Iterator[tuple[LineageNode, str]]:
    """Each node of a lineage tree once (an artifact the DAG shares is reached by several paths),
    with how it was reached: `Trainer.examples` for an input, "" for the root."""
    seen: set[int] = set()
    stack: list[tuple[LineageNode, str]] = [(tree, "")]
    while stack:
        node, reached_as = stack.pop()
        if node.artifact.stored_id in seen:
            continue
        seen.add(node.artifact.stored_id)
        yield node, reached_as
        stack.extend((parent, f"{node.component}.{key}") for key, parent in reversed(node.inputs.items()))


def raw_spans(node: LineageNode) -> list:
    """The spans of the raw examples (ExampleGen's outputs) in a lineage tree, oldest first, each
    its date where the span is dated."""
    found: dict[int, Any] = {}
    for here, _ in walk(node):
        a = here.artifact
        if a.TYPE_NAME == "Examples" and here.component == "ExampleGen" and a.get("span") is not None:
            found[a.get("span")] = a.get("span_date") or a.get("span")
    return [found[span] for span in sorted(found)]


def _input_order(label: str) -> tuple[str, int]:
    """`examples[10]` after `examples[9]`: the key, then the index as a number."""
    key, _, index = label.partition("[")
    return key, int(index.rstrip("]") or -1)


def validations_of(store: MetadataStore, examples: Artifact) -> list[Artifact]:
    """The ExampleAnomalies judging these raw examples, two hops downstream: the statistics the
    newest COMPLETE execution computed from them, then the newest validation of those (by filter
    queries with a limit: later runs that reused them add nothing to read)."""

    def consumer_output(artifact_id: int, component: str, key: str) -> Artifact | None:
        """The output of the newest COMPLETE `component` execution that took the artifact as
        its input `key` (a validator also takes the previous span's statistics, under another key)."""
        made = store.executions_where(
            f"type = '{component}' AND events_0.artifact_id = {artifact_id} AND events_0.type = INPUT "
            "AND last_known_state = COMPLETE",
            newest_first=True,
        )
        events = store.mlmd.get_events_by_execution_ids([e.id for e in made]) if made else []
        for execution in made:
            mine = [e for e in events if e.execution_id == execution.id]
            if any(
                e.type == pb.Event.INPUT and e.artifact_id == artifact_id and e.path.steps[0].key == key
                for e in mine
            ):
                outputs = [e.artifact_id for e in mine if e.type == pb.Event.OUTPUT]
                found = store.artifacts_by_id(outputs[:1])
                return found[0] if found else None
        return None

    statistics = consumer_output(examples.stored_id, "StatisticsGen", "examples")
    if statistics is None or statistics.TYPE_NAME != "ExampleStatistics":
        return []
    anomalies = consumer_output(statistics.stored_id, "ExampleValidator", "statistics")
    return [anomalies] if anomalies is not None and anomalies.TYPE_NAME == "ExampleAnomalies" else []


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


FACTS = (
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
    "accuracy",
    "root_mean_squared_error",
    "example_count",
)


def facts(node: LineageNode) -> dict[str, Any]:
    """A flat dict of what shaped the artifact, each fact once: its spans, then per artifact of
    its lineage (named by the step that made it, and its span for raw examples: `ExampleGen[span
    2009] Examples: input_fingerprint`) its facts (spans, input fingerprints, schema, metrics,
    the blessing) and per step its parameters (a module by its sha256). An artifact reached
    twice (the DAG shares inputs) counts once."""
    result: dict[str, Any] = {"spans": raw_spans(node)}
    for here, reached_as in walk(node):
        a = here.artifact
        step = here.component or reached_as  # a resolver input: `Evaluator.baseline`
        if here.execution is not None and custom(here.execution, "map_label"):
            step += f"[{custom(here.execution, 'map_label')}]"
        for name in FACTS:
            value = a.get(name)
            if value not in (None, "", [], {}):
                result[f"{step} {a.TYPE_NAME}: {name}"] = value
        if here.execution is None:
            continue
        params = json.loads(custom(here.execution, "parameters", "{}") or "{}")
        for name, value in params.items():
            if isinstance(value, dict) and "sha256" in value:
                result[f"{step}: {name} sha256"] = value["sha256"]
            elif value not in (None, {}, [], ""):
                result[f"{step}: {name}"] = json.dumps(value, sort_keys=True)
    return result


def headlines(node: LineageNode) -> list[str]:
    """The Evaluator's headline line(s) in a lineage tree: how the model scored, against its
    baseline and the trivial baseline, on which rows."""
    found = []
    for here, _ in walk(node):
        if here.artifact.TYPE_NAME == "ModelBlessing" and here.artifact.get("headline"):
            verdict = "BLESSED" if here.artifact.get("blessed") else "NOT BLESSED"
            found.append(f"{verdict}: {here.artifact.get('headline')}")
    return found


def diff(first: LineageNode, second: LineageNode) -> list[tuple[str, Any, Any]]:
    """(fact, first's value, second's value) for every fact that differs, once each; a fact
    neither side has is not one."""
    a, b = facts(first), facts(second)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    # A span one side has and the other lacks differs once, in `spans`, not fact by fact.
    only = {str(span) for span in set(a["spans"]) ^ set(b["spans"])}
    keys = [k for k in keys if not any(f"[span {span}]" in k for span in only)]
    return [
        (k, a.get(k), b.get(k))
        for k in (["spans"] if "spans" in keys else []) + [k for k in keys if k != "spans"]
    ]


@dataclass
class Impact:
    """Everything built from some artifacts (`downstream`): the artifacts reached, the COMPLETE
    executions that made them, and which inputs each took; `serving` the PushedModels serving now
    (the newest push of their destination)."""

    starts: list[Artifact]
    artifacts: dict[int, Artifact] = field(default_factory=dict)
    executions: dict[int, pb.Execution] = field(default_factory=dict)
    made_by: dict[int, int] = field(default_factory=dict)  # artifact id -> execution id
    took: dict[int, list[int]] = field(default_factory=dict)  # execution id -> the reached artifacts it took
    inputs: dict[int, dict[str, int]] = field(default_factory=dict)  # execution id -> its inputs, by key
    serving: set[int] = field(default_factory=set)
    pipelines: dict[int, str] = field(
        default_factory=dict
    )  # execution id -> pipeline, where not recorded on it

    def of_type(self, type_name: str) -> list[Artifact]:
        return [a for a in self.artifacts.values() if a.TYPE_NAME == type_name and a.id not in self.start_ids]

    @property
    def start_ids(self) -> set[int]:
        return {a.stored_id for a in self.starts}

    def where(self, artifact: Artifact) -> str:
        """`pipeline penguin, root /srv/runs/penguin, run 2024...`: where an artifact was made."""
        execution = self.executions.get(self.made_by.get(artifact.stored_id, -1))
        if execution is None:
            return ""
        pipeline = custom(execution, "pipeline") or self.pipelines.get(execution.id, "?")
        return f"pipeline {pipeline}, root {custom(execution, 'pipeline_root', '?')}, run {custom(execution, 'run_id', '?')}"


def downstream(store: MetadataStore, starts: list[Artifact]) -> Impact:
    """Every execution and artifact built from `starts`, hop by hop across pipelines and roots of
    the store: the COMPLETE executions that took one of them as an input (a CACHED one only reuses
    what one of those made), their outputs, and on. An input a step found in the store rather
    than took from its data (the baseline model, the previous span's statistics) is not followed:
    a model is not built from the spans of the model it was compared with. The model a
    BulkInferrer scored with is followed: its predictions are built from it."""
    impact = Impact(list(starts), {a.stored_id: a for a in starts})
    frontier = sorted(impact.artifacts)
    for _ in range(MAX_HOPS):
        if not frontier:
            break
        consumers = store.completed_with(frontier, "INPUT")
        events = store.mlmd.get_events_by_execution_ids([e.id for e in consumers]) if consumers else []
        reached, outputs = set(frontier), []
        for execution in consumers:
            mine = [e for e in events if e.execution_id == execution.id]
            resolved = set(json.loads(custom(execution, "resolver_inputs", "[]") or "[]"))
            took = [
                e.artifact_id
                for e in mine
                if e.type == pb.Event.INPUT
                and e.artifact_id in reached
                and e.path.steps[0].key not in resolved
            ]
            if not took:
                continue
            impact.took[execution.id] = sorted({*impact.took.get(execution.id, []), *took})
            if execution.id in impact.executions:
                continue  # reached before through another of its inputs: its outputs are known
            impact.executions[execution.id] = execution
            impact.inputs[execution.id] = {
                e.path.steps[0].key: e.artifact_id
                for e in mine
                if e.type == pb.Event.INPUT and event_index(e) is None
            }
            for event in mine:
                if event.type == pb.Event.OUTPUT and event.artifact_id not in impact.artifacts:
                    impact.made_by[event.artifact_id] = execution.id
                    outputs.append(event.artifact_id)
        found = store.artifacts_by_id(sorted(set(outputs)))
        impact.artifacts.update({a.stored_id: a for a in found})
        frontier = sorted(a.stored_id for a in found)
    impact.serving = serving_pushes(store, impact.of_type("PushedModel"))
    unnamed = [e for e in impact.executions.values() if not custom(e, "pipeline")]  # recorded before it was
    for execution in unnamed:
        names = [
            c.name
            for c in store.mlmd.get_contexts_by_execution(execution.id)
            if c.type_id == store.context_type_id("pipeline")
        ]
        impact.pipelines[execution.id] = names[0] if names else "?"
    return impact


def serving_pushes(store: MetadataStore, pushes: list[Artifact]) -> set[int]:
    """Which of these PushedModels serve now: each the newest push (pushed=1) recorded for its
    destination (`<base>/<model name>`, where TF Serving serves the highest version)."""
    serving = set()
    for folder in {os.path.dirname(p.get("pushed_destination") or "") for p in pushes if p.get("pushed")}:
        if not folder:
            continue
        query = (
            "type = 'PushedModel' AND custom_properties.pushed.int_value = 1 AND "
            f"custom_properties.pushed_destination.string_value LIKE '{quoted(folder)}/%'"
        )
        newest = max(store.artifacts_where(query), key=lambda p: (pushed_version(p), p.id), default=None)
        if newest is not None:
            serving.add(newest.stored_id)
    return serving


def starting_points(store: MetadataStore, ref: str, pipeline_name: str | None = None) -> list[Artifact]:
    """What `lineage --downstream REF` starts from: `span:N` or `span:YYYY-MM-DD` (the raw
    examples of that span, in every pipeline or the one named), a CSV file (the raw examples
    ExampleGen made from it), or an artifact id or URI. LookupError when nothing matches."""
    import datetime

    if ref.startswith("span:"):
        text = ref[5:]
        try:
            span = (
                int(text)
                if text.isdigit()
                else (datetime.date.fromisoformat(text) - datetime.date(1970, 1, 1)).days
            )
        except ValueError:
            raise LookupError(f"{ref!r}: give span:N or span:YYYY-MM-DD") from None
        query = (
            f"type = 'Examples' AND properties.span.int_value = {span} AND "
            "custom_properties.input_fingerprint.string_value IS NOT NULL"
        )
        if pipeline_name:
            query += f" AND contexts_p.type = 'pipeline' AND contexts_p.name = '{quoted(pipeline_name)}'"
        found = store.artifacts_where(query)
        if not found:
            raise LookupError(f"no raw examples of span {text} in {store.name}")
        return found
    path = os.path.abspath(ref)
    if ref.endswith(".csv") or os.path.isfile(path):
        made = store.executions_where(
            "type = 'ExampleGen' AND last_known_state = COMPLETE AND "
            f"custom_properties.resolved.string_value LIKE '%\"{quoted(path)}\"%'"
        )
        found = [a for e in made for a in store.outputs_of(e.id).values()]
        if not found:
            raise LookupError(f"no examples were made from {path} in {store.name}")
        return found
    return [find_artifact(store, ref)]


def format_impact(impact: Impact) -> list[str]:
    """The impact as text: what it starts from, then the models, their blessings and pushes (the
    one serving now marked), the predictions, then every other artifact, each with where it was
    made (pipeline, root, run) and its state (DELETED after gc)."""

    def line(a: Artifact) -> str:
        where = impact.where(a)
        state = "" if a.state == "LIVE" else f" {a.state}"
        return f"{a.TYPE_NAME} #{a.id}{state} {a.uri}" + (f"  ({where})" if where else "")

    lines = ["from:"]
    for a in impact.starts:
        lines.append(
            f"  {line(a)}"
            + (f"  span {a.get('span_date') or a.get('span')}" if a.get("span") is not None else "")
        )
    models = impact.of_type("Model")
    lines.append(f"models built from it: {len(models)}")
    blessings = {b.get("current_model_id"): b for b in impact.of_type("ModelBlessing")}
    pushes: dict[int, list[Artifact]] = {}
    for push in impact.of_type("PushedModel"):
        execution = impact.executions.get(impact.made_by.get(push.stored_id, -1))
        model = (
            next(
                (
                    impact.artifacts[i]
                    for i in impact.took.get(execution.id, [])
                    if impact.artifacts[i].TYPE_NAME == "Model"
                ),
                None,
            )
            if execution is not None
            else None
        )
        if model is not None:
            pushes.setdefault(model.stored_id, []).append(push)
    for model in models:
        lines.append(f"  {line(model)}")
        blessing = blessings.get(model.id)
        if blessing is not None:
            verdict = "BLESSED" if blessing.get("blessed") else "NOT BLESSED"
            lines.append(f"      {verdict}: {str(blessing.get('headline') or '')}")
        for push in pushes.get(model.stored_id, []):
            if push.get("pushed"):
                serving = "  <- SERVING NOW" if push.stored_id in impact.serving else ""
                lines.append(
                    f"      pushed as version {pushed_version(push)} to {push.get('pushed_destination')}{serving}"
                )
            else:
                lines.append(f"      not pushed ({push.get('action')})")
    predictions = impact.of_type("InferenceResult")
    if predictions:
        lines.append(f"predictions made with them: {len(predictions)}")
        for result in predictions:
            lines.append(
                f"  {line(result)}  span {result.get('span_date') or result.get('span')}, "
                f"model version {result.get('model_version')}, {result.get('row_count')} rows"
            )
    others = [
        a
        for a in impact.artifacts.values()
        if a.stored_id not in impact.start_ids
        and a.TYPE_NAME not in ("Model", "ModelBlessing", "PushedModel", "InferenceResult")
    ]
    lines.append(f"every other artifact built from it: {len(others)}")
    lines += [f"  {line(a)}" for a in sorted(others, key=lambda a: a.stored_id)]
    return lines


def impact_json(impact: Impact) -> dict[str, Any]:
    """The impact for programs: the starts, and every artifact reached with the execution that made it."""

    def artifact(a: Artifact) -> dict[str, Any]:
        execution = impact.executions.get(impact.made_by.get(a.stored_id, -1))
        made = None
        if execution is not None:
            made = {
                "id": execution.id,
                "component": custom(execution, "node_id"),
                "pipeline": custom(execution, "pipeline"),
                "pipeline_root": custom(execution, "pipeline_root"),
                "run_id": custom(execution, "run_id"),
                "inputs": impact.took.get(execution.id, []),
            }
        return {
            "id": a.id,
            "type": a.TYPE_NAME,
            "uri": a.uri,
            "state": a.state,
            "properties": a.properties,
            "custom_properties": {k: v for k, v in a.custom_properties.items() if k != "fingerprint"},
            "made_by": made,
            **({"serving": a.stored_id in impact.serving} if a.TYPE_NAME == "PushedModel" else {}),
        }

    return {
        "from": [artifact(a) for a in impact.starts],
        "artifacts": [artifact(a) for a in impact.artifacts.values() if a.stored_id not in impact.start_ids],
    }
