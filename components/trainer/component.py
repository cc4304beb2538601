"""Trainer: the user's build_fn or model_fn, trained by the custom estimator on transformed examples,
with early stopping, resumable checkpoints, and the best model exported for serving."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from components.trainer.training import DISTRIBUTIONS
from pipeline import (
    Component,
    DefinitionError,
    ExecutionContext,
    InputArtifact,
    OutputArtifact,
    UserInputError,
)
from pipeline.artifacts import SERVING_DIR, Examples, Model, Schema, TransformGraph

RUN_DIR = "run"
PAGE_FILE = "training.html"


@dataclass(frozen=True)
class TrainerParams:
    """module_file: a Python file defining `build_fn(features, params) -> logits` (used with the
    head below) or `model_fn(features, labels, mode, params) -> EstimatorSpec`; or pass either
    function directly. label_key: the transformed feature holding the label (required; the
    Evaluator and Pusher read it from the Model). head: "classification" (classes from Transform's
    vocabulary `label_vocabulary`, by default the one named like the label) or "regression".
    hyperparameters: the `params` dict the function receives
    (learning_rate is also the optimizer's). Steps count batches of `batch_size`; the model is
    evaluated every `eval_every_steps` on `eval_steps` batches of `eval_batch_size` examples of the
    eval split (all of it if None; the same examples each time, in file order).
    Early stopping monitors `early_stopping_metric` (min or max) with a patience counted in
    evaluations. class_weights (classification): "balanced" (each class weighs the same in the
    loss: examples / (classes x the class's train examples)) or class name -> weight (others 1);
    recorded on the Model. decision_threshold (a two-class label): {class: probability}, the
    served model predicts that class when its probability reaches the threshold (default: the more
    probable class); the Evaluator's precision, recall, F1 and accuracy are at that threshold.
    warm_start: initialize from the `base_model` input's best weights.
    distribution: "one_device" (default; a GPU when there is one), "mirrored" (every local GPU,
    tf.distribute.MirroredStrategy) or "multi_worker" (MultiWorkerMirroredStrategy over `workers`
    processes of this machine; the job reaches them pickled, so give module_file or functions of
    an importable module). Steps and batch_size are global: each replica takes its share of a
    batch."""

    module_file: str | None = field(default=None, metadata={"module_file": True})
    build_fn: Callable | None = None
    model_fn: Callable | None = None
    label_key: str = ""
    head: str = "classification"
    label_vocabulary: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    train_steps: int = 1000
    eval_steps: int | None = None
    eval_every_steps: int = 100
    batch_size: int = 32
    eval_batch_size: int = 256
    early_stopping_metric: str = "loss"
    early_stopping_mode: str = "min"
    early_stopping_patience: int = 3
    class_weights: str | dict | None = None
    decision_threshold: dict | None = None
    early_stopping_min_delta: float = 0.0
    warm_start: bool = False
    random_seed: int = 0
    distribution: str = "one_device"
    workers: int = 2

    def __post_init__(self):
        given = [n for n in ("module_file", "build_fn", "model_fn") if getattr(self, n) is not None]
        if len(given) != 1:
            raise DefinitionError(
                "Trainer: give exactly one of module_file='path/to/module.py' (defining build_fn or "
                f"model_fn), build_fn=<function> or model_fn=<function>; got {given or 'none'}"
            )
        if not self.label_key:
            raise DefinitionError(
                "Trainer: give label_key, the name of the label among preprocessing_fn's outputs, "
                "e.g. Trainer(..., label_key='price')"
            )
        if self.distribution not in DISTRIBUTIONS:
            raise DefinitionError(
                f"Trainer: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}"
            )
        if self.distribution == "multi_worker" and self.workers < 2:
            raise DefinitionError(f"Trainer: multi_worker training needs workers >= 2, got {self.workers}")
        if self.class_weights is not None and self.head != "classification":
            raise DefinitionError("Trainer: class_weights applies to head='classification' only")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise DefinitionError(
                f"Trainer: class_weights must be 'balanced' or a dict class -> weight, got {self.class_weights!r}"
            )
        if self.decision_threshold is not None and (
            self.head != "classification"
            or len(self.decision_threshold) != 1
            or not all(isinstance(p, (int, float)) and 0 < p < 1 for p in self.decision_threshold.values())
        ):
            raise DefinitionError(
                "Trainer: decision_threshold is {class: probability} for one class of a two-class "
                f"label, the probability strictly between 0 and 1; got {self.decision_threshold!r}"
            )
        if self.head not in ("classification", "regression"):
            raise DefinitionError(
                f"Trainer: head must be 'classification' or 'regression', got {self.head!r}"
            )


def run_trainer(
    ctx: ExecutionContext,
    params: TrainerParams,
    examples: InputArtifact[Examples],
    transform_graph: InputArtifact[TransformGraph],
    schema: InputArtifact[Schema],
    base_model: InputArtifact[Model | None],
    model: OutputArtifact[Model],
) -> None:
    from components.schema_gen.schema_io import SCHEMA_FILE
    from components.trainer.io import write_training_page
    from components.trainer.training import TrainingJob, make_strategy, train, train_with_run_fn, user_run_fn

    run_dir = _run_dir(ctx)
    _prepare_run_dir(run_dir)
    warm = os.path.join(base_model.uri, RUN_DIR, "best") if params.warm_start and base_model else None
    job = TrainingJob(
        params,
        examples,
        transform_graph.uri,
        run_dir,
        os.path.join(model.uri, SERVING_DIR),
        warm,
        ctx.where_defined(),
        os.path.join(schema.uri, SCHEMA_FILE),
    )
    run_fn = user_run_fn(params)
    if run_fn is not None:
        if params.distribution != "one_device":
            raise UserInputError(
                f"Trainer(distribution={params.distribution!r}) needs build_fn or model_fn; a run_fn "
                "distributes its own training"
            )
        outcome = train_with_run_fn(job, run_fn, ctx.log)
    elif params.distribution == "multi_worker":
        from components.trainer.workers import train_on_workers

        outcome = train_on_workers(job, params.workers, ctx.log)
    else:
        outcome = train(job, ctx.log, make_strategy(params.distribution))
    if os.path.exists(os.path.join(run_dir, "job.pkl")):
        os.remove(os.path.join(run_dir, "job.pkl"))  # the workers' outcomes and logs stay, as a record
    _keep_in_model(run_dir, os.path.join(model.uri, RUN_DIR), ctx)
    write_training_page(os.path.join(model.uri, PAGE_FILE), outcome, outcome.train_losses, params)
    metric = params.early_stopping_metric
    if metric in outcome.best_metrics:  # a run_fn reports no evaluation of its own
        model.custom_properties.update(
            best_metric=metric, best_metric_value=float(outcome.best_metrics[metric])
        )
    model.custom_properties.update(
        best_step=outcome.best_step,
        trained_with="run_fn" if run_fn is not None else "estimator",
        last_step=outcome.last_step,
        stopped_early=int(outcome.stopped_early),
        resumed_from=outcome.resumed_from,
        signatures=json.dumps(outcome.signatures),
        label_key=params.label_key,
        task=_task(outcome.signatures),
        label_vocabulary=params.label_vocabulary or params.label_key,
        distribution=params.distribution,
        replicas=outcome.replicas,
        devices=outcome.devices,
        worker_steps=json.dumps(outcome.worker_steps),
        page=PAGE_FILE,
        eval_metrics=json.dumps(outcome.best_metrics),
    )
    spans = examples.custom_properties.get("spans") or json.dumps([examples.get("span")])
    model.custom_properties["spans"] = spans  # every span it learned from (a window's)
    if examples.custom_properties.get("span_dates"):
        model.custom_properties["span_dates"] = examples.custom_properties["span_dates"]
    if outcome.class_weights:
        model.custom_properties["class_weights"] = json.dumps(outcome.class_weights)
    if outcome.decision_threshold:
        model.custom_properties["decision_threshold"] = json.dumps(outcome.decision_threshold)
    value = model.custom_properties.get("best_metric_value")
    best = (
        f"the best model (step {outcome.best_step}, {metric} {value:.4f})"
        if value is not None
        else "the model"
    )
    ctx.log(f"exported {best} with signatures {', '.join(sorted(outcome.signatures))}")


def _task(signatures: dict[str, list[str]]) -> str:
    """What `serving_default` answers, for the Evaluator: classification when it gives class
    scores, else regression (whether a head or the user's model_fn made it)."""
    return "classification" if "scores" in signatures.get("serving_default", []) else "regression"


def _run_dir(ctx: ExecutionContext) -> str:
    """Checkpoints live outside the staged output, under the cache key: a retry of the same
    training after a crash finds them and resumes, at every moment of the Trainer's life (before
    the export, after it, after the copy into the Model): the directory stays until that Model is
    published, and a later Trainer execution removes it."""
    key = hashlib.sha256(ctx.cache_key.encode()).hexdigest()[:16]
    return os.path.join(ctx.pipeline_root, ctx.component_id, ".runs", key)


FINISHED = "exported_to"  # in a run directory whose training finished: the Model's final path


def _prepare_run_dir(run_dir: str) -> None:
    """Removes the run directories of finished trainings whose Model was published (their
    checkpoints are in it) or that belong to other training; keeps this training's unless its
    Model was published, which makes this execution a deliberate rerun that starts afresh."""
    runs = os.path.dirname(run_dir)
    if not os.path.isdir(runs):
        return
    for name in os.listdir(runs):
        path = os.path.join(runs, name)
        marker = os.path.join(path, FINISHED)
        if not os.path.isfile(marker):
            continue
        with open(marker) as f:
            published = os.path.isdir(f.read().strip())
        if path != run_dir or published:
            shutil.rmtree(path, ignore_errors=True)


def _keep_in_model(run_dir: str, destination: str, ctx: ExecutionContext) -> None:
    """The finished training's directory into the Model (hard links: no second copy on disk),
    kept in place, marked finished, until the Model is published."""
    from pipeline.launcher import output_uri

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:  # another file system
            shutil.copy2(source, target)

    shutil.copytree(run_dir, destination, copy_function=link)
    final = output_uri(ctx.pipeline_root, ctx.component_id, "model", ctx.execution_id)
    with open(os.path.join(run_dir, FINISHED), "w") as f:
        f.write(final)


Trainer = Component(
    name="Trainer",
    run=run_trainer,
    parameters=TrainerParams,
    version="2",
    preload=("tensorflow", "tensorflow_transform", "estimator.estimator", "components.trainer.io"),
)
