"""A custom estimator for TensorFlow 2.21 and Keras 3, keeping what tf.estimator users relied on:
model_fn with TRAIN/EVAL/PREDICT modes, heads for a build_fn, train_and_evaluate with early
stopping, checkpoints that resume, and SavedModel export with TF Serving's signatures.

As tf.estimator built its graph by calling model_fn once in graph mode, model_fn and build_fn are
traced without AutoGraph: Python `if` and `for` run once, while tracing (use tf.cond, tf.where or
tf.while_loop for decisions on tensor values). AutoGraph's rewriting of the model code was most of
the Trainer's time on small data (2.7 of 6.3 s on the penguin data, py-spy)."""

from estimator import eval_metrics as metrics
from estimator.estimator import Estimator, RunConfig, get_global_step
from estimator.heads import ClassificationHead, RegressionHead, model_fn_from_build_fn
from estimator.spec import (
    SERVING_DEFAULT,
    ClassificationOutput,
    EstimatorSpec,
    ModeKeys,
    PredictOutput,
    RegressionOutput,
)
from estimator.train_and_evaluate import EarlyStopping, EvalSpec, TrainResult, TrainSpec, train_and_evaluate

__all__ = [
    "SERVING_DEFAULT",
    "ClassificationHead",
    "ClassificationOutput",
    "EarlyStopping",
    "Estimator",
    "EstimatorSpec",
    "EvalSpec",
    "ModeKeys",
    "PredictOutput",
    "RegressionHead",
    "RegressionOutput",
    "RunConfig",
    "TrainResult",
    "TrainSpec",
    "get_global_step",
    "metrics",
    "model_fn_from_build_fn",
    "train_and_evaluate",
]
