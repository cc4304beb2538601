"""Heads: from logits to predictions, loss, metrics and export outputs, so a user writes only a
`build_fn(features, params) -> logits` and picks a head (the tf.estimator "canned head" idea)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from estimator import eval_metrics as metrics
from estimator.spec import (
    SERVING_DEFAULT,
    ClassificationOutput,
    EstimatorSpec,
    ModeKeys,
    PredictOutput,
    RegressionOutput,
)
from pipeline.errors import UserInputError


class ClassificationHead:
    """Softmax over `n_classes`; labels are integer class ids in [0, n_classes).

    With `label_vocabulary` (class names in id order, such as Transform's vocabulary), predictions
    and the Classify signature return names; otherwise the ids as strings. `class_weights` (one
    per class id) weight each example's loss by its label's class, averaged over the batch as
    tf.estimator's weight column is: a rare class weighted up counts as if it were more frequent.
    `decision_threshold` (two classes: (class id, probability)) predicts that class when its
    probability reaches the threshold, instead of the more probable class (0.5).
    """

    def __init__(
        self,
        n_classes: int,
        label_vocabulary: Sequence[str] | None = None,
        name: str = "classification",
        class_weights: Sequence[float] | None = None,
        decision_threshold: tuple[int, float] | None = None,
    ):
        if n_classes < 2:
            raise UserInputError(f"a classification head needs at least 2 classes, got {n_classes}")
        if label_vocabulary is not None and len(label_vocabulary) != n_classes:
            raise UserInputError(
                f"label_vocabulary has {len(label_vocabulary)} names for {n_classes} classes: {list(label_vocabulary)}"
            )
        self.n_classes = n_classes
        self.label_vocabulary = [
            v.decode() if isinstance(v, bytes) else str(v) for v in label_vocabulary or []
        ]
        if class_weights is not None and (
            len(class_weights) != n_classes
            or not all(w >= 0 for w in class_weights)
            or not any(class_weights)
        ):
            raise UserInputError(
                f"{name} head: class_weights needs {n_classes} non-negative weights, not all 0; got {list(class_weights)}"
            )
        if decision_threshold is not None and (
            n_classes != 2 or decision_threshold[0] not in (0, 1) or not 0 < decision_threshold[1] < 1
        ):
            raise UserInputError(
                f"{name} head: a decision threshold needs two classes and (class id 0 or 1, a "
                f"probability strictly between 0 and 1); got {decision_threshold} for {n_classes} classes"
            )
        self.decision_threshold = decision_threshold
        self.name = name
        self.logits_dimension = n_classes
        self.class_weights = [float(w) for w in class_weights] if class_weights is not None else None

    def predictions(self, logits) -> dict[str, Any]:
        import tensorflow as tf

        probabilities = tf.nn.softmax(logits)
        class_ids = tf.argmax(logits, axis=-1)
        if self.decision_threshold is not None:
            positive, threshold = self.decision_threshold
            class_ids = tf.where(
                probabilities[:, positive] >= threshold,
                tf.constant(positive, tf.int64),
                tf.constant(1 - positive, tf.int64),
            )
        names = tf.constant(self.label_vocabulary or [str(i) for i in range(self.n_classes)])
        return {
            "logits": logits,
            "probabilities": probabilities,
            "class_ids": class_ids,
            "classes": tf.gather(names, class_ids),
            "all_classes": tf.tile(names[tf.newaxis, :], [tf.shape(logits)[0], 1]),
        }

    def loss(self, labels, logits):
        import tensorflow as tf

        labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
        tf.debugging.assert_non_negative(
            labels, message=f"{self.name} head: a label is outside the label vocabulary"
        )
        tf.debugging.assert_less(
            labels,
            tf.constant(self.n_classes, tf.int64),
            message=f"{self.name} head: a label is outside the label vocabulary",
        )
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if self.class_weights is not None:
            losses *= tf.gather(tf.constant(self.class_weights, losses.dtype), labels)
        return tf.reduce_mean(losses)

    def eval_metrics(self, labels, predictions) -> dict[str, metrics.Mean]:
        result = {"accuracy": metrics.accuracy(labels, predictions["class_ids"])}
        names = self.label_vocabulary or [str(i) for i in range(self.n_classes)]
        for class_id, name in enumerate(names):
            result[f"precision/{name}"] = metrics.precision(labels, predictions["class_ids"], class_id)
            result[f"recall/{name}"] = metrics.recall(labels, predictions["class_ids"], class_id)
        return result

    def export_outputs(self, predictions) -> dict[str, Any]:
        return {
            "classification": ClassificationOutput(
                scores=predictions["probabilities"], classes=predictions["all_classes"]
            ),
            "predict": PredictOutput(
                {k: predictions[k] for k in ("classes", "class_ids", "probabilities", "logits")}
            ),
        }


class RegressionHead:
    """One real value per example; mean squared error.

    `label_mean` and `label_scale` standardize the label for training: the network predicts
    (label - mean) / scale, which starts near zero whatever the label's units, and predictions are
    scaled back, so a client sees the label's own units. The loss is on the standardized scale."""

    def __init__(self, name: str = "regression", label_mean: float = 0.0, label_scale: float = 1.0):
        if not label_scale > 0:
            raise UserInputError(f"{name} head: label_scale must be positive, got {label_scale}")
        self.name = name
        self.logits_dimension = 1
        self.label_mean = float(label_mean)
        self.label_scale = float(label_scale)

    def predictions(self, logits) -> dict[str, Any]:
        import tensorflow as tf

        return {"predictions": tf.reshape(logits, [-1]) * self.label_scale + self.label_mean}

    def loss(self, labels, logits):
        import tensorflow as tf

        labels = (tf.cast(tf.reshape(labels, [-1]), logits.dtype) - self.label_mean) / self.label_scale
        return tf.reduce_mean(tf.square(labels - tf.reshape(logits, [-1])))

    def eval_metrics(self, labels, predictions) -> dict[str, metrics.Mean]:
        import tensorflow as tf

        labels = tf.cast(tf.reshape(labels, [-1]), predictions["predictions"].dtype)
        return {"mean_absolute_error": metrics.mean(tf.abs(labels - predictions["predictions"]))}

    def export_outputs(self, predictions) -> dict[str, Any]:
        return {
            "regression": RegressionOutput(predictions["predictions"]),
            "predict": PredictOutput({"outputs": predictions["predictions"]}),
        }


def head_spec(head, labels, logits, mode: str) -> EstimatorSpec:
    """The EstimatorSpec of a single head; its Classify or Regress output is `serving_default`."""
    predictions = head.predictions(logits)
    if mode == ModeKeys.PREDICT:
        outputs = head.export_outputs(predictions)
        first = next(iter(outputs.values()))
        serving = {**outputs, SERVING_DEFAULT: _serving_default(head, predictions, first)}
        return EstimatorSpec(mode, predictions=predictions, export_outputs=serving)
    loss = head.loss(labels, logits)
    eval_ops = head.eval_metrics(labels, predictions) if mode == ModeKeys.EVAL else {}
    return EstimatorSpec(mode, predictions=predictions, loss=loss, eval_metric_ops=eval_ops)


def _serving_default(head, predictions, first):
    """`serving_default` gives what a client wants, from serialized tf.Examples under `examples`
    whatever the head: for classification, `classes` (names), `class_ids` and `scores`
    (probabilities); for regression, `outputs`. (TF Serving's Classify and Regress APIs have their
    own signatures, `classification` and `regression`, which take `inputs`.)"""
    if isinstance(head, ClassificationHead):
        return PredictOutput(
            {
                "classes": predictions["classes"],
                "class_ids": predictions["class_ids"],
                "scores": predictions["probabilities"],
            }
        )
    if isinstance(head, RegressionHead):
        return PredictOutput({"outputs": predictions["predictions"]})
    return first


def model_fn_from_build_fn(build_fn: Callable, head, serving_head: str | None = None) -> Callable:
    """A model_fn from `build_fn(features, params) -> logits` and a head. For several heads pass a
    dict name -> head; build_fn then returns a dict name -> logits, the loss is the heads' sum,
    and `serving_head` names the head whose outputs are `serving_default`."""
    heads = head if isinstance(head, dict) else None
    if heads is not None and serving_head not in heads:
        raise UserInputError(
            f"with several heads ({', '.join(heads)}), serving_head must name the one that serves as "
            f"'{SERVING_DEFAULT}', got {serving_head!r}"
        )

    def model_fn(features, labels, mode, params):
        logits = build_fn(features, params)
        if heads is None:
            _check_logits(build_fn, head, logits)
            return head_spec(head, labels, logits, mode)
        return _multi_head_spec(build_fn, heads, serving_head, labels, logits, mode)

    model_fn.build_fn = build_fn  # type: ignore[attr-defined]  # the export finds the user's function
    return model_fn


def _multi_head_spec(build_fn, heads, serving_head, labels, logits, mode) -> EstimatorSpec:
    if not isinstance(logits, dict) or set(logits) != set(heads):
        raise UserInputError(
            f"{_where(build_fn)} must return a dict of logits keyed by head name {sorted(heads)}, "
            f"got {type(logits).__name__} {sorted(logits) if isinstance(logits, dict) else ''}"
        )
    specs = {}
    for name, head in heads.items():
        _check_logits(build_fn, head, logits[name])
        specs[name] = head_spec(head, None if labels is None else labels[name], logits[name], mode)
    predictions = {
        f"{name}/{key}": value for name, spec in specs.items() for key, value in spec.predictions.items()
    }
    if mode == ModeKeys.PREDICT:
        outputs = {SERVING_DEFAULT: _export_output(specs[serving_head])}
        for name, spec in specs.items():
            outputs[name] = _export_output(spec)
        return EstimatorSpec(mode, predictions=predictions, export_outputs=outputs)
    loss = sum(spec.loss for spec in specs.values())
    eval_ops = {
        f"{name}/{key}": op for name, spec in specs.items() for key, op in spec.eval_metric_ops.items()
    }
    return EstimatorSpec(mode, predictions=predictions, loss=loss, eval_metric_ops=eval_ops)


def _check_logits(build_fn, head, logits) -> None:
    shape = getattr(logits, "shape", None)
    if shape is None or len(shape) != 2 or (shape[-1] is not None and shape[-1] != head.logits_dimension):
        raise UserInputError(
            f"{_where(build_fn)} returned logits of shape {shape}; the {head.name} head needs "
            f"[batch, {head.logits_dimension}]"
        )


def _where(fn) -> str:
    code = getattr(fn, "__code__", None)
    return f"{fn.__name__} in {code.co_filename}" if code else repr(fn)


def _export_output(spec):
    """A head's serving_default output (every head spec in PREDICT mode has one)."""
    assert spec.export_outputs is not None, "a head's PREDICT spec always has export_outputs"
    return spec.export_outputs[SERVING_DEFAULT]
