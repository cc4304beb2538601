"""Questions about past runs and models, answered from ML Metadata: the Python API that the command
line's `runs`, `models`, `pushes`, `lineage` and `diff` (and the history browser, `runner.py ui`)
are thin wrappers over.

    from pipeline.history import History

    history = History("runs/penguin/metadata.sqlite")         # or "postgresql://mlmd@db:5432/mlmd"
    history.pipelines()                                        # ['penguin', 'penguin-scoring']
    history.runs("penguin")[0]                                 # RunRecord: status, spans, pushed_version, headline...
    history.models("penguin")                                  # ModelRecord per model, newest first, removed ones too
    history.models_frame("penguin", metric="accuracy")         # the same as a pandas DataFrame
    model = history.model("penguin", "v3")                     # by push version, id or URI
    facts = history.lineage(model)                             # ModelLineage: spans, files, schema, modules, ...
    history.downstream("span:2009")                            # Impact: what was built from a span, a file, an artifact
    history.diff("v2", "v3", "penguin")                        # list of Difference(fact, first, second)
    history.pushes("penguin")                                  # PushRecord per push: version, time, model, replaced, why
    history.served_at("penguin", "2026-12-01 12:00")           # the push serving then

Every answer comes from MLMD's API in a few batched queries (filter queries with `IN`, events by
execution), so a page or a command costs the same on a store of ten runs or of five hundred, and
works alike on sqlite and PostgreSQL. Removed (DELETED by `gc`) models and pushes stay in the
answers, marked deleted, with what the store still knows of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.artifacts import Artifact, pushed_version
from pipeline.metadata import MetadataStore, custom, state_name

HEADLINES = ("accuracy", "root_mean_squared_error")


# ---- runs ------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    """One execution of a run: its node (and item), its state as MLMD has it (COMPLETE, CACHED,
    FAILED, RUNNING), and `outcome`, which also says BLOCKED (a gate stopped the run) and
    HELD_BACK (the step kept its result from taking effect)."""

    node_id: str
    execution_id: int
    state: str
    seconds: float
    note: str = ""
    item: str = ""  # for a node that runs once per item: which (`span 2008`)
    outcome: str = ""

    @property
    def name(self) -> str:
        return f"{self.node_id}[{self.item}]" if self.item else self.node_id


@dataclass
class RunRecord:
    """One run: its outcome and, read from its steps, the spans it ingested, the version it
    pushed (None when it pushed nothing new) and its Evaluator's headline metric."""

    run_id: str
    status: str
    started: float  # seconds since the epoch
    seconds: float | None
    steps: list[StepRecord]
    pipeline: str = ""
    root: str = ""
    spans: list = field(default_factory=list)
    pushed_version: int | None = None
    headline: tuple[str, float] | None = None  # (metric, the candidate's value)
    report: str = ""

    @property
    def nothing_new(self) -> bool:
        """Every step reused earlier outputs: the run changed nothing."""
        return bool(self.steps) and all(step.state == "CACHED" for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """As `runs --json` prints it."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "root": self.root,
            "status": self.status,
            "started": self.started,
            "seconds": self.seconds,
            "spans": self.spans,
            "pushed_version": self.pushed_version,
            "headline": list(self.headline) if self.headline else None,
            "nothing_new": self.nothing_new,
            "report": self.report,
            "steps": [
                {
                    "step": s.name,
                    "execution": s.execution_id,
                    "state": s.state,
                    "outcome": s.outcome,
                    "seconds": s.seconds,
                    "note": s.note,
                }
                for s in self.steps
            ],
        }


def runs(
    store: MetadataStore, pipeline_name: str, limit: int = 20, before: str | None = None
) -> list[RunRecord]:
    """The pipeline's latest runs, newest first (`limit` of them, opened before run `before` when
    given), with each step's state, the spans, the push and the headline metric: one query for
    the page, one per run, then two batched ones."""
    return run_records(store, pipeline_name, store.pipeline_runs(pipeline_name, limit=limit, before=before))


def run_records(store: MetadataStore, pipeline_name: str, contexts: list) -> list[RunRecord]:
    """The records of these run contexts (of one pipeline), in their order."""
    records = []
    for run in contexts:
        executions = sorted(store.mlmd.get_executions_by_context(run.id), key=lambda e: e.id)
        steps = [_step_record(e) for e in executions]
        record = RunRecord(
            run.name,
            _status(run),
            custom(run, "start_time", 0.0),
            custom(run, "seconds"),
            steps,
            pipeline_name,
            custom(run, "pipeline_root", ""),
            report=custom(run, "report", "") or "",
        )
        record.spans = sorted(
            {
                custom(e, "map_label", "").removeprefix("span ")
                or str(json.loads(custom(e, "resolved", "{}") or "{}").get("span", ""))
                for e in executions
                if custom(e, "node_id") == "ExampleGen" and state_name(e) in ("COMPLETE", "CACHED")
            }
            - {""}
        )
        records.append((record, executions))
    _add_outcomes(store, records)
    return [record for record, _ in records]


def _step_record(e) -> StepRecord:
    state = state_name(e)
    outcome = state
    if state in ("COMPLETE", "CACHED") and custom(e, "blocked"):
        outcome = "BLOCKED"
    elif state == "COMPLETE" and custom(e, "held_back"):
        outcome = "HELD_BACK"
    note = (
        custom(e, "error", "")
        or custom(e, "blocked", "")
        or custom(e, "held_back", "")
        or (f"from execution {custom(e, 'cached_from')}" if custom(e, "cached_from") else "")
    )
    return StepRecord(
        custom(e, "node_id", "?"),
        e.id,
        state,
        (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000,
        note,
        custom(e, "map_label", ""),
        outcome,
    )


def _add_outcomes(store: MetadataStore, records: list) -> None:
    """The pushed version (a new push) and the headline metric of each run, from its Pusher's and
    Evaluator's outputs: one events query and one artifacts query for all the runs."""
    wanted = {
        e.id: record
        for record, executions in records
        for e in executions
        if state_name(e) == "COMPLETE" and custom(e, "node_id") in ("Pusher", "Evaluator")
    }
    if not wanted:
        return
    events = [e for e in store.mlmd.get_events_by_execution_ids(list(wanted)) if e.type == 4]  # OUTPUT
    artifacts = {a.id: a for a in store.artifacts_by_id(sorted({e.artifact_id for e in events}))}
    for event in events:
        artifact, record = artifacts[event.artifact_id], wanted[event.execution_id]
        if artifact.TYPE_NAME == "PushedModel" and artifact.get("action") == "pushed":
            record.pushed_version = pushed_version(artifact)
        elif artifact.TYPE_NAME == "ModelBlessing":
            for metric in HEADLINES:
                if isinstance(artifact.get(metric), float):
                    record.headline = (metric, artifact.get(metric))


def _status(run) -> str:
    """The run's recorded status; RUNNING only while its process lives (a killed run stays
    RUNNING in the store until the next run on its root closes it)."""
    from pipeline.lease import HOST, process_alive

    status = custom(run, "status", "?")
    if status == "RUNNING" and custom(run, "host") == HOST and not process_alive(custom(run, "pid")):
        return "INTERRUPTED"
    return status


def folded(records: list[RunRecord]) -> list[RunRecord | list[RunRecord]]:
    """The runs with consecutive runs that changed nothing gathered in a list (one line for a
    night of idle cron ticks)."""
    out: list[RunRecord | list[RunRecord]] = []
    for record in records:
        if record.nothing_new and record.status == "COMPLETE" and out and isinstance(out[-1], list):
            out[-1].append(record)
        elif record.nothing_new and record.status == "COMPLETE":
            out.append([record])
        else:
            out.append(record)
    return [group[0] if isinstance(group, list) and len(group) == 1 else group for group in out]


# ---- models and pushes -------------------------------------------------------------------------


@dataclass
class ModelRecord:
    """A model, its run, the spans it learned from, its blessing and pushes, and its evaluation's
    metrics; `deleted` once `gc` removed its files (the store still knows all this)."""

    model: Artifact
    run_id: str
    created: float  # seconds since the epoch
    spans: list
    blessing: Artifact | None
    pushed: Artifact | None  # its latest push, if any
    pushes: list[Artifact] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # the Evaluator's, whole split
    root: str = ""
    serving: bool = False

    @property
    def deleted(self) -> bool:
        return self.model.state != "LIVE"

    @property
    def blessed(self) -> bool | None:
        return None if self.blessing is None else bool(self.blessing.get("blessed"))

    @property
    def versions(self) -> list[int]:
        return sorted(pushed_version(p) for p in self.pushes if p.get("action") == "pushed")

    def to_dict(self) -> dict[str, Any]:
        """As `models --json` prints it."""
        return {
            "id": self.model.id,
            "uri": self.model.uri,
            "state": self.model.state,
            "deleted": self.deleted,
            "run_id": self.run_id,
            "root": self.root,
            "created": self.created,
            "spans": self.spans,
            "blessed": self.blessed,
            "reason": (self.blessing.get("reason") or "") if self.blessing is not None else "",
            "headline": (self.blessing.get("headline") or "") if self.blessing is not None else "",
            "versions": self.versions,
            "serving": self.serving,
            "metrics": self.metrics,
        }

    def metric(self, name: str) -> float | None:
        """The Evaluator's value of metric `name`, else the blessing's, else the Trainer's."""
        if name in self.metrics:
            return self.metrics[name]
        for source in (self.blessing, self.model):
            value = source.get(name) if source is not None else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        trained = json.loads(self.model.get("eval_metrics") or "{}")
        value = trained.get(name)
        return float(value) if isinstance(value, (int, float)) else None


def models(store: MetadataStore, pipeline_name: str) -> list[ModelRecord]:
    """Every model the pipeline trained, newest first, removed ones too: a few batched queries."""
    from pipeline.artifacts import Model, ModelBlessing, ModelEvaluation, PushedModel

    found = store.artifacts_of(Model, pipeline_name)
    if not found:
        return []
    producers = _producers(store, found)
    blessings: dict[int | None, Artifact] = {}
    for found_blessing in store.artifacts_of(ModelBlessing, pipeline_name):
        blessings[found_blessing.get("current_model_id")] = found_blessing  # by id: the newest wins
    evaluations = _siblings(store, list(blessings.values()), ModelEvaluation.TYPE_NAME)
    pushes: dict[int, list[Artifact]] = {}
    all_pushes = store.artifacts_of(PushedModel, pipeline_name)
    for push, model_id in _push_models(store, all_pushes).items():
        pushes.setdefault(model_id, []).append(push)
    serving = _serving(store, all_pushes)
    records = []
    for model in reversed(found):
        producer = producers.get(model.stored_id)
        blessing = blessings.get(model.stored_id)
        evaluation = evaluations.get(blessing.stored_id) if blessing is not None else None
        mine = sorted(pushes.get(model.stored_id, []), key=lambda p: p.stored_id)
        done = [p for p in mine if p.get("pushed")]
        latest = (done or mine)[-1] if done or mine else None
        records.append(
            ModelRecord(
                model,
                custom(producer, "run_id", "?") if producer else "?",
                producer.create_time_since_epoch / 1000 if producer else 0.0,
                _spans(store, model),
                blessing,
                latest,
                mine,
                json.loads(evaluation.get("metrics") or "{}") if evaluation is not None else {},
                custom(producer, "pipeline_root", "") if producer else "",
                any(p.stored_id in serving for p in done),
            )
        )
    return records


def model_record(store: MetadataStore, model_id: int) -> ModelRecord:
    """One model's record as `models` makes it, read from the ids the Evaluator and the Pusher
    record on their outputs (a blessing's `current_model_id`, a push's `model_id`, else its
    Pusher's input), so that it costs the same whatever the number of models or runs.
    LookupError if it is not a model."""
    from pipeline.artifacts import ModelEvaluation, PushedModel

    found = store.artifacts_by_id([model_id])
    if not found or found[0].TYPE_NAME != "Model":
        raise LookupError(f"no model with id {model_id} in {store.name}")
    model = found[0]
    producer = _producers(store, [model]).get(model.stored_id)
    blessings = store.artifacts_where(
        f"type = 'ModelBlessing' AND custom_properties.current_model_id.int_value = {model_id}"
    )
    blessing = blessings[-1] if blessings else None  # by id: the newest, as `models` takes it
    evaluation = (
        _siblings(store, [blessing], ModelEvaluation.TYPE_NAME).get(blessing.stored_id)
        if blessing is not None
        else None
    )
    pushes = store.artifacts_where(
        f"type = 'PushedModel' AND custom_properties.model_id.int_value = {model_id}"
    )
    if not pushes:  # pushed before pushes recorded their model: the Pushers that took it
        made = store.executions_where(
            f"type = 'Pusher' AND events_0.artifact_id = {model_id} AND events_0.type = INPUT "
            "AND last_known_state = COMPLETE"
        )
        pushes = [a for e in made for a in store.outputs_of(e.id).values() if isinstance(a, PushedModel)]
    done = [p for p in pushes if p.get("pushed")]
    from pipeline.lineage import serving_pushes

    serving = serving_pushes(store, done)
    return ModelRecord(
        model,
        custom(producer, "run_id", "?") if producer else "?",
        producer.create_time_since_epoch / 1000 if producer else 0.0,
        _spans(store, model),
        blessing,
        (done or pushes)[-1] if done or pushes else None,
        pushes,
        json.loads(evaluation.get("metrics") or "{}") if evaluation is not None else {},
        custom(producer, "pipeline_root", "") if producer else "",
        any(p.stored_id in serving for p in done),
    )


def _producers(store: MetadataStore, artifacts: Sequence[Artifact]) -> dict[int, Any]:
    """artifact id -> the COMPLETE execution that output it, in two queries."""
    made = store.completed_with([a.stored_id for a in artifacts], "OUTPUT")
    by_id = {e.id: e for e in made}
    wanted = {a.stored_id for a in artifacts}
    found: dict[int, Any] = {}
    for event in store.mlmd.get_events_by_execution_ids(list(by_id)) if by_id else []:
        if event.type == 4 and event.artifact_id in wanted:  # OUTPUT
            found.setdefault(event.artifact_id, by_id[event.execution_id])
    return found


def _siblings(store: MetadataStore, artifacts: Sequence[Artifact], type_name: str) -> dict[int, Artifact]:
    """artifact id -> the output of type `type_name` of the same execution (a blessing's evaluation)."""
    if not artifacts:
        return {}
    producers = _producers(store, artifacts)
    events = store.mlmd.get_events_by_execution_ids(sorted({e.id for e in producers.values()}))
    outputs = {e.artifact_id: e.execution_id for e in events if e.type == 4}
    others = {a.id: a for a in store.artifacts_by_id(sorted(outputs)) if a.TYPE_NAME == type_name}
    by_execution = {outputs[i]: a for i, a in others.items()}
    return {
        artifact_id: by_execution[execution.id]
        for artifact_id, execution in producers.items()
        if execution.id in by_execution
    }


def _push_models(store: MetadataStore, pushes: Sequence[Artifact]) -> dict[Artifact, int]:
    """push -> the id of the model it pushed: recorded on it (`model_id`), else its Pusher's input."""
    found = {p: p.get("model_id") for p in pushes if p.get("model_id")}
    rest = [p for p in pushes if not p.get("model_id")]
    if rest:
        producers = _producers(store, rest)
        events = store.mlmd.get_events_by_execution_ids(sorted({e.id for e in producers.values()}))
        model_of = {
            e.execution_id: e.artifact_id for e in events if e.type == 3 and e.path.steps[0].key == "model"
        }
        for push in rest:
            execution = producers.get(push.stored_id)
            if execution is not None and execution.id in model_of:
                found[push] = model_of[execution.id]
    return found


def _serving(store: MetadataStore, pushes: Sequence[Artifact]) -> set[int]:
    """The pushes serving now: the newest push of each destination."""
    newest: dict[str, Artifact] = {}
    for push in pushes:
        if not push.get("pushed"):
            continue
        folder = os.path.dirname(push.get("pushed_destination") or "")
        if folder not in newest or (pushed_version(push), push.stored_id) > (
            pushed_version(newest[folder]),
            newest[folder].stored_id,
        ):
            newest[folder] = push
    return {p.stored_id for p in newest.values()}


def _spans(store: MetadataStore, model: Artifact) -> list:
    """The spans a model learned from: recorded on it by the Trainer (as dates where its raw
    examples were dated), else from its lineage (a model trained before they were recorded)."""
    recorded = model.get("span_dates") or model.get("spans")
    if recorded:
        return json.loads(recorded)
    return spans_of(store, model)


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
    """The PushedModel of the newest push, or of push `version` (removed by gc or not);
    LookupError if there is none."""
    from pipeline.artifacts import PushedModel

    pushed = [p for p in store.artifacts_of(PushedModel, pipeline_name) if p.get("pushed")]
    if version is not None:
        pushed = [p for p in pushed if pushed_version(p) == version]
    if not pushed:
        which = f"version {version}" if version is not None else "any model"
        raise LookupError(f"pipeline {pipeline_name!r} has not pushed {which}")
    return max(pushed, key=lambda p: (pushed_version(p), p.id))


@dataclass
class PushRecord:
    """One push to a destination: the version, when, the model, the version it replaced in
    service, and why the model was blessed; `deleted` once gc removed the version's files."""

    version: int
    destination: str
    pushed_at: float  # seconds since the epoch
    model_id: int | None
    run_id: str
    replaced: int | None
    reason: str  # the blessing's verdict, first line
    headline: str  # the Evaluator's headline line
    artifact: Artifact
    serving: bool = False

    @property
    def deleted(self) -> bool:
        return self.artifact.state != "LIVE"

    def to_dict(self) -> dict[str, Any]:
        """As `pushes --json` prints it."""
        return {
            "version": self.version,
            "destination": self.destination,
            "pushed_at": self.pushed_at,
            "model_id": self.model_id,
            "run_id": self.run_id,
            "replaced": self.replaced,
            "reason": self.reason,
            "headline": self.headline,
            "serving": self.serving,
            "deleted": self.deleted,
            "pushed_model_id": self.artifact.id,
        }


def pushes(store: MetadataStore, pipeline_name: str, destination: str | None = None) -> list[PushRecord]:
    """Every push of the pipeline (to `destination`, a `<base>/<model name>` folder, if given),
    newest first; what each replaced is the version served before it."""
    from pipeline.artifacts import ModelBlessing, PushedModel

    found = [p for p in store.artifacts_of(PushedModel, pipeline_name) if p.get("action") == "pushed"]
    if destination is not None:
        folder = os.path.abspath(destination).rstrip("/")
        found = [p for p in found if os.path.dirname(p.get("pushed_destination") or "") == folder]
    if not found:
        return []
    producers = _producers(store, found)
    models = _push_models(store, found)
    blessings = {b.get("current_model_id"): b for b in store.artifacts_of(ModelBlessing, pipeline_name)}
    serving = _serving(store, found)
    records = []
    for push in found:
        producer = producers.get(push.stored_id)
        when = push.get("pushed_at") or (producer.create_time_since_epoch / 1000 if producer else 0.0)
        blessing = blessings.get(models.get(push))
        records.append(
            PushRecord(
                pushed_version(push),
                os.path.dirname(push.get("pushed_destination") or ""),
                float(when),
                models.get(push),
                custom(producer, "run_id", "?") if producer else "?",
                None,
                (blessing.get("reason") or "").splitlines()[0] if blessing is not None else "",
                (blessing.get("headline") or "") if blessing is not None else "",
                push,
                push.stored_id in serving,
            )
        )
    records.sort(key=lambda r: (r.pushed_at, r.version))
    previous: dict[str, int] = {}
    for record in records:
        record.replaced = push_replaced(record.artifact, previous.get(record.destination))
        previous[record.destination] = record.version
    return list(reversed(records))


def push_replaced(push: Artifact, before: int | None) -> int | None:
    """The version a push replaced in service: recorded by the Pusher, else the one before it."""
    recorded = push.get("replaced_version")
    return int(recorded) or None if recorded is not None else before


def served_at(store: MetadataStore, pipeline_name: str, when: float | str, destination: str | None = None):
    """The push serving at `when` (seconds since the epoch, or a date / `YYYY-MM-DD HH:MM`, local
    time): the newest push before it. None when nothing was pushed yet."""
    moment = when if isinstance(when, (int, float)) else parse_time(when)
    earlier = [p for p in pushes(store, pipeline_name, destination) if p.pushed_at <= moment]
    return earlier[0] if earlier else None


def parse_time(text: str) -> float:
    """`2026-12-01`, `2026-12-01 12:00`, `2026-12-01T12:00:05`: seconds since the epoch, local time."""
    text = text.strip().replace("T", " ")
    for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(text, layout))
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a time: give YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]")


# ---- the API -----------------------------------------------------------------------------------


@dataclass
class ModelLineage:
    """What shaped a model, read from its lineage: the spans and input files, the schema, the user
    modules with their sha256, every step's parameters, the Evaluator's metrics and the baseline
    it was compared with; `tree` is the whole upstream tree (`pipeline.lineage.LineageNode`)."""

    tree: Any
    spans: list
    files: list[dict]
    schema: dict
    modules: dict[str, dict]
    parameters: dict[str, dict]
    metrics: dict[str, float]
    baseline: int | None
    blessed: bool | None
    reason: str


def model_lineage(store: MetadataStore, artifact: Artifact) -> ModelLineage:
    """The facts of a model's (or a push's) lineage; its evaluation, which is not upstream of the
    model, is found beside its newest blessing."""
    from pipeline.artifacts import ModelEvaluation
    from pipeline.lineage import lineage, raw_spans, walk

    tree = lineage(store, artifact)
    files, modules, parameters, schema = [], {}, {}, {}
    metrics: dict[str, float] = {}
    baseline, blessed, reason = None, None, ""
    for node, _ in walk(tree):
        a = node.artifact
        if a.TYPE_NAME == "Schema":
            schema = {"id": a.id, "uri": a.uri, "file": a.get("schema_file"), "source": a.get("source")}
        if a.TYPE_NAME == "ModelBlessing":
            baseline = a.get("baseline_model_id") or None
            blessed, reason = bool(a.get("blessed")), (a.get("reason") or "").splitlines()[0]
        if a.TYPE_NAME == "ModelEvaluation":
            metrics = json.loads(a.get("metrics") or "{}")
        if node.execution is None:
            continue
        params = json.loads(custom(node.execution, "parameters", "{}") or "{}")
        step = node.component + (
            f"[{custom(node.execution, 'map_label')}]" if custom(node.execution, "map_label") else ""
        )
        parameters[step] = params
        for name, value in params.items():
            if isinstance(value, dict) and "sha256" in value:
                modules[f"{node.component}.{name}"] = value
        resolved = json.loads(custom(node.execution, "resolved", "{}") or "{}")
        for f in resolved.get("files", []):
            files.append({**f, "span": resolved.get("span")})
    files.sort(key=lambda f: (f.get("span") or 0, f["path"]))
    model = _model_in(tree)
    if model is not None and (blessed is None or not metrics):
        found = store.artifacts_where(
            f"type = 'ModelBlessing' AND custom_properties.current_model_id.int_value = {model.stored_id}"
        )
        if found:
            blessing = found[-1]
            if blessed is None:
                baseline = blessing.get("baseline_model_id") or None
                blessed, reason = (
                    bool(blessing.get("blessed")),
                    (blessing.get("reason") or "").splitlines()[0],
                )
            evaluation = _siblings(store, [blessing], ModelEvaluation.TYPE_NAME).get(blessing.stored_id)
            if evaluation is not None and not metrics:
                metrics = json.loads(evaluation.get("metrics") or "{}")
    return ModelLineage(
        tree, raw_spans(tree), files, schema, modules, parameters, metrics, baseline, blessed, reason
    )


def _model_in(tree) -> Artifact | None:
    """The Model of a lineage tree: the artifact itself, or the model a push pushed."""
    if tree.artifact.TYPE_NAME == "Model":
        return tree.artifact
    model = tree.inputs.get("model")
    return model.artifact if model is not None and model.artifact.TYPE_NAME == "Model" else None


class History:
    """The history a metadata store holds, for notebooks and scripts (see the module's docstring).
    Opens the store read-only (`spec`: a sqlite path or a postgresql:// / mysql:// URL, password
    from ~/.pgpass, PGPASSWORD or $PIPELINE_METADATA_PASSWORD_FILE); LookupError when it holds no
    runs at all."""

    def __init__(self, spec: str | MetadataStore):
        if isinstance(spec, MetadataStore):
            self.store = spec
        else:
            from pipeline.metadata import connection_config

            config = connection_config(spec)
            if config.WhichOneof("config") == "sqlite" and not os.path.exists(config.sqlite.filename_uri):
                raise LookupError(f"no runs recorded in {spec}")
            self.store = MetadataStore(spec, create=False)

    def pipelines(self) -> list[str]:
        return self.store.pipeline_names()

    def _name(self, pipeline: str | None) -> str:
        names = self.pipelines()
        if pipeline is not None:
            if pipeline not in names:
                raise LookupError(
                    f"no pipeline {pipeline!r} in {self.store.name} (pipelines: {', '.join(names) or 'none'})"
                )
            return pipeline
        if len(names) == 1:
            return names[0]
        raise LookupError(f"{self.store.name} holds pipelines {', '.join(names) or 'none'}; name one")

    def runs(self, pipeline: str | None = None, limit: int = 20) -> list[RunRecord]:
        return runs(self.store, self._name(pipeline), limit)

    def models(self, pipeline: str | None = None) -> list[ModelRecord]:
        return models(self.store, self._name(pipeline))

    def model(self, pipeline: str | None, ref: str | int) -> ModelRecord:
        """A model by id, URI, `vN` / N-as-text for push version N, or `latest` (the served one)."""
        artifact = self.artifact(pipeline, str(ref))
        if artifact.TYPE_NAME == "PushedModel":
            model_id = _push_models(self.store, [artifact]).get(artifact)
            artifact = self.store.artifacts_by_id([model_id])[0] if model_id else artifact
        if artifact.TYPE_NAME != "Model":
            raise LookupError(f"{ref!r} is a {artifact.TYPE_NAME}, not a model")
        return model_record(self.store, artifact.stored_id)

    def artifact(self, pipeline: str | None, ref: str) -> Artifact:
        """An artifact by id, URI, `latest` or `vN` (pushes of the pipeline)."""
        from pipeline.lineage import find_artifact

        if ref == "latest":
            return latest_pushed(self.store, self._name(pipeline))
        if ref[:1] == "v" and ref[1:].isdigit():
            return latest_pushed(self.store, self._name(pipeline), int(ref[1:]))
        return find_artifact(self.store, ref)

    def lineage(self, model: ModelRecord | Artifact | str, pipeline: str | None = None) -> ModelLineage:
        artifact = self._artifact_of(model, pipeline)
        return model_lineage(self.store, artifact)

    def downstream(self, ref: str, pipeline: str | None = None):
        """Everything built from `span:N`, `span:YYYY-MM-DD`, a CSV file, or an artifact (id or
        URI): a `pipeline.lineage.Impact`."""
        from pipeline.lineage import downstream, starting_points

        return downstream(self.store, starting_points(self.store, ref, pipeline))

    def diff(self, first, second, pipeline: str | None = None) -> list[Difference]:
        from pipeline.lineage import diff, lineage

        a, b = (self._artifact_of(x, pipeline) for x in (first, second))
        return [Difference(*d) for d in diff(lineage(self.store, a), lineage(self.store, b))]

    def pushes(self, pipeline: str | None = None, destination: str | None = None) -> list[PushRecord]:
        return pushes(self.store, self._name(pipeline), destination)

    def served_at(self, pipeline: str | None, when: float | str, destination: str | None = None):
        return served_at(self.store, self._name(pipeline), when, destination)

    def _artifact_of(self, model, pipeline: str | None) -> Artifact:
        if isinstance(model, ModelRecord):
            return model.model
        if isinstance(model, Artifact):
            return model
        return self.artifact(pipeline, str(model))

    # ---- tables ------------------------------------------------------------------------------

    def runs_frame(self, pipeline: str | None = None, limit: int = 20):
        """The runs as a pandas DataFrame: run, status, started, seconds, spans, pushed version,
        headline metric and its value."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "run": r.run_id,
                    "status": r.status,
                    "started": pd.Timestamp(r.started, unit="s"),
                    "seconds": r.seconds,
                    "spans": r.spans,
                    "pushed_version": r.pushed_version,
                    "metric": r.headline[0] if r.headline else None,
                    "value": r.headline[1] if r.headline else None,
                    "nothing_new": r.nothing_new,
                }
                for r in self.runs(pipeline, limit)
            ]
        )

    def models_frame(self, pipeline: str | None = None, metric: str | None = None):
        """The models as a pandas DataFrame, newest first: id, created, run, spans, blessed,
        pushed versions, serving, deleted, and `metric` (default: the headline metric)."""
        import pandas as pd

        rows = []
        for r in self.models(pipeline):
            name = metric or next((m for m in HEADLINES if r.metric(m) is not None), "accuracy")
            rows.append(
                {
                    "model": r.model.id,
                    "created": pd.Timestamp(r.created, unit="s"),
                    "run": r.run_id,
                    "spans": r.spans,
                    "blessed": r.blessed,
                    "versions": r.versions,
                    "serving": r.serving,
                    "deleted": r.deleted,
                    "metric": name,
                    "value": r.metric(name),
                }
            )
        return pd.DataFrame(rows)

    def pushes_frame(self, pipeline: str | None = None):
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "version": p.version,
                    "pushed_at": pd.Timestamp(p.pushed_at, unit="s"),
                    "model": p.model_id,
                    "replaced": p.replaced,
                    "serving": p.serving,
                    "deleted": p.deleted,
                    "reason": p.reason,
                    "destination": p.destination,
                }
                for p in self.pushes(pipeline)
            ]
        )


@dataclass
class Difference:
    fact: str
    first: Any
    second: Any
