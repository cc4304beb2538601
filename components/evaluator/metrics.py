"""The Evaluator's metrics as TFMA metrics: the classes its EvalConfig names (TFMA's threshold
code reads the metric keys from them), and the formulas from shared counts that the batched
evaluation (`batched`) applies per slice and model: `derive` of each class.

Classification: one n x n confusion matrix (true class x argmax of the scores, class ids in the
Evaluator's shared class order) gives `example_count`, `accuracy`, `macro_f1`, and per class
`precision`, `recall` and `f1`. Regression: seven sums (n, y, y^2, p, (y - p), (y - p)^2 and |y - p|) give
`example_count`, `mean_squared_error`, `root_mean_squared_error`, `mean_absolute_error`,
`mean_label`, `mean_prediction` and `r_squared`.

`MetricConfig(class_name="LabeledExampleCount" | "MulticlassAccuracy" | "MacroF1" | "ClassPrecision" |
"ClassRecall" | "ClassF1",
module="components.evaluator.metrics", config='"class_names": [...]')`; precision and recall take
their class from the metrics spec's `binarize.class_ids`, as TFMA's own do, so their keys (and the
thresholds on them) look exactly like TFMA's. Their combiners also run under TFMA itself, example
by example (`tfma.run_model_analysis` with the Evaluator's eval_config.json and a model whose
vocabulary is sorted).
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

CONFUSION = "_class_confusion_matrix"
REGRESSION_SUMS = "_regression_sums"


class _ConfusionMetric(metric_types.Metric):
    """A metric derived from the shared confusion matrix by `derive(matrix, class_id)`."""

    NAME = ""

    def __init__(self, class_names: list[str], name: str | None = None):
        super().__init__(
            _computations,
            name=name or self.NAME,
            derive=self.derive,
            base_name=CONFUSION,
            make_combiner=lambda key: _ConfusionCombiner(key, class_names),
        )

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


class ClassF1(_ConfusionMetric):
    """The harmonic mean of the class's precision and recall (highest score); 0 when both are 0."""

    NAME = "f1"

    @staticmethod
    def derive(matrix, class_id):
        return _f1(matrix, class_id)


class MacroF1(_ConfusionMetric):
    """The mean of every class's F1, each class counting the same however rare (a class never
    seen nor predicted is left out)."""

    NAME = "macro_f1"

    @staticmethod
    def derive(matrix, class_id):
        present = [k for k in range(len(matrix)) if matrix[k, :].sum() or matrix[:, k].sum()]
        return float(np.mean([_f1(matrix, k) for k in present])) if present else float("nan")


def _f1(matrix: np.ndarray, class_id: int) -> float:
    true_positives = float(matrix[class_id, class_id])
    wrong = float(matrix[class_id, :].sum() + matrix[:, class_id].sum()) - 2 * true_positives
    return _ratio(2 * true_positives, 2 * true_positives + wrong) if true_positives or wrong else float("nan")


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _computations(
    derive,
    name: str,
    base_name: str,
    make_combiner,
    model_names: list[str] | None = None,
    output_names: list[str] | None = None,
    sub_keys: list | None = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            base = metric_types.MetricKey(
                name=base_name,
                model_name=model_name,
                output_name=output_name,
                example_weighted=example_weighted,
            )
            computations.append(
                metric_types.MetricComputation(keys=[base], preprocessors=None, combiner=make_combiner(base))
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
        self._class_ids: dict[str | bytes, int] = {name.encode(): i for i, name in enumerate(class_names)}
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


class _RegressionMetric(metric_types.Metric):
    """A metric derived from the shared regression sums by `derive(sums)`."""

    NAME = ""

    def __init__(self, name: str | None = None):
        super().__init__(
            _computations,
            name=name or self.NAME,
            derive=lambda sums, class_id: self.derive(sums),
            base_name=REGRESSION_SUMS,
            make_combiner=_RegressionCombiner,
        )

    @property
    def compute_confidence_interval(self) -> bool:
        return False

    @staticmethod
    def derive(sums: np.ndarray) -> float:
        raise NotImplementedError


# The sums' positions: count, label, label squared, prediction, error, error squared, absolute error.
N, Y, YY, P, E, EE, AE = range(7)


class RegressionExampleCount(_RegressionMetric):
    """The number of examples evaluated."""

    NAME = "example_count"

    @staticmethod
    def derive(sums):
        return float(sums[N])


class MeanSquaredError(_RegressionMetric):
    NAME = "mean_squared_error"

    @staticmethod
    def derive(sums):
        return _ratio(sums[EE], sums[N])


class RootMeanSquaredError(_RegressionMetric):
    NAME = "root_mean_squared_error"

    @staticmethod
    def derive(sums):
        return float(np.sqrt(_ratio(sums[EE], sums[N])))


class MeanAbsoluteError(_RegressionMetric):
    NAME = "mean_absolute_error"

    @staticmethod
    def derive(sums):
        return _ratio(sums[AE], sums[N])


class MeanLabel(_RegressionMetric):
    NAME = "mean_label"

    @staticmethod
    def derive(sums):
        return _ratio(sums[Y], sums[N])


class MeanPrediction(_RegressionMetric):
    NAME = "mean_prediction"

    @staticmethod
    def derive(sums):
        return _ratio(sums[P], sums[N])


class RSquared(_RegressionMetric):
    """1 - (squared error) / (squared deviation of the label from its mean): 1 is perfect, 0 is
    no better than predicting the mean; NaN when every label is the same."""

    NAME = "r_squared"

    @staticmethod
    def derive(sums):
        total = sums[YY] - sums[Y] ** 2 / sums[N] if sums[N] else 0.0
        return 1.0 - sums[EE] / total if total > 0 else float("nan")


REGRESSION_METRICS = {
    cls.NAME: cls.__name__
    for cls in (
        RegressionExampleCount,
        MeanSquaredError,
        RootMeanSquaredError,
        MeanAbsoluteError,
        MeanLabel,
        MeanPrediction,
        RSquared,
    )
}


class _RegressionCombiner(beam.CombineFn):
    """Per batch of examples: the label and the prediction (`outputs`, or the only output) into sums."""

    def __init__(self, key: metric_types.MetricKey):
        self._key = key

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(7, dtype=np.float64)

    def add_input(self, sums: np.ndarray, element: metric_types.StandardMetricInputs) -> np.ndarray:
        label, prediction = element.label, element.prediction
        if isinstance(label, dict) and self._key.model_name in label:
            label = label[self._key.model_name]
        if isinstance(prediction, dict) and self._key.model_name in prediction:
            prediction = prediction[self._key.model_name]
        if isinstance(prediction, dict):
            prediction = prediction["outputs"] if "outputs" in prediction else next(iter(prediction.values()))
        y = _numbers(label, "label")
        p = np.asarray(prediction, dtype=np.float64).reshape(-1)
        if len(y) != len(p):
            raise ValueError(
                f"{len(y)} label(s) for {len(p)} prediction(s): each eval example needs exactly one label value"
            )
        if not np.all(np.isfinite(p)):
            raise ValueError("the model predicted NaN or an infinite value; it cannot be evaluated")
        error = y - p
        sums += (
            len(y),
            y.sum(),
            (y * y).sum(),
            p.sum(),
            error.sum(),
            (error * error).sum(),
            np.abs(error).sum(),
        )
        return sums

    def merge_accumulators(self, accumulators) -> np.ndarray:
        total = self.create_accumulator()
        for sums in accumulators:
            total += sums
        return total

    def extract_output(self, sums: np.ndarray) -> dict:
        return {self._key: sums}


def _numbers(label, what: str) -> np.ndarray:
    if label is None:
        raise ValueError(
            f"an eval example has no {what}; the Evaluator's label_key must name a feature every example has"
        )
    values = np.asarray(label).reshape(-1)
    if values.dtype.kind not in "iuf":
        raise ValueError(
            f"the {what} holds text such as {values[:1].tolist()}, not numbers; a "
            "regression model needs a numeric label (for classes, use head='classification')"
        )
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"an eval example's {what} is NaN or infinite")
    return values
