"""The penguin pipeline's model: `build_fn` for the Trainer (a small dense network on Transform's outputs).

The Trainer calls `build_fn(features, params)` with the transformed features (z-scored numbers,
their `_missing` indicators, vocabulary indices for island and sex) and puts its logits under a
classification head over the species vocabulary. `params` holds the Trainer's hyperparameters plus
`n_classes` and `vocabulary_sizes` (Transform's vocabularies, name -> size without OOV buckets).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from schemas import CATEGORICAL_FEATURES, NUMERIC_FEATURES

MISSING_SUFFIX = "_missing"
OOV_BUCKETS = 1


def build_fn(features: dict, params: dict):
    numbers = [features[name] for name in NUMERIC_FEATURES]
    numbers += [features[name + MISSING_SUFFIX] for name in NUMERIC_FEATURES]
    columns = [tf.stack(numbers, axis=1)]
    for name in CATEGORICAL_FEATURES:
        size = params["vocabulary_sizes"][name] + OOV_BUCKETS
        columns.append(tf.one_hot(tf.cast(features[name], tf.int32), size))
    hidden = tf.concat(columns, axis=1)
    for units in params.get("hidden_units", [16, 8]):
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    return keras.layers.Dense(params["n_classes"])(hidden)
