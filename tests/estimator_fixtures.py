"""Small models and data for the estimator tests; also runnable as a training job that can be killed.

python -m tests.estimator_fixtures MODEL_DIR MAX_STEPS   # trains the toy classifier, printing progress
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import tensorflow as tf

from estimator import (
    ClassificationHead,
    EarlyStopping,
    Estimator,
    EvalSpec,
    RunConfig,
    TrainSpec,
    model_fn_from_build_fn,
    train_and_evaluate,
)

CLASSES = ["low", "mid", "high"]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(600, 4)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)


def input_fn(train: bool = True, batch: int = 32):
    def make():
        ds = tf.data.Dataset.from_tensor_slices(({"x": X}, Y))
        if train:
            ds = ds.shuffle(600, seed=0).repeat()
        return ds.batch(batch)

    return make


def build_fn(features, params):
    hidden = keras.layers.Dense(params.get("hidden", 16), activation="relu")(features["x"])
    return keras.layers.Dense(3)(hidden)


def classifier(model_dir: str, **kwargs) -> Estimator:
    config = kwargs.pop("config", RunConfig(save_checkpoints_steps=20, log_step_count_steps=20))
    return Estimator(
        model_fn_from_build_fn(build_fn, ClassificationHead(3, CLASSES)),
        model_dir,
        params={"learning_rate": 0.05},
        config=config,
        **kwargs,
    )


def example(x: np.ndarray) -> bytes:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in x]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feature})).SerializeToString()


if __name__ == "__main__":
    model_dir, max_steps = sys.argv[1], int(sys.argv[2])
    estimator = classifier(model_dir, config=RunConfig(save_checkpoints_steps=10, log_step_count_steps=10))
    result = train_and_evaluate(
        estimator,
        TrainSpec(input_fn(), max_steps),
        EvalSpec(input_fn(False), every_steps=10),
        EarlyStopping("loss", "min", patience=1000),
        log=lambda m: print(m, flush=True),
    )
    print(f"done: last step {result.last_step}, best step {result.best_step}", flush=True)
