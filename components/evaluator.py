"""Evaluator: TFMA over the raw eval split through the model's serving signature, against the latest
blessed model of the pipeline, deciding the ModelBlessing."""

from __future__ import annotations

import glob
import math
import os
import time
from dataclasses import dataclass, field

from pipeline import Component, DefinitionError, ExecutionContext, Input, UserInputError
from pipeline.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from pipeline.metadata import MetadataStore

PAGE_FILE = "evaluation.html"
BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"


@dataclass(frozen=True)
class EvaluatorParams:
    """label_key: the raw label feature (a string); label_vocabulary: the file under the model's
    `Format-Serving/assets/` naming its classes in class-id order (the Trainer's label_vocabulary).
    signature_name: the signature TFMA calls with serialized raw tf.Examples (`examples`).
    split: the Examples split evaluated. slices: feature-name tuples to slice by; `()` is the
    whole split. value_thresholds: metric -> lowest value the candidate may have.
    change_thresholds: metric -> lowest (candidate - baseline) allowed; checked only when a
    baseline exists. Metric names: example_count, accuracy, precision/<class>, recall/<class>,
    auc/<class> (two-class models). Thresholds apply to the whole split. With no thresholds at
    all, every model is blessed."""

    label_key: str = "species"
    label_vocabulary: str = "species"
    signature_name: str = "serving_default"
    split: str = "eval"
    slices: tuple = ((),)
    value_thresholds: dict = field(default_factory=dict)
    change_thresholds: dict = field(default_factory=dict)

    def __post_init__(self):
        for features in self.slices:
            if not isinstance(features, tuple) or not all(isinstance(f, str) for f in features):
                raise DefinitionError(
                    f"Evaluator: slices must be tuples of feature names, such as ((), ('island',)); got {features!r}"
                )
        for kind in ("value_thresholds", "change_thresholds"):
            for metric, bound in getattr(self, kind).items():
                name = metric.partition("/")[0]
                if name not in ("example_count", "accuracy", "precision", "recall", "auc"):
                    raise DefinitionError(
                        f"Evaluator: {kind} names unknown metric {metric!r}; use example_count, accuracy, "
                        "precision/<class>, recall/<class> or auc/<class>"
                    )
                if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                    raise DefinitionError(f"Evaluator: {kind}[{metric!r}] must be a number, got {bound!r}")

    def thresholds(self, with_baseline: bool) -> list:
        from components.evaluator_tfma import Threshold

        checks = [Threshold(m, "value", float(b)) for m, b in sorted(self.value_thresholds.items())]
        if with_baseline:
            checks += [Threshold(m, "change", float(b)) for m, b in sorted(self.change_thresholds.items())]
        return checks


def latest_blessed_model(store: MetadataStore, pipeline_name: str, exclude_model_id: int) -> Model | None:
    """The newest Model of the pipeline that a LIVE ModelBlessing blessed, other than
    `exclude_model_id`, whose files still exist (TFX's latest-blessed-model resolver)."""
    blessings = store.live_artifacts(ModelBlessing, pipeline_name, "properties.blessed.int_value = 1")
    ids = {b.get("current_model_id") for b in blessings} - {exclude_model_id}
    models = [
        m
        for m in store.artifacts_by_id(sorted(ids))
        if m.state == "LIVE" and os.path.isdir(os.path.join(m.uri, "Format-Serving"))
    ]
    return max(models, key=lambda m: m.id, default=None)


def resolve_baseline(
    ctx: ExecutionContext, params: EvaluatorParams, model: Model, examples: Examples
) -> dict:
    """The baseline's id (0 when none) joins the cache key: a newly blessed model means a new evaluation."""
    baseline = latest_blessed_model(ctx.store, ctx.pipeline_name, model.id)
    return {"baseline_model_id": baseline.id if baseline else 0}


def run_evaluator(
    ctx: ExecutionContext,
    params: EvaluatorParams,
    model: Model,
    examples: Examples,
    evaluation: ModelEvaluation,
    blessing: ModelBlessing,
) -> None:
    from components import evaluator_tfma as tfma_side
    from components.evaluator_page import write_page

    baseline_id = ctx.resolved.get("baseline_model_id", 0)
    baseline = ctx.store.artifacts_by_id([baseline_id])[0] if baseline_id else None
    models = {tfma_side.CANDIDATE: model, **({tfma_side.BASELINE: baseline} if baseline else {})}
    vocabularies = {
        name: tfma_side.label_vocabulary(m.uri, params.label_vocabulary) for name, m in models.items()
    }
    class_names = sorted({c for v in vocabularies.values() for c in v})
    thresholds = params.thresholds(with_baseline=baseline is not None)
    config = tfma_side.eval_config(
        params.label_key, params.signature_name, params.slices, class_names, thresholds, baseline is not None
    )
    pattern, size = _split_files(examples, params.split)
    ctx.log(_describe_start(model, baseline, params, thresholds))
    started = time.monotonic()
    tfma_side.run_tfma(
        ctx.beam_pipeline(input_bytes=size),
        pattern,
        evaluation.uri,
        config,
        {name: os.path.join(m.uri, tfma_side.SERVING_DIR) for name, m in models.items()},
        vocabularies,
        class_names,
    )
    seconds = time.monotonic() - started
    results = tfma_side.read_results(evaluation.uri, class_names, thresholds)
    _record(evaluation, blessing, model, baseline, results, round(seconds, 3))
    write_page(os.path.join(evaluation.uri, PAGE_FILE), results, model, baseline, class_names)
    _log_outcome(ctx, params, results, blessing, seconds)


def _log_outcome(ctx: ExecutionContext, params: EvaluatorParams, results, blessing, seconds: float) -> None:
    for features in params.slices:
        if tuple(sorted(features)) not in results.sliced_by:
            ctx.log(f"slice by {', '.join(features)}: no eval example has these features; check the names")
    for verdict in results.verdicts:
        ctx.log(verdict.line())
    ctx.log(f"{blessing.custom_properties['reason'].splitlines()[0]} (TFMA took {seconds:.1f} s)")


def _split_files(examples: Examples, split: str) -> tuple[str, int]:
    pattern = os.path.join(examples.split_uri(split), "*.gz")
    files = glob.glob(pattern)
    if not files:
        raise UserInputError(
            f"no examples for split {split!r} in {examples.uri} (splits: {', '.join(examples.split_names)}); "
            "set the Evaluator's split to one of them"
        )
    return pattern, sum(os.path.getsize(f) for f in files)


def _describe_start(model: Model, baseline: Model | None, params: EvaluatorParams, thresholds) -> str:
    against = (
        f"against baseline model {baseline.id}" if baseline else "with no baseline (no blessed model yet)"
    )
    skipped = "" if baseline or not params.change_thresholds else "; change thresholds skipped"
    return (
        f"evaluating model {model.id} {against} on split {params.split!r} through {params.signature_name!r}, "
        f"{len(thresholds)} threshold(s){skipped}"
    )


def _record(evaluation, blessing, model, baseline, results, seconds: float) -> None:
    """The BLESSED or NOT_BLESSED file, the blessing's properties and the headline metrics."""
    blessed = results.validation_ok
    open(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "w").close()
    blessing.set("blessed", int(blessed))
    blessing.set("current_model_id", model.id)
    blessing.set("baseline_model_id", baseline.id if baseline else 0)
    headline = {"accuracy": results.value("accuracy"), "example_count": results.value("example_count")}
    if baseline is not None:
        headline["baseline_accuracy"] = results.value("accuracy", "baseline")
    headline = {k: v for k, v in headline.items() if not math.isnan(v)}
    blessing.custom_properties.update(reason=_reason(blessed, results, baseline), **headline)
    evaluation.custom_properties.update(
        page=PAGE_FILE, blessed=int(blessed), evaluation_seconds=seconds, **headline
    )


def _reason(blessed: bool, results, baseline: Model | None) -> str:
    failed = sum(not v.passed for v in results.verdicts)
    if blessed and not results.verdicts:
        first = "BLESSED: no thresholds configured"
    elif blessed:
        first = f"BLESSED: all {len(results.verdicts)} threshold(s) passed"
    else:
        first = f"NOT BLESSED: {failed} of {len(results.verdicts)} threshold(s) failed"
    against = f"baseline: model {baseline.id}" if baseline else "baseline: none (value thresholds only)"
    return "\n".join([first, against, *(v.line() for v in results.verdicts)])


Evaluator = Component(
    name="Evaluator",
    run=run_evaluator,
    inputs={"model": Input(Model), "examples": Input(Examples)},
    outputs={"evaluation": ModelEvaluation, "blessing": ModelBlessing},
    parameters=EvaluatorParams,
    version="1",
    resolve=resolve_baseline,
)
