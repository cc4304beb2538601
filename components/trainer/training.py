"""The Trainer's training job: one function that trains, evaluates, stops early and exports, run in
the Trainer's own process (one device, or every local GPU with MirroredStrategy) or in each of
several worker processes (MultiWorkerMirroredStrategy, the cluster read from TF_CONFIG as
tf.estimator's RunConfig read it). Every worker trains on its share of each batch and evaluates the
same examples, so early stopping fires at the same step everywhere; the chief alone writes
checkpoints, `best/` and the export.

    python -m components.trainer.training JOB_FILE      a worker: TF_CONFIG names the cluster and
                                                        this task; the job is the pickled TrainingJob
    python -m components.trainer.training --follow DIR  a worker of another machine: waits for the
                                                        job the Trainer announces in DIR/.runs
                                                        (DIR: <pipeline_root>/<Trainer id>)

A worker prints its progress on stdout and writes its outcome beside the job file
(`JOB_FILE.outcome-<worker index>.json`); the chief's holds the export's signatures.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

DISTRIBUTIONS = ("one_device", "mirrored", "multi_worker")
COLLECTIVE_TIMEOUT_SECONDS = 120.0  # a worker that stops answering fails the others, not hangs them


@dataclass
class TrainingJob:
    """Everything a training process needs, picklable: the Trainer's parameters, where the
    transformed examples and the Transform graph are, the run directory (checkpoints, shared by the
    workers), where the export goes, and what errors should name."""

    params: Any  # TrainerParams
    examples: Any  # Examples (transformed)
    transform_graph_uri: str
    run_dir: str
    export_dir: str
    warm_start_from: str | None = None
    where: str = "in the pipeline definition"
    schema_file: str = ""  # the raw schema (schema.pbtxt), for a TFX run_fn


@dataclass
class TrainingOutcome:
    best_step: int
    best_metrics: dict
    last_step: int
    stopped_early: bool
    resumed_from: int
    history: list = field(default_factory=list)
    train_losses: list = field(default_factory=list)
    signatures: dict = field(default_factory=dict)
    label_standardization: dict = field(default_factory=dict)
    class_weights: dict = field(default_factory=dict)  # class name -> weight of its examples' loss
    decision_threshold: dict = field(default_factory=dict)  # {class: the probability that predicts it}
    replicas: int = 1
    devices: str = ""  # where the training ran: the GPUs TensorFlow saw, or the CPU
    worker_steps: list = field(default_factory=list)  # the last step of each worker, for a multi-worker job


def make_strategy(distribution: str):
    """None for one device; MirroredStrategy over every local GPU (the CPU when there is none); or
    MultiWorkerMirroredStrategy over the workers TF_CONFIG names (collectives on the CPU ring)."""
    import tensorflow as tf

    if distribution == "one_device":
        return None
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy) -> bool:
    """The worker that writes: the `chief` task, or worker 0 of a cluster without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().jobs
    )


def train(job: TrainingJob, log: Callable[[str], None], strategy=None) -> TrainingOutcome:
    """Trains the model of `job` under `strategy` (None: one device) and, on the chief, exports the
    best evaluated weights with the Transform graph in front."""
    import tensorflow_transform as tft

    import estimator as est
    from components.trainer.io import export_model, input_fn
    from pipeline.errors import UserInputError

    params = job.params
    tft_output = tft.TFTransformOutput(job.transform_graph_uri)
    model_fn, given = model_fn_and_params(job, tft_output, log)
    chief = is_chief(strategy)
    estimator = est.Estimator(
        model_fn,
        job.run_dir,
        params={**given, **params.hyperparameters},
        config=est.RunConfig(
            save_checkpoints_steps=params.eval_every_steps,
            random_seed=params.random_seed,
            strategy=strategy,
            is_chief=chief,
        ),
        warm_start_from=job.warm_start_from,
    )
    devices = training_devices()
    log(f"training on {devices}, {estimator.replicas} replica(s)")
    spec = tft_output.transformed_feature_spec()
    result = est.train_and_evaluate(
        estimator,
        est.TrainSpec(
            input_fn(job.examples, "train", spec, params.label_key, params.batch_size, True, job.where),
            params.train_steps,
        ),
        est.EvalSpec(
            input_fn(job.examples, "eval", spec, params.label_key, params.eval_batch_size, False, job.where),
            params.eval_steps,
            params.eval_every_steps,
        ),
        est.EarlyStopping(
            params.early_stopping_metric,
            params.early_stopping_mode,
            params.early_stopping_min_delta,
            params.early_stopping_patience,
        ),
        log=log,
    )
    if result.best_step < 0:
        raise UserInputError("training ended before any evaluation; raise train_steps above eval_every_steps")
    outcome = TrainingOutcome(
        best_step=result.best_step,
        best_metrics={k: v for k, v in result.best_metrics.items() if isinstance(v, (int, float))},
        last_step=result.last_step,
        stopped_early=result.stopped_early,
        resumed_from=result.resumed_from,
        history=[{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in result.history],
        train_losses=[list(p) for p in estimator.train_losses],
        label_standardization={k: given[k] for k in ("label_mean", "label_scale") if k in given},
        class_weights=given.get("class_weights", {}),
        decision_threshold=given.get("decision_threshold", {}),
        replicas=estimator.replicas,
        devices=devices,
    )
    if chief:
        outcome.best_step = estimator.restore_best()
        outcome.signatures = export_model(
            estimator, tft_output, params.label_key, job.export_dir, user_receivers(params)
        )
    return outcome


def training_devices() -> str:
    """The GPUs TensorFlow sees (it places the model there by itself), or the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"{len(gpus)} GPU(s) ({', '.join(d.name for d in gpus)})" if gpus else "the CPU (no GPU visible)"


def model_fn_and_params(job: TrainingJob, tft_output, log: Callable[[str], None]) -> tuple[Callable, dict]:
    """The model_fn, and what the Trainer adds to its params: `vocabulary_sizes` (Transform's
    vocabularies, name -> size), for classification `n_classes`, for regression the label's
    standardization."""
    import estimator as est
    from components.trainer.io import check_label, label_counts, label_moments
    from pipeline.errors import UserInputError
    from pipeline.usercode import load_function, load_module

    params = job.params
    spec = tft_output.transformed_feature_spec()
    check_label(spec, params.label_key, job.where)
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
        mean, scale = label_moments(job.examples, "train", spec, params.label_key)
        log(f"regression label {params.label_key!r}: standardized with mean {mean:.4g}, scale {scale:.4g}")
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
            f"{job.where} to the vocabulary that holds the classes, or write it in preprocessing_fn: "
            f"outputs[{params.label_key!r}] = tft.compute_and_apply_vocabulary(inputs[...], "
            f"vocab_filename={name!r}); for a numeric label use Trainer(head='regression')"
        )
    vocabulary = [v.decode() if isinstance(v, bytes) else str(v) for v in tft_output.vocabulary_by_name(name)]
    if len(vocabulary) < 2:
        raise UserInputError(
            f"the label {params.label_key!r} has {len(vocabulary)} class(es) in the training data "
            f"({', '.join(map(repr, vocabulary)) or 'none'}): a classifier needs at least two. Check the "
            f"label column of the span (every row the same class?), or, for a number to predict, set "
            f"Trainer(head='regression') {job.where}"
        )
    given["n_classes"] = len(vocabulary)
    weights = None
    if params.class_weights is not None:
        counts = label_counts(job.examples, "train", spec, params.label_key, len(vocabulary))
        weights = class_weights(params.class_weights, vocabulary, counts, job.where)
        given["class_weights"] = dict(zip(vocabulary, weights))
        log(
            "class weights: "
            + ", ".join(f"{c!r} {w:.3g} ({n} train examples)" for c, w, n in zip(vocabulary, weights, counts))
        )
    threshold = None
    if params.decision_threshold is not None:
        [(positive, probability)] = params.decision_threshold.items()
        if positive not in vocabulary or len(vocabulary) != 2:
            raise UserInputError(
                f"Trainer(decision_threshold={params.decision_threshold}) {job.where}: a decision threshold "
                f"names one class of a two-class label; this label's classes: {', '.join(map(repr, vocabulary))}"
            )
        threshold = (vocabulary.index(positive), float(probability))
        given["decision_threshold"] = {positive: float(probability)}
        log(f"decision threshold: {positive!r} when its probability is at least {probability:g}")
    head = est.ClassificationHead(
        len(vocabulary), vocabulary, class_weights=weights, decision_threshold=threshold
    )
    return est.model_fn_from_build_fn(build_fn, head), given


def class_weights(given, vocabulary: list[str], counts: list[int], where: str = "") -> list[float]:
    """One weight per class id: "balanced" is examples / (classes x the class's examples), as
    scikit-learn's, so each class weighs the same in the loss (a class absent from the train split
    gets 0); a dict names some classes' weights, the others 1."""
    if given == "balanced":
        total, present = sum(counts), sum(1 for n in counts if n)
        return [total / (present * n) if n else 0.0 for n in counts]
    from pipeline.errors import UserInputError

    unknown = sorted(set(given) - set(vocabulary))
    if unknown:
        raise UserInputError(
            f"Trainer(class_weights=...) {where} names {', '.join(map(repr, unknown))}, not a class of the "
            f"label; its classes: {', '.join(map(repr, vocabulary))}"
        )
    return [float(given.get(c, 1.0)) for c in vocabulary]


def user_receivers(params) -> Callable | None:
    """The model module's `serving_receivers(raw_feature_spec, transform)`, if it defines one:
    more serving signatures, such as dense tensors in for a model trained from tf.Examples."""
    if params.module_file is None:
        return None
    from pipeline.usercode import UserFunction, load_module

    function = getattr(load_module(params.module_file), "serving_receivers", None)
    return (
        UserFunction(function, "serving_receivers", os.path.abspath(params.module_file))
        if callable(function)
        else None
    )


def user_run_fn(params) -> Callable | None:
    """The module file's `run_fn(fn_args)` (TFX's generic trainer contract), when it defines one and
    neither build_fn nor model_fn."""
    if params.module_file is None:
        return None
    from pipeline.usercode import load_module

    module = load_module(params.module_file)
    if callable(getattr(module, "build_fn", None)) or callable(getattr(module, "model_fn", None)):
        return None
    return getattr(module, "run_fn", None) if callable(getattr(module, "run_fn", None)) else None


def train_with_run_fn(job: TrainingJob, run_fn: Callable, log: Callable[[str], None]) -> TrainingOutcome:
    """Calls a TFX module's `run_fn` with TFX's own FnArgs: the transformed examples' files, the
    Transform output, the raw schema, a data accessor built by TFX's tfxio_utils over our Examples,
    the steps, the hyperparameters, and `serving_model_dir` for the export, which must then hold a
    SavedModel whose `serving_default` takes serialized tf.Examples under `examples`."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from pipeline.errors import UserInputError
    from pipeline.usercode import UserFunction

    try:
        from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
        from tfx.components.util import tfxio_utils
        from tfx.types import artifact_utils, standard_artifacts
    except ImportError as error:
        raise UserInputError(
            f"a module with run_fn needs TFX's library (tfx in requirements.lock): {error}"
        ) from None
    params = job.params
    examples = standard_artifacts.Examples()
    examples.uri = job.examples.uri
    examples.split_names = artifact_utils.encode_split_names(list(job.examples.split_names))
    fn_args = FnArgs(
        working_dir=job.run_dir,
        train_files=[os.path.join(job.examples.split_uri("train"), "*")],
        eval_files=[os.path.join(job.examples.split_uri("eval"), "*")],
        train_steps=params.train_steps,
        eval_steps=params.eval_steps or 40,
        schema_path=job.schema_file,
        schema_file=job.schema_file,
        transform_graph_path=job.transform_graph_uri,
        transform_output=tft.TFTransformOutput(job.transform_graph_uri),
        data_accessor=DataAccessor(
            tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], ["Trainer"]),
            record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], ["Trainer"]),
            data_view_decode_fn=None,
        ),
        serving_model_dir=job.export_dir,
        eval_model_dir=job.export_dir,
        model_run_dir=job.run_dir,
        base_model=job.warm_start_from,
        hyperparameters=dict(params.hyperparameters),
        custom_config={"label_key": params.label_key},
    )
    os.makedirs(job.run_dir, exist_ok=True)
    log(f"run_fn from {params.module_file}: TFX's FnArgs, {params.train_steps} steps")
    UserFunction(run_fn, "run_fn", os.path.abspath(params.module_file))(fn_args)
    if not os.path.exists(os.path.join(job.export_dir, "saved_model.pb")):
        raise UserInputError(
            f"run_fn in {params.module_file} returned without saving a model in fn_args.serving_model_dir; "
            "save one there with a serving_default signature that takes serialized tf.Examples"
        )
    serving = tf.saved_model.load(job.export_dir).signatures.get("serving_default")
    inputs = serving.structured_input_signature[1] if serving is not None else {}
    if serving is None or set(inputs) != {"examples"}:
        raise UserInputError(
            f"the model run_fn in {params.module_file} saved needs a serving_default signature taking "
            f"serialized tf.Examples under `examples`; it has {sorted(inputs) if serving else 'none'}"
        )
    signatures = {
        name: sorted(fn.structured_outputs)
        for name, fn in tf.saved_model.load(job.export_dir).signatures.items()
    }
    return TrainingOutcome(
        best_step=params.train_steps,
        best_metrics={},
        last_step=params.train_steps,
        stopped_early=False,
        resumed_from=0,
        signatures=signatures,
        devices=training_devices(),
    )


def outcome_path(job_file: str, worker: int) -> str:
    return f"{job_file}.outcome-{worker}.json"


def main(argv: list[str]) -> int:
    """A worker of a multi-worker job: TF_CONFIG says which; the chief writes the outcome."""
    from pipeline.errors import UserInputError

    if argv[:1] == ["--follow"]:
        from components.trainer.workers import follow

        index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index")
        if index is None:
            print("error: --follow needs TF_CONFIG naming this worker's task", file=sys.stderr)
            return 2
        argv = [follow(argv[1], index)]
        print(f"following the training job {argv[0]} as worker {index}", flush=True)
    [job_file] = argv
    with open(job_file, "rb") as pickled:
        job: TrainingJob = pickle.load(pickled)
    strategy = make_strategy("multi_worker")  # first, before any other TensorFlow op

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        outcome = train(job, log, strategy)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    path = outcome_path(job_file, strategy.cluster_resolver.task_id)
    with open(path + ".tmp", "w") as f:
        json.dump(asdict(outcome), f)
    os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
