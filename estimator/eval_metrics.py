"""Evaluation metrics as per-batch sums and counts, which the estimator adds up over the eval data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Mean:
    """A weighted mean over the evaluation data: the batch's `total` and `count` (tensors)."""

    total: Any
    count: Any


def mean(values, weights=None) -> Mean:
    import tensorflow as tf

    values = tf.cast(tf.reshape(values, [-1]), tf.float64)
    weights = tf.ones_like(values) if weights is None else tf.cast(tf.reshape(weights, [-1]), tf.float64)
    return Mean(tf.reduce_sum(values * weights), tf.reduce_sum(weights))


def accuracy(labels, predicted) -> Mean:
    import tensorflow as tf

    return mean(
        tf.equal(tf.cast(tf.reshape(labels, [-1]), tf.int64), tf.cast(tf.reshape(predicted, [-1]), tf.int64))
    )


def precision(labels, predicted, class_id: int) -> Mean:
    """Of the examples predicted as `class_id`, the share that are."""
    import tensorflow as tf

    labels, predicted = (
        tf.cast(tf.reshape(labels, [-1]), tf.int64),
        tf.cast(tf.reshape(predicted, [-1]), tf.int64),
    )
    return mean(tf.equal(labels, class_id), weights=tf.equal(predicted, class_id))


def recall(labels, predicted, class_id: int) -> Mean:
    """Of the examples of class `class_id`, the share predicted so."""
    import tensorflow as tf

    labels, predicted = (
        tf.cast(tf.reshape(labels, [-1]), tf.int64),
        tf.cast(tf.reshape(predicted, [-1]), tf.int64),
    )
    return mean(tf.equal(predicted, class_id), weights=tf.equal(labels, class_id))
