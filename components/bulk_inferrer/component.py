"""BulkInferrer: scores the rows of a span with a model of a training pipeline, as TFX's BulkInferrer
does, writing its `InferenceResult` (PredictionLogs) and a CSV a person can open.

Which model: the one served (the latest push of the training pipeline: the very files TF Serving
loads), the newest blessed one, or a push version, found in the metadata store by a resolver, so
that lineage records which model version scored which span, and the predictions' lineage is that
model's whole history. With no model to score with, the step fails with a `NoModel` error, which
`runner.py score` reports with an exit code of its own: never an empty success.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Annotated, Any

from pipeline import (
    Component,
    DefinitionError,
    ExecutionContext,
    InputArtifact,
    OutputArtifact,
    UserInputError,
)
from pipeline.artifacts import SERVING_DIR, Examples, InferenceResult, Model, PushedModel, pushed_version
from pipeline.errors import NO_MODEL_PREFIX, NoModel
from pipeline.resolvers import Query, Resolver

CHOICES = ("served", "blessed")


@dataclass(frozen=True)
class BulkInferrerParams:
    """training_pipeline: the name of the pipeline whose model scores (in the same metadata store).
    which_model: "served" (default: its latest pushed version, the files TF Serving serves), "blessed"
    (its newest blessed model, pushed or not), or a push version number. id_columns: columns of
    the rows copied unchanged to each line of the CSV, to tell which prediction is whose.
    splits: the Examples' splits scored (default: every one, in order). signature_name: the
    signature called with batches of serialized raw tf.Examples (`examples`)."""

    training_pipeline: str
    which_model: str | int = "served"
    id_columns: tuple | list = ()
    splits: tuple | list = ()
    signature_name: str = "serving_default"

    def __post_init__(self):
        if not self.training_pipeline:
            raise DefinitionError("BulkInferrer: name the training_pipeline whose model scores the rows")
        choice = self.which_model
        if not (
            choice in CHOICES or (isinstance(choice, int) and not isinstance(choice, bool) and choice > 0)
        ):
            raise DefinitionError(
                f"BulkInferrer: which_model must be 'served', 'blessed' or a push version number, got {choice!r}"
            )


def model_to_score_with(store, params: BulkInferrerParams) -> tuple[Any, Any, str]:
    """(the Model, its PushedModel or None, "" ) for the params' choice; (None, None, why) when the
    training pipeline has no such model."""
    from pipeline.history import latest_pushed
    from pipeline.resolvers import latest_blessed_model

    name, choice = params.training_pipeline, params.which_model
    if choice == "blessed":
        model = latest_blessed_model(store, name)
        if model is None:
            return None, None, f"pipeline {name!r} has no blessed model yet"
        pushes = [p for p in _pushes(store, name) if _model_of(store, p) == model.id]
        return model, max(pushes, key=lambda p: (pushed_version(p), p.id), default=None), ""
    try:
        pushed = latest_pushed(store, name, None if choice == "served" else int(choice))
    except LookupError as error:
        found = "" if choice == "served" else _versions(store, name)
        return None, None, f"{error}{found}"
    model_id = _model_of(store, pushed)
    model = store.artifacts_by_id([model_id])[0] if model_id else None
    if model is None:
        return None, None, f"the push of version {pushed_version(pushed)} records no model"
    return model, pushed, ""


def _pushes(store, name: str) -> list:
    return [p for p in store.live_artifacts(PushedModel, name) if p.get("pushed")]


def _model_of(store, pushed) -> int | None:
    producer = store.producer_of(pushed.stored_id)
    model = store.inputs_of(producer.id).get("model") if producer else None
    return model.id if isinstance(model, Model) else None


def _versions(store, name: str) -> str:
    versions = sorted({pushed_version(p) for p in _pushes(store, name)})
    return f" (versions pushed: {', '.join(map(str, versions)) or 'none'})"


@dataclass(frozen=True)
class ModelToScoreWith(Resolver):
    """The Model the BulkInferrer's `model` parameter names, in its training pipeline. Lineage
    follows it: the predictions' history is the model's."""

    follows_lineage = True

    def resolve(self, query: Query, inputs):
        model, _, why = model_to_score_with(query.store, query.params)
        if model is None:
            raise NoModel(
                f"{NO_MODEL_PREFIX}: {why}; run the training pipeline until it pushes a model, or "
                "score with another (which_model='blessed' or a version it pushed; --model on the command line)"
            )
        return model

    def __str__(self) -> str:
        return "the model to score with"


@dataclass(frozen=True)
class PushOfModelToScoreWith(Resolver):
    """The push (PushedModel) of that model, when it was pushed: its version goes on every row."""

    follows_lineage = True

    def resolve(self, query: Query, inputs):
        return model_to_score_with(query.store, query.params)[1]

    def __str__(self) -> str:
        return "the push of the model to score with"


def check_inputs(
    ctx: ExecutionContext,
    params: BulkInferrerParams,
    examples: Examples,
    model: Model | None,
    pushed_model: PushedModel | None,
) -> dict:
    """Before anything runs: id columns the rows have (the model was found, or the resolver raised
    NoModel)."""
    columns = json.loads(examples.custom_properties.get("column_types") or "{}")
    missing = [c for c in params.id_columns if columns and c not in columns]
    if missing:
        files = ", ".join(json.loads(examples.custom_properties.get("input_files") or "[]")) or examples.uri
        raise UserInputError(
            f"id column(s) {', '.join(map(repr, missing))} are not columns of the rows to score "
            f"({files}; columns: {', '.join(columns)}); set BulkInferrer(id_columns=...) or --id-column"
        )
    return {}


def run_bulk_inferrer(
    ctx: ExecutionContext,
    params: BulkInferrerParams,
    examples: InputArtifact[Examples],
    model: Annotated[Model | None, ModelToScoreWith()],
    pushed_model: Annotated[PushedModel | None, PushOfModelToScoreWith()],
    inference_result: OutputArtifact[InferenceResult],
) -> None:
    import glob

    from components.bulk_inferrer.scoring import score_examples

    assert model is not None, "check_inputs raised NoModel"
    version = pushed_version(pushed_model) if pushed_model is not None else 0
    destination = pushed_model.get("pushed_destination") if pushed_model is not None else None
    model_dir = (
        destination if destination and os.path.isdir(destination) else os.path.join(model.uri, SERVING_DIR)
    )
    splits = list(params.splits) or examples.split_names
    unknown = [s for s in splits if s not in examples.split_names]
    if unknown:
        raise UserInputError(f"splits {unknown} are not splits of the rows to score ({examples.split_names})")
    files = [f for s in splits for f in sorted(glob.glob(os.path.join(examples.split_uri(s), "*.gz")))]
    class_names = _class_names(model, model_dir)
    shown_version = str(version) if version else f"model-{model.id}"
    which = f"version {version} ({model_dir})" if version else f"model {model.id}, not pushed ({model_dir})"
    ctx.log(
        f"scoring span {examples.get('span_date') or examples.get('span')} "
        f"({sum(examples.get(f'row_count_{s}') or 0 for s in splits):,} rows) with {params.training_pipeline!r} {which}"
    )
    total = sum(examples.get(f"row_count_{s}") or 0 for s in splits)
    shown = [0]

    def progress(done: int) -> None:
        if done - shown[0] >= 200_000:
            shown[0] = done
            ctx.log(f"scored {done:,} of {total:,} rows")

    report = score_examples(
        files,
        model_dir,
        inference_result.uri,
        signature_name=params.signature_name,
        id_columns=tuple(params.id_columns),
        class_names=class_names,
        model_version=shown_version,
        model_name=params.training_pipeline,
        progress=progress,
    )
    inference_result.custom_properties.update(
        span=examples.get("span"),
        model_id=model.id,
        model_version=shown_version,
        training_pipeline=params.training_pipeline,
        row_count=report.rows,
        predictions_csv="predictions.csv",
    )
    if examples.get("span_date"):
        inference_result.custom_properties["span_date"] = examples.get("span_date")
    if report.class_counts is not None:
        inference_result.custom_properties["class_counts"] = json.dumps(report.class_counts)
        summary = ", ".join(f"{c} {n:,}" for c, n in sorted(report.class_counts.items(), key=lambda x: -x[1]))
    else:
        inference_result.custom_properties["mean_prediction"] = report.mean_prediction or 0.0
        summary = f"mean prediction {report.mean_prediction:.4g}" if report.rows else "no rows"
    rate = report.rows / report.seconds if report.seconds else 0.0
    ctx.log(f"scored {report.rows:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s): {summary}")


def _class_names(model: Model, model_dir: str) -> list[str] | None:
    """A classification's class names in score order (the label vocabulary among the model's
    assets), None for a regression."""
    if model.get("task") == "regression":
        return None
    vocabulary = model.get("label_vocabulary") or model.get("label_key") or ""
    path = os.path.join(model_dir, "assets", vocabulary)
    if not os.path.isfile(path):
        found = (
            sorted(os.listdir(os.path.join(model_dir, "assets")))
            if os.path.isdir(os.path.join(model_dir, "assets"))
            else []
        )
        raise UserInputError(
            f"the model at {model_dir} has no label vocabulary assets/{vocabulary} (assets: {', '.join(found) or 'none'}) "
            "to name its classes"
        )
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


BulkInferrer = Component(
    name="BulkInferrer",
    run=run_bulk_inferrer,
    parameters=BulkInferrerParams,
    version="1",
    resolve=check_inputs,
    preload=("tensorflow", "components.bulk_inferrer.scoring"),
)
