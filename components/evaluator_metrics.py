"""Classification metrics for TFMA from one shared confusion matrix per model and slice.

TFMA's own `Precision` and `Recall` binarize every example once per class and per metric, each
through its generic label/prediction conversion, and `SparseCategoricalAccuracy` runs a Keras metric;
on the penguin model that was 42 of 59 s of a 20k-example evaluation (py-spy, bench/evaluator.py);
TFMA's ExampleCount was another 4% of a 100k-example one.
Here one combiner adds each example to an n x n matrix (true class x argmax of the scores, class
ids in the Evaluator's shared class order) with a few numpy operations, and accuracy, precision and
recall are derived from that matrix per slice. Each metric asks for the same base computation, and
TFMA runs a computation shared by several metrics once.

`MetricConfig(class_name="LabeledExampleCount" | "MulticlassAccuracy" | "ClassPrecision" | "ClassRecall",
module="components.evaluator_metrics", config='"class_names": [...]')`; precision and recall take
their class from the metrics spec's `binarize.class_ids`, as TFMA's own do, so their keys (and the
thresholds on them) look exactly like TFMA's.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

CONFUSION = "_class_confusion_matrix"


class _ConfusionMetric(metric_types.Metric):
    """A metric derived from the shared confusion matrix by `derive(matrix, class_id)`."""

    NAME = ""

    def __init__(self, class_names: list[str], name: str | None = None):
        super().__init__(_computations, class_names=class_names, name=name or self.NAME, derive=self.derive)

    @property
    def compute_confidence_interval(self) -> bool:
        return False

    @staticmethod
    def derive(matrix: np.ndarray, class_id: int | None) -> float:
        raise NotImplementedError


class LabeledExampleCount(_ConfusionMetric):
    """The number of examples counted (every example has a label among the model's classes, or the
    evaluation fails naming the label)."""

    NAME = "example_count"

    @staticmethod
    def derive(matrix, class_id):
        return float(matrix.sum())


class MulticlassAccuracy(_ConfusionMetric):
    """The share of examples whose highest score is their label's class."""

    NAME = "accuracy"

    @staticmethod
    def derive(matrix, class_id):
        return _ratio(np.trace(matrix), matrix.sum())


class ClassPrecision(_ConfusionMetric):
    """Of the examples predicted as the class (highest score), the share that are of it."""

    NAME = "precision"

    @staticmethod
    def derive(matrix, class_id):
        return _ratio(matrix[class_id, class_id], matrix[:, class_id].sum())


class ClassRecall(_ConfusionMetric):
    """Of the examples of the class, the share predicted as it (highest score)."""

    NAME = "recall"

    @staticmethod
    def derive(matrix, class_id):
        return _ratio(matrix[class_id, class_id], matrix[class_id, :].sum())


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _computations(
    class_names: list[str],
    derive,
    name: str,
    model_names: list[str] | None = None,
    output_names: list[str] | None = None,
    sub_keys: list | None = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            base = metric_types.MetricKey(
                name=CONFUSION,
                model_name=model_name,
                output_name=output_name,
                example_weighted=example_weighted,
            )
            computations.append(
                metric_types.MetricComputation(
                    keys=[base], preprocessors=None, combiner=_ConfusionCombiner(base, class_names)
                )
            )
            keys = [
                metric_types.MetricKey(
                    name=name,
                    model_name=model_name,
                    output_name=output_name,
                    sub_key=sub_key,
                    example_weighted=example_weighted,
                )
                for sub_key in sub_keys or [None]
            ]

            def result(metrics, base=base, keys=keys):
                matrix = metrics[base]
                return {
                    key: derive(matrix, key.sub_key.class_id if key.sub_key is not None else None)
                    for key in keys
                }

            computations.append(metric_types.DerivedMetricComputation(keys=keys, result=result))
    return computations


class _ConfusionCombiner(beam.CombineFn):
    """Per example: label (the class name, bytes) x argmax(scores) into an n x n count matrix."""

    def __init__(self, key: metric_types.MetricKey, class_names: list[str]):
        self._key = key
        self._n = len(class_names)
        self._names = list(class_names)
        self._class_ids = {name.encode(): i for i, name in enumerate(class_names)}
        self._class_ids.update({name: i for i, name in enumerate(class_names)})

    def create_accumulator(self) -> np.ndarray:
        return np.zeros((self._n, self._n), dtype=np.int64)

    def add_input(self, matrix: np.ndarray, element: metric_types.StandardMetricInputs) -> np.ndarray:
        label, prediction = element.label, element.prediction
        if isinstance(label, dict) and self._key.model_name in label:  # one entry per model
            label = label[self._key.model_name]
        if self._key.model_name in prediction:
            prediction = prediction[self._key.model_name]
        for name, scores in zip(np.ravel(label), np.reshape(prediction["scores"], (-1, self._n))):
            true = self._class_ids.get(name)
            if true is None:
                raise ValueError(
                    f"label {_text(name)!r} is not one of the model's classes {self._names}; check the "
                    "Evaluator's label_key and the eval split's labels"
                )
            matrix[true, int(np.argmax(scores))] += 1
        return matrix

    def merge_accumulators(self, matrices) -> np.ndarray:
        total = self.create_accumulator()
        for matrix in matrices:
            total += matrix
        return total

    def extract_output(self, matrix: np.ndarray) -> dict:
        return {self._key: matrix}


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
