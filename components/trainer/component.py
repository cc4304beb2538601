"""Trainer: the user's build_fn or model_fn, trained by the custom estimator on transformed examples,
with early stopping, resumable checkpoints, and the best model exported for serving."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline import Component, DefinitionError, ExecutionContext, Input, UserInputError
from pipeline.artifacts import Examples, Model, Schema, TransformGraph

SERVING_DIR = "Format-Serving"
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
    evaluations. warm_start: initialize from the `base_model` input's best weights."""

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
    early_stopping_min_delta: float = 0.0
    warm_start: bool = False
    random_seed: int = 0

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
        if self.head not in ("classification", "regression"):
            raise DefinitionError(
                f"Trainer: head must be 'classification' or 'regression', got {self.head!r}"
            )


def run_trainer(
    ctx: ExecutionContext,
    params: TrainerParams,
    examples: Examples,
    transform_graph: TransformGraph,
    schema: Schema,
    base_model: Model | None,
    model: Model,
) -> None:
    import tensorflow_transform as tft

    from components import estimator as est
    from components.trainer.io import export_model, input_fn, write_training_page

    tft_output = tft.TFTransformOutput(transform_graph.uri)
    model_fn, given = _model_fn(ctx, params, tft_output, examples)
    run_dir = _run_dir(ctx)
    warm = os.path.join(base_model.uri, RUN_DIR, "best") if params.warm_start and base_model else None
    estimator = est.Estimator(
        model_fn,
        run_dir,
        params={**given, **params.hyperparameters},
        config=est.RunConfig(save_checkpoints_steps=params.eval_every_steps, random_seed=params.random_seed),
        warm_start_from=warm,
    )
    spec = tft_output.transformed_feature_spec()
    result = est.train_and_evaluate(
        estimator,
        est.TrainSpec(
            input_fn(examples, "train", spec, params.label_key, params.batch_size, True, ctx.where_defined()),
            params.train_steps,
        ),
        est.EvalSpec(
            input_fn(
                examples, "eval", spec, params.label_key, params.eval_batch_size, False, ctx.where_defined()
            ),
            params.eval_steps,
            params.eval_every_steps,
        ),
        est.EarlyStopping(
            params.early_stopping_metric,
            params.early_stopping_mode,
            params.early_stopping_min_delta,
            params.early_stopping_patience,
        ),
        log=ctx.log,
    )
    if result.best_step < 0:
        raise UserInputError("training ended before any evaluation; raise train_steps above eval_every_steps")
    best_step = estimator.restore_best()
    signatures = export_model(estimator, tft_output, params.label_key, os.path.join(model.uri, SERVING_DIR))
    shutil.move(run_dir, os.path.join(model.uri, RUN_DIR))
    write_training_page(os.path.join(model.uri, PAGE_FILE), result, estimator.train_losses, params)
    metric = params.early_stopping_metric
    model.custom_properties.update(
        best_step=best_step,
        best_metric=metric,
        best_metric_value=float(result.best_metrics.get(metric, float("nan"))),
        last_step=result.last_step,
        stopped_early=int(result.stopped_early),
        resumed_from=result.resumed_from,
        signatures=json.dumps(signatures),
        label_key=params.label_key,
        task=_task(signatures),
        label_vocabulary=params.label_vocabulary or params.label_key,
        page=PAGE_FILE,
        eval_metrics=json.dumps(
            {k: v for k, v in result.best_metrics.items() if isinstance(v, (int, float))}
        ),
    )
    ctx.log(
        f"exported the best model (step {best_step}, {metric} {model.custom_properties['best_metric_value']:.4f}) "
        f"with signatures {', '.join(sorted(signatures))}"
    )


def _task(signatures: dict[str, list[str]]) -> str:
    """What `serving_default` answers, for the Evaluator: classification when it gives class
    scores, else regression (whether a head or the user's model_fn made it)."""
    return "classification" if "scores" in signatures.get("serving_default", []) else "regression"


def _model_fn(ctx: ExecutionContext, params: TrainerParams, tft_output, examples) -> tuple[Callable, dict]:
    """The model_fn, and what the Trainer adds to its params: `vocabulary_sizes` (Transform's
    vocabularies, name -> size) and, for classification, `n_classes`."""
    from components import estimator as est
    from components.trainer.io import check_label, label_moments
    from pipeline.usercode import load_function, load_module

    spec = tft_output.transformed_feature_spec()
    check_label(spec, params.label_key, ctx.where_defined())
    assets = os.path.join(tft_output.transform_savedmodel_dir, "assets")
    names = sorted(os.listdir(assets)) if os.path.isdir(assets) else []
    given: dict = {"vocabulary_sizes": {n: tft_output.vocabulary_size_by_name(n) for n in names}}
    if params.model_fn is not None:
        return params.model_fn, given
    build_fn = params.build_fn
    if params.module_file is not None:
        module = load_module(params.module_file)
        if callable(getattr(module, "model_fn", None)):
            return module.model_fn, given
        build_fn = load_function(params.module_file, "build_fn")
    if params.head == "regression":
        mean, scale = label_moments(examples, "train", spec, params.label_key)
        ctx.log(
            f"regression label {params.label_key!r}: standardized with mean {mean:.4g}, scale {scale:.4g}"
        )
        given.update(label_mean=mean, label_scale=scale)
        return est.model_fn_from_build_fn(
            build_fn, est.RegressionHead(label_mean=mean, label_scale=scale)
        ), given
    name = params.label_vocabulary or params.label_key
    if name not in given["vocabulary_sizes"]:
        found = ", ".join(sorted(given["vocabulary_sizes"])) or "none"
        raise UserInputError(
            f"the classification head needs the label's vocabulary, and Transform wrote no vocabulary "
            f"{name!r} (vocabularies: {found}). Either set Trainer(label_vocabulary=...) "
            f"{ctx.where_defined()} to the vocabulary that holds the classes, or write it in preprocessing_fn: "
            f"outputs[{params.label_key!r}] = tft.compute_and_apply_vocabulary(inputs[...], "
            f"vocab_filename={name!r}); for a numeric label use Trainer(head='regression')"
        )
    vocabulary = tft_output.vocabulary_by_name(name)
    given["n_classes"] = len(vocabulary)
    return est.model_fn_from_build_fn(build_fn, est.ClassificationHead(len(vocabulary), vocabulary)), given


def _run_dir(ctx: ExecutionContext) -> str:
    """Checkpoints live outside the staged output, under the cache key: a retry of the same
    training after a crash finds them and resumes; a completed run's are moved into the Model."""
    key = hashlib.sha256(ctx.cache_key.encode()).hexdigest()[:16]
    return os.path.join(ctx.pipeline_root, ctx.component_id, ".runs", key)


Trainer = Component(
    name="Trainer",
    run=run_trainer,
    inputs={
        "examples": Input(Examples),
        "transform_graph": Input(TransformGraph),
        "schema": Input(Schema),
        "base_model": Input(Model, optional=True),
    },
    outputs={"model": Model},
    parameters=TrainerParams,
    version="2",
)
