"""Evaluator: the raw eval split through the model's serving signature, batch by batch (`batched`),
against the latest blessed model of the pipeline; TFMA's result files and threshold checks decide
the ModelBlessing."""

from __future__ import annotations

import glob
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Annotated

from pipeline import (
    Component,
    DefinitionError,
    ExecutionContext,
    InputArtifact,
    OutputArtifact,
    UserInputError,
)
from pipeline.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from pipeline.resolvers import LatestBlessedModel

PAGE_FILE = "evaluation.html"
BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"
# The metric names thresholds may use; kept here too so that a definition checks without TFMA.
REGRESSION_METRICS = (
    "example_count",
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_absolute_error",
    "mean_label",
    "mean_prediction",
    "r_squared",
)
KNOWN_METRICS = {
    "example_count",
    "accuracy",
    "macro_f1",
    "precision",
    "recall",
    "f1",
    "auc",
    "auc_precision_recall",
    *REGRESSION_METRICS,
}
HEADLINE = {"classification": "accuracy", "regression": "root_mean_squared_error"}


@dataclass(frozen=True)
class EvaluatorParams:
    """label_key: the raw label feature (default: the one the Trainer recorded on the Model).
    task: "classification" or "regression" (default: what the model's serving_default answers,
    as the Trainer recorded it). label_vocabulary (classification): the file under the model's
    `Format-Serving/assets/` naming its classes in class-id order (default: the Trainer's).
    signature_name: the signature TFMA calls with serialized raw tf.Examples (`examples`).
    split: the Examples split evaluated; by default `test` where ExampleGen made one (examples
    the Trainer never saw, early stopping included), else `eval` (which the Trainer's early
    stopping also used: the evaluation says its figures are optimistic). slices: feature-name tuples to slice by; `()` is the
    whole split. value_thresholds: metric -> the least value the candidate may have (for an error
    metric, the most). change_thresholds: metric -> the least (candidate - baseline) allowed (for
    an error metric, the most: 0 means "no worse than the baseline"); checked only when a baseline
    exists. Metric names, classification: example_count, accuracy, macro_f1, precision/<class>,
    recall/<class>, f1/<class>, auc/<class> and auc_precision_recall/<class> (two-class models); regression: example_count,
    mean_squared_error, root_mean_squared_error, mean_absolute_error (errors: lower is better),
    mean_label, mean_prediction, r_squared. Thresholds apply to the whole split.
    floor_margin: the floor every model must clear on the headline metric (accuracy, or
    root_mean_squared_error), against the trivial baseline, the best constant guess on the same
    examples (the most frequent class; the mean label): its error, 1 - accuracy or the RMSE, must
    be at most (1 - floor_margin) times the trivial baseline's. None: no floor (then, with no
    thresholds either, every model is blessed). floor_metric: the metric the floor is on instead of
    the headline (for an imbalanced label, `auc_precision_recall/<positive class>` or
    `macro_f1`); on a metric where higher is better, 1 - value is the error that must shrink.
    spans: with a window of spans (`ExampleGen(window=...)`), which spans' `split` is evaluated:
    "latest" (default: the newest span's held-out rows, those most like what the model will serve)
    or "window" (every span's). Candidate and baseline are always evaluated on the same examples,
    and the evaluation records and shows which spans they were."""

    label_key: str | None = None
    task: str | None = None
    label_vocabulary: str | None = None
    signature_name: str = "serving_default"
    split: str | None = None
    slices: tuple = ((),)
    value_thresholds: dict = field(default_factory=dict)
    change_thresholds: dict = field(default_factory=dict)
    floor_margin: float | None = 0.1
    floor_metric: str | None = None
    spans: str = "latest"

    def __post_init__(self):
        if self.spans not in ("latest", "window"):
            raise DefinitionError(
                f"Evaluator: spans must be 'latest' (the newest span's split) or 'window' (every span's), got {self.spans!r}"
            )
        if self.floor_metric is not None and self.floor_metric.partition("/")[0] not in KNOWN_METRICS:
            raise DefinitionError(
                f"Evaluator: floor_metric names unknown metric {self.floor_metric!r}; classification: "
                f"{', '.join(CLASSIFICATION_METRICS)}; regression: {', '.join(REGRESSION_METRICS)}"
            )
        margin = self.floor_margin
        if margin is not None and (
            not isinstance(margin, (int, float)) or isinstance(margin, bool) or not 0 <= margin < 1
        ):
            raise DefinitionError(
                f"Evaluator: floor_margin must be a number from 0 to below 1 (the share of the trivial "
                f"baseline's error a model must remove; 0.1 by default), or None for no floor; got {margin!r}"
            )
        for features in self.slices:
            if not isinstance(features, tuple) or not all(isinstance(f, str) for f in features):
                raise DefinitionError(
                    f"Evaluator: slices must be tuples of feature names, such as ((), ('island',)); got {features!r}"
                )
        if self.task not in (None, "classification", "regression"):
            raise DefinitionError(
                f"Evaluator: task must be 'classification' or 'regression', got {self.task!r}"
            )
        for kind in ("value_thresholds", "change_thresholds"):
            for metric, bound in getattr(self, kind).items():
                name = metric.partition("/")[0]
                if name not in KNOWN_METRICS:
                    raise DefinitionError(
                        f"Evaluator: {kind} names unknown metric {metric!r}; classification: "
                        f"{', '.join(CLASSIFICATION_METRICS)}; "
                        f"regression: {', '.join(REGRESSION_METRICS)}"
                    )
                if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                    raise DefinitionError(f"Evaluator: {kind}[{metric!r}] must be a number, got {bound!r}")

    def thresholds(self, with_baseline: bool) -> list:
        from components.evaluator.tfma_results import Threshold

        checks = [Threshold(m, "value", float(b)) for m, b in sorted(self.value_thresholds.items())]
        if with_baseline:
            checks += [Threshold(m, "change", float(b)) for m, b in sorted(self.change_thresholds.items())]
        return checks


CLASSIFICATION_METRICS = (
    "example_count",
    "accuracy",
    "macro_f1",
    "precision/<class>",
    "recall/<class>",
    "f1/<class>",
    "auc/<class>",
    "auc_precision_recall/<class>",
)


def check_thresholds(node) -> None:
    """At definition: every threshold names a metric the model's task produces, the task being the
    Evaluator's `task` or, when the model comes from a Trainer whose `build_fn` the head wraps,
    that Trainer's `head`. Otherwise (a model_fn or run_fn decides) the check waits for the model."""
    params = node.params
    task, source = params.task, f"{node.id}'s task"
    if task is None:
        channel = node.inputs.get("model")
        trainer = channel.producer if channel is not None else None
        if trainer is not None and trainer.component.name == "Trainer" and _head_applies(trainer.params):
            task, source = trainer.params.head, f"{trainer.id}'s head"
    if task not in HEADLINE:
        return
    produced = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    names = {m.partition("/")[0] for m in produced}
    named = {kind: list(getattr(params, kind)) for kind in ("value_thresholds", "change_thresholds")}
    named["floor_metric"] = [params.floor_metric] if params.floor_metric else []
    for kind, metrics in named.items():
        for metric in metrics:
            name, slash, _ = metric.partition("/")
            if name not in names or bool(slash) != (f"{name}/<class>" in produced):
                raise DefinitionError(
                    f"{node.id}: {kind} names {metric!r}, which a {task} model ({source}) does not "
                    f"produce; it produces: {', '.join(produced)}"
                )


def _head_applies(trainer_params) -> bool:
    """Whether the Trainer's model is its `build_fn` under its head (not a model_fn or run_fn)."""
    if trainer_params.build_fn is not None:
        return True
    if trainer_params.model_fn is not None or not trainer_params.module_file:
        return False
    import ast

    try:
        with open(trainer_params.module_file) as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return False  # the Trainer's own check names the file
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return "build_fn" in defined and not defined & {"model_fn", "run_fn"}


def run_evaluator(
    ctx: ExecutionContext,
    params: EvaluatorParams,
    model: InputArtifact[Model],
    examples: InputArtifact[list[Examples]],
    # TFX's latest-blessed-model resolver, resolved by the runner and recorded as an input.
    baseline: Annotated[Model | None, LatestBlessedModel(exclude="model")],
    evaluation: OutputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
) -> None:
    from tensorflow_model_analysis.utils import config_util

    from components.evaluator import batched, tfma_results
    from components.evaluator.page import write_page
    from components.evaluator.tfma_results import BASELINE, CANDIDATE, shared_class_names

    models = {tfma_results.CANDIDATE: model, **({tfma_results.BASELINE: baseline} if baseline else {})}
    label_key, task = _label_and_task(ctx, params, model)
    window, examples = examples, _evaluated_spans(examples, params)
    for evaluated in examples:
        _check_label_in(evaluated, label_key, params, ctx)
    vocabularies, class_names = {}, None
    if task == "classification":
        vocabularies = {
            name: tfma_results.label_vocabulary(m.uri, _vocabulary_name(params, m, label_key))
            for name, m in models.items()
        }
        class_names = shared_class_names(vocabularies)
    thresholds = params.thresholds(with_baseline=baseline is not None)
    for metric in [t.metric for t in thresholds] + [params.floor_metric] * bool(params.floor_metric):
        tfma_results.parse_metric(metric, class_names)
    # The whole split is always evaluated: thresholds and the floor apply to it.
    slices = tuple(params.slices) if () in params.slices else ((), *params.slices)
    config = tfma_results.eval_config(
        label_key, params.signature_name, slices, class_names, thresholds, baseline is not None
    )
    split = _split_of(params, examples[-1])
    where = _where(examples, window)
    files, size = _split_files(examples, split)
    ctx.log(_describe_start(model, baseline, params, where, split, thresholds))
    started = time.monotonic()
    config = config_util.update_eval_config_with_defaults(config, has_baseline=baseline is not None)
    # TFMA's model names: '' for a lone candidate, else candidate and baseline.
    names = {spec.name: (BASELINE if spec.is_baseline else CANDIDATE) for spec in config.model_specs}
    job = batched.Task(
        label_key=label_key,
        signature_name=params.signature_name,
        slices=tuple(tuple(s) for s in slices),
        model_dirs={n: os.path.join(models[ours].uri, tfma_results.SERVING_DIR) for n, ours in names.items()},
        vocabularies={n: vocabularies[ours] for n, ours in names.items()} if class_names else {},
        class_names=tuple(class_names) if class_names else None,
    )
    if ctx.beam_runs_in_process(input_bytes=size):
        accumulator = batched.evaluate(files, job, progress=_progress(ctx, examples, split))
    else:
        accumulator = batched.evaluate_with_beam(ctx.beam_pipeline(input_bytes=size), files, job)
    batched.write_results(evaluation.uri, config, accumulator, job, examples[-1].split_uri(split))
    seconds = time.monotonic() - started
    results = tfma_results.read_results(evaluation.uri, class_names, thresholds)
    candidate = next(n for n, ours in names.items() if ours == CANDIDATE)
    trivial, guess = batched.trivial_metrics(accumulator, class_names, candidate)
    results.metrics[tfma_results.OVERALL, tfma_results.TRIVIAL] = trivial
    _apply_floor(params, task, results, guess)
    _record(
        evaluation,
        blessing,
        params,
        model,
        baseline,
        results,
        round(seconds, 3),
        task,
        class_names,
        split,
        where,
    )
    evaluation.custom_properties["eval_spans"] = json.dumps([e.get("span") for e in examples])
    # Every metric of the whole split, the candidate's: what `models --metric` and trends read
    # without opening TFMA's files.
    whole_split = results.metrics.get((tfma_results.OVERALL, CANDIDATE), {})
    evaluation.custom_properties["metrics"] = json.dumps(
        {name: value for name, value in sorted(whole_split.items()) if not math.isnan(value)}
    )
    overall = accumulator.state.get((), {})
    write_page(
        os.path.join(evaluation.uri, PAGE_FILE),
        results,
        model,
        baseline,
        class_names,
        blessing.custom_properties["headline"] + (f" ({OPTIMISTIC})" if split == TRAINER_EVAL_SPLIT else ""),
        confusion=overall.get(candidate, {}).get("matrix"),
        scores=_scores(params, model, class_names, overall, names),
        residuals=overall.get(candidate, {}).get("residuals"),
    )
    _log_outcome(ctx, params, task, results, blessing, seconds)
    if not results.validation_ok:
        ctx.hold_back(
            f"model {model.id} is not blessed: {'; '.join(_failures(results)) or 'see the evaluation'}"
        )


def _scores(params: EvaluatorParams, model: Model, class_names, overall: dict, names: dict) -> dict | None:
    """For a two-class model, the positive class (the Trainer's decision threshold's class, else
    the class the floor metric names, else the rarer one) and each model's histogram of its score."""
    from components.evaluator.tfma_results import CANDIDATE

    if not class_names or len(class_names) != 2 or not overall:
        return None
    named = [c for c in json.loads(model.custom_properties.get("decision_threshold") or "{}")]
    named += [params.floor_metric.partition("/")[2]] if params.floor_metric else []
    named = [c for c in named if c in class_names]
    candidate = next(n for n, ours in names.items() if ours == CANDIDATE)
    counts = overall[candidate]["matrix"].sum(axis=1)
    positive = class_names.index(named[0]) if named else int(counts.argmin())
    return {
        "positive": class_names[positive],
        "histograms": {
            names[n]: arrays["histogram"][positive] for n, arrays in overall.items() if "histogram" in arrays
        },
    }


def _label_and_task(ctx: ExecutionContext, params: EvaluatorParams, model: Model) -> tuple[str, str]:
    """The label feature and the task: the Evaluator's parameters, else what the Trainer recorded."""
    label_key = params.label_key or model.custom_properties.get("label_key")
    if not label_key:
        raise UserInputError(
            f"model {model.id} does not record its label; set Evaluator(label_key=...) {ctx.where_defined()}"
        )
    task = params.task or model.custom_properties.get("task") or "classification"
    return label_key, task


def _check_label_in(
    examples: Examples, label_key: str, params: EvaluatorParams, ctx: ExecutionContext
) -> None:
    """Says, before TFMA starts, that the eval examples lack the label (TFMA would fail deep in Beam)."""
    features = json.loads(examples.custom_properties.get("column_types") or "{}")
    if features and label_key not in features:
        source = (
            "Evaluator(label_key=...)"
            if params.label_key
            else "the Trainer's label_key, recorded on the model,"
        )
        raise UserInputError(
            f"the eval examples have no feature {label_key!r}, which {source} names as the label "
            f"(features: {', '.join(sorted(features))}); set Evaluator(label_key=...) {ctx.where_defined()} "
            "to the raw feature that holds the label"
        )


def _vocabulary_name(params: EvaluatorParams, model: Model, label_key: str) -> str:
    return params.label_vocabulary or model.custom_properties.get("label_vocabulary") or label_key


def _apply_floor(params: EvaluatorParams, task: str, results, guess: str) -> None:
    """Adds the floor's verdict (see EvaluatorParams.floor_margin) to `results`: a model is blessed
    only if it also clears the floor."""
    from components.evaluator.tfma_results import TRIVIAL, Threshold, Verdict

    margin = params.floor_margin
    if margin is None:
        return
    metric = params.floor_metric or HEADLINE[task]
    trivial = results.value(metric, TRIVIAL)
    threshold = Threshold(metric, "floor", 0.0)
    if threshold.lower_is_better:  # an error shrinks by the margin
        bound = (1.0 - margin) * trivial
    else:  # a share such as accuracy: its error, 1 - value, shrinks by the margin
        bound = 1.0 - (1.0 - margin) * (1.0 - trivial)
    threshold = Threshold(metric, "floor", bound, note=f"{guess}: {trivial:.4f}, {margin:.0%} margin")
    value = results.value(metric)
    passed = value <= bound if threshold.lower_is_better else value >= bound  # NaN fails
    results.verdicts.append(Verdict(threshold, value, passed))
    results.validation_ok = results.validation_ok and passed


def headline_line(metric: str, results, baseline: Model | None, split: str, where: str = "") -> str:
    """`metric` (the headline, or the floor's metric) of the candidate, the baseline model and the
    trivial baseline, on one line; `where` says which spans the split was of (see `_where`)."""
    from components.evaluator.tfma_results import BASELINE, TRIVIAL

    parts = [f"candidate {_figure(results.value(metric))}"]
    if baseline is not None:
        parts.append(f"baseline model {baseline.id} {_figure(results.value(metric, BASELINE))}")
    parts.append(f"trivial baseline {_figure(results.value(metric, TRIVIAL))}")
    count = results.value("example_count")
    examples = f" on split {split!r}" if math.isnan(count) else f" on {count:,.0f} {split!r} examples"
    return f"{metric}{examples}{' ' + where if where else ''}: {', '.join(parts)}"


def _figure(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"


def _failures(results) -> list[str]:
    return [v.line() for v in results.verdicts if not v.passed]


def _log_outcome(
    ctx: ExecutionContext, params: EvaluatorParams, task: str, results, blessing, seconds: float
) -> None:
    for features in params.slices:
        if tuple(sorted(features)) not in results.sliced_by:
            ctx.log(f"slice by {', '.join(features)}: no eval example has these features; check the names")
    ctx.log(blessing.custom_properties["headline"])
    for verdict in results.verdicts:
        ctx.log(verdict.line())
    ctx.log(f"{blessing.custom_properties['reason'].splitlines()[0]} (evaluation took {seconds:.1f} s)")


def _progress(ctx: ExecutionContext, examples: list[Examples], split: str):
    """Logs the examples evaluated every 100,000 or so (a large split takes a while)."""
    total = sum(e.custom_properties.get(f"row_count_{split}") or 0 for e in examples)
    shown = [0]

    def progress(done: int) -> None:
        if done - shown[0] >= 100_000:
            shown[0] = done
            ctx.log(f"evaluated {done:,} of {total:,} examples" if total else f"evaluated {done:,} examples")

    return progress


def _split_files(examples: list[Examples], split: str) -> tuple[list[str], int]:
    """The files of `split` of every span evaluated, oldest span first."""
    files = []
    for one in examples:
        found = sorted(glob.glob(os.path.join(one.split_uri(split), "*.gz")))
        if not found:
            raise UserInputError(
                f"no examples for split {split!r} in {one.uri} (splits: {', '.join(one.split_names)}); "
                "set the Evaluator's split to one of them"
            )
        files += found
    return files, sum(os.path.getsize(f) for f in files)


def _evaluated_spans(window: list[Examples], params: EvaluatorParams) -> list[Examples]:
    """The Examples whose split is evaluated: the newest span's, or every span's of the window."""
    ordered = sorted(window, key=lambda e: (e.get("span") or 0, e.id or 0))
    return ordered if params.spans == "window" else ordered[-1:]


def _where(examples: list[Examples], window: list[Examples]) -> str:
    """Which spans' rows were evaluated, as a person reads it: `of span 2009, the newest of the
    window 2007-2009`, `of the window's 3 spans, 2007-2009`; "" without a window."""
    from pipeline.history import spans_text

    def spans(artifacts: list[Examples]) -> list:
        return [a.get("span_date") or a.get("span") for a in artifacts]

    if len(window) == 1:
        return ""
    if len(examples) == 1:
        return f"of span {spans(examples)[0]}, the newest of the window {spans_text(spans(window))}"
    return f"of the window's {len(examples)} spans, {spans_text(spans(examples))}"


# The split the Trainer's early stopping reads (components/trainer/training.py).
TRAINER_EVAL_SPLIT = "eval"
OPTIMISTIC = (
    "the Trainer's early stopping also used it, so these figures are optimistic; give ExampleGen a "
    "'test' split (splits={'train': 3, 'eval': 1, 'test': 1}) to bless on examples it never saw"
)


def _split_of(params: EvaluatorParams, examples: Examples) -> str:
    if params.split is not None:
        return params.split
    return "test" if "test" in examples.split_names else TRAINER_EVAL_SPLIT


def _describe_start(
    model: Model, baseline: Model | None, params: EvaluatorParams, where: str, split: str, thresholds
) -> str:
    against = (
        f"against baseline model {baseline.id}" if baseline else "with no baseline (no blessed model yet)"
    )
    skipped = "" if baseline or not params.change_thresholds else "; change thresholds skipped"
    seen = f" ({OPTIMISTIC})" if split == TRAINER_EVAL_SPLIT else ""
    spans = f" {where}" if where else ""
    return (
        f"evaluating model {model.id} {against} on split {split!r}{spans}{seen} through {params.signature_name!r}, "
        f"{len(thresholds)} threshold(s){skipped}"
    )


def _record(
    evaluation,
    blessing,
    params,
    model,
    baseline,
    results,
    seconds: float,
    task: str,
    class_names,
    split: str,
    where: str = "",
) -> None:
    """The BLESSED or NOT_BLESSED file, the blessing's properties and the headline metrics (the
    candidate's, the baseline's and the trivial baseline's)."""
    from components.evaluator.tfma_results import TRIVIAL

    blessed = results.validation_ok
    open(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "w").close()
    blessing.custom_properties.update(
        blessed=int(blessed),
        current_model=model.uri,
        current_model_id=model.id,
        baseline_model=baseline.uri if baseline else "",
        baseline_model_id=baseline.id if baseline else 0,
    )
    metric = HEADLINE[task]
    headline = {metric: results.value(metric), "example_count": results.value("example_count")}
    if baseline is not None:
        headline[f"baseline_{metric}"] = results.value(metric, "baseline")
    headline[f"trivial_{metric}"] = results.value(metric, TRIVIAL)
    headline = {k: v for k, v in headline.items() if not math.isnan(v)}
    line = headline_line(params.floor_metric or metric, results, baseline, split, where)
    blessing.custom_properties.update(reason=_reason(blessed, results, baseline), headline=line, **headline)
    evaluation.custom_properties.update(
        page=PAGE_FILE,
        blessed=int(blessed),
        evaluation_seconds=seconds,
        task=task,
        split=split,
        headline=line,
        **headline,
        **({"class_names": json.dumps(list(class_names))} if class_names else {}),
    )


def _reason(blessed: bool, results, baseline: Model | None) -> str:
    checks = [v for v in results.verdicts if v.threshold.kind != "floor"]
    floor = next((v for v in results.verdicts if v.threshold.kind == "floor"), None)
    failed = sum(not v.passed for v in checks)
    if floor is None:
        against_floor = "no floor (floor_margin=None)"
    elif floor.passed:
        against_floor = "beats the trivial baseline"
    else:
        against_floor = "no better than the trivial baseline"
    if blessed and not checks:
        first = f"BLESSED: {against_floor}; no threshold applied (none configured, or change thresholds and no baseline yet)"
    elif blessed:
        first = f"BLESSED: {against_floor}; all {len(checks)} threshold(s) passed"
    elif checks:
        first = f"NOT BLESSED: {against_floor}; {failed} of {len(checks)} threshold(s) failed"
    else:
        first = f"NOT BLESSED: {against_floor}"
    against = f"baseline: model {baseline.id}" if baseline else "baseline: none (value thresholds only)"
    return "\n".join([first, against, *(v.line() for v in results.verdicts)])


Evaluator = Component(
    name="Evaluator",
    run=run_evaluator,
    parameters=EvaluatorParams,
    version="3",
    preload=("tensorflow_model_analysis", "components.evaluator.batched", "components.evaluator.page"),
    check=check_thresholds,
)
