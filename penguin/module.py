"""The penguin pipeline's user code: `preprocessing_fn` for Transform.

Every output is a dense rank-1 tensor, one value per example, under the raw feature's name:
- numeric features: z-scores over the training split; a missing value is imputed by the training
  mean, so it becomes 0.0, and `<feature>_missing` is 1.0 for it (0.0 otherwise);
- island and sex: indices into vocabularies `island` and `sex` built on the training split, with
  one out-of-vocabulary bucket (index = vocabulary size) for unseen and missing values;
- the label species: its index in vocabulary `species` (most frequent first), which the exported
  model reads to return class names. At serving time no label is fed and this output is dropped.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from schemas import CATEGORICAL_FEATURES, LABEL_KEY, NUMERIC_FEATURES

MISSING_SUFFIX = "_missing"


def preprocessing_fn(inputs: dict) -> dict:
    """Raw features (dense for required ones, sparse for optional ones) to model features."""
    outputs = {}
    for name in NUMERIC_FEATURES:
        values = tf.cast(inputs[name], tf.float32)
        outputs[name] = _dense(tft.scale_to_z_score(values), default=0.0)
        outputs[name + MISSING_SUFFIX] = 1.0 - _dense(_ones_like(values), default=0.0)
    for name in CATEGORICAL_FEATURES:
        # Empty strings never enter a TFT vocabulary, so a missing value lands in the OOV bucket.
        strings = _dense(inputs[name], default="")
        outputs[name] = tft.compute_and_apply_vocabulary(strings, num_oov_buckets=1, vocab_filename=name)
    outputs[LABEL_KEY] = tft.compute_and_apply_vocabulary(
        _dense(inputs[LABEL_KEY], default=""), vocab_filename=LABEL_KEY
    )
    return outputs


def _dense(values, default):
    """A [batch] tensor from a [batch, 1] dense or sparse one, `default` where a value is missing."""
    if isinstance(values, tf.SparseTensor):
        values = tft.sparse_tensor_to_dense_with_shape(values, [None, 1], default_value=default)
    return tf.reshape(values, [-1])


def _ones_like(values):
    if isinstance(values, tf.SparseTensor):
        return tf.sparse.map_values(tf.ones_like, values)
    return tf.ones_like(values)
