"""The Evaluator's evaluation, batch by batch: each model's `serving_default` on a batch of
serialized raw tf.Examples, the label and the slice features decoded as Arrow columns, and every
slice's metrics accumulated from vectorized counts and sums in the same pass, for the candidate
and the baseline alike.

TFMA evaluates example by example (its extractors, slice keys and combiners cost about 150 us an
example: 72 s of a 1M-row run's 132 s). Here a batch of 8,192 examples costs a few array
operations per slice spec; the model call dominates.

What is accumulated, per slice and model (`Accumulator`):
- classification: the confusion matrix (true class x highest-scoring class, in the Evaluator's
  shared class order), and for two-class models a histogram of each class's score over 10,000
  buckets, split by whether the example is of that class (AUC, as TFMA's 10,000-threshold ROC);
- regression: the seven sums of `metrics` (count, label, label squared, prediction, error, error
  squared, absolute error), and for the whole split a `ResidualGrid` of residual (label -
  prediction) against prediction: bounded whatever the label's scale, merged exactly.
The metrics are derived from them with the same functions TFMA would run (`metrics`), keyed by
TFMA's MetricKeys; TFMA's own code turns them into its MetricsForSlice protos, checks the
thresholds (`metrics_validator.validate_metrics`, merged as its writer merges them) and the
output directory is TFMA's layout: `tfma.load_eval_result`, `load_metrics` and
`load_validation_result` read it.

The same functions run in this process (`evaluate`, small inputs and the DirectRunner) or as a
Beam pipeline (`evaluate_with_beam`: one element per batch, the accumulators merged by a
CombineFn), and give the same files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from pipeline.errors import UserInputError

BATCH_SIZE = 8192
AUC_BUCKETS = 10_000
GRID_BINS = 64
_FINEST = -40  # the finest bin width of a residual grid: 2^-40


class ResidualGrid:
    """A 2-D histogram of (prediction, residual) on each axis's `GRID_BINS` aligned bins of width
    2^k, k the smallest for which the values fit (bin i of an axis is [i * 2^k, (i + 1) * 2^k)).
    Any two merge exactly: a bin of width 2^k lies in one of width 2^(k+1), so the finer grid is
    summed into the coarser, which widens until both fit; the result depends only on the values
    counted, not on how they were batched or merged. Linear axes, bounded, in the label's units."""

    def __init__(self, shifts=(0, 0), origins=(0, 0), counts=None):
        self.shifts, self.origins = tuple(shifts), tuple(origins)
        self.counts = np.zeros((GRID_BINS, GRID_BINS), np.int64) if counts is None else counts

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> ResidualGrid:
        if not len(x):
            return cls((_FINEST, _FINEST))
        shifts = tuple(_fitting_shift(v) for v in (x, y))
        index = [np.floor(v / 2.0**k).astype(np.int64) for v, k in zip((x, y), shifts)]
        origins = tuple(int(i.min()) for i in index)
        cells = (index[0] - origins[0]) * GRID_BINS + (index[1] - origins[1])
        counts = np.bincount(cells, minlength=GRID_BINS * GRID_BINS).reshape(GRID_BINS, GRID_BINS)
        return cls(shifts, origins, counts)

    def copy(self) -> ResidualGrid:
        return ResidualGrid(self.shifts, self.origins, self.counts.copy())

    def __iadd__(self, other: ResidualGrid) -> ResidualGrid:
        if not other.counts.any():
            return self
        if not self.counts.any():
            self.shifts, self.origins, self.counts = other.shifts, other.origins, other.counts.copy()
            return self
        shifts, origins = [], []
        for axis in (0, 1):
            k = max(self.shifts[axis], other.shifts[axis])
            while True:
                low, high = zip(*(g._extent(axis, k) for g in (self, other)))
                if max(high) - min(low) < GRID_BINS:
                    break
                k += 1
            shifts.append(k)
            origins.append(min(low))
        counts = np.zeros((GRID_BINS, GRID_BINS), np.int64)
        for grid in (self, other):
            rows, columns = np.nonzero(grid.counts)
            i = ((grid.origins[0] + rows) >> (shifts[0] - grid.shifts[0])) - origins[0]
            j = ((grid.origins[1] + columns) >> (shifts[1] - grid.shifts[1])) - origins[1]
            np.add.at(counts, (i, j), grid.counts[rows, columns])
        self.shifts, self.origins, self.counts = tuple(shifts), tuple(origins), counts
        return self

    def _extent(self, axis: int, shift: int) -> tuple[int, int]:
        """The first and last occupied bin of `axis`, as bins of width 2^shift."""
        used = np.flatnonzero(self.counts.sum(axis=1 - axis))
        step = shift - self.shifts[axis]
        return (self.origins[axis] + int(used[0])) >> step, (self.origins[axis] + int(used[-1])) >> step

    def edges(self, axis: int) -> np.ndarray:
        """The GRID_BINS + 1 bin edges of `axis`."""
        return (self.origins[axis] + np.arange(GRID_BINS + 1)) * 2.0 ** self.shifts[axis]


def _fitting_shift(values: np.ndarray) -> int:
    """The smallest k >= _FINEST for which `values` span fewer than GRID_BINS bins of width 2^k
    (and their bin numbers stay exact integers: |v| / 2^k < 2^52)."""
    low, high = float(values.min()), float(values.max())
    largest = max(abs(low), abs(high))
    shift = _FINEST
    if largest > 0:
        shift = max(shift, math.frexp(largest)[1] - 52)
    if high > low:
        shift = max(shift, math.frexp((high - low) / GRID_BINS)[1] - 1)
    while math.floor(high / 2.0**shift) - math.floor(low / 2.0**shift) >= GRID_BINS:
        shift += 1
    return shift


@dataclass(frozen=True)
class Task:
    """What to evaluate; picklable, to reach Beam workers. `model_dirs`: TFMA model name ('' for a
    lone candidate, else candidate/baseline) -> SavedModel directory. `vocabularies`: the same
    names -> each model's classes in its class-id order; `class_names`: the shared class
    order (None for regression)."""

    label_key: str
    signature_name: str
    slices: tuple
    model_dirs: dict
    vocabularies: dict
    class_names: tuple | None


class Accumulator:
    """`state[slice_key][model]`: the counts and sums of one slice for one model (see the module)."""

    def __init__(self) -> None:
        self.state: dict[tuple, dict[str, dict[str, Any]]] = {}  # arrays, and a ResidualGrid

    def add(self, slice_key: tuple, model: str, arrays: dict[str, np.ndarray]) -> None:
        per_model = self.state.setdefault(slice_key, {})
        if model not in per_model:
            per_model[model] = {name: array.copy() for name, array in arrays.items()}
            return
        for name, array in arrays.items():
            per_model[model][name] += array

    def merge(self, other: Accumulator) -> Accumulator:
        for slice_key, per_model in other.state.items():
            for model, arrays in per_model.items():
                self.add(slice_key, model, arrays)
        return self


class BatchEvaluator:
    """Evaluates batches of serialized raw tf.Examples; loads the models on first use."""

    def __init__(self, task: Task):
        self.task = task
        self._models: dict | None = None
        self._decoder: Any = None

    def _setup(self) -> dict:
        """Each model's (loaded SavedModel, signature, its input's name); also makes the decoder."""
        import tensorflow as tf
        from tfx_bsl.coders import example_coder

        self._decoder = example_coder.ExamplesToRecordBatchDecoder()
        models = {}
        for name, path in self.task.model_dirs.items():
            loaded = tf.saved_model.load(path)
            if self.task.signature_name not in loaded.signatures:
                raise UserInputError(
                    f"the model at {path} has no signature {self.task.signature_name!r} "
                    f"(signatures: {', '.join(sorted(loaded.signatures))}); set Evaluator(signature_name=...)"
                )
            signature = loaded.signatures[self.task.signature_name]
            _, inputs = signature.structured_input_signature
            if len(inputs) != 1:
                raise UserInputError(
                    f"the model at {path}: signature {self.task.signature_name!r} takes {sorted(inputs)}; "
                    "the Evaluator calls it with one tensor of serialized tf.Examples"
                )
            models[name] = (loaded, signature, next(iter(inputs)))
        return models

    def __call__(self, records: list[bytes]) -> Accumulator:
        import tensorflow as tf

        if self._models is None:
            self._models = self._setup()
        batch = self._decoder.DecodeBatch(records)
        task = self.task
        labels = _label_values(batch, task.label_key, task.class_names)
        groups = [_slice_groups(batch, features) for features in task.slices]
        accumulator = Accumulator()
        serialized = tf.constant(records)
        for name, (_, signature, input_name) in self._models.items():
            outputs = {k: v.numpy() for k, v in signature(**{input_name: serialized}).items()}
            if task.class_names is None:
                per_example = _regression_terms(labels, _regression_output(outputs, name))
            else:
                per_example = _classification_terms(
                    labels, outputs, name, task.vocabularies[name], list(task.class_names)
                )
            for keys, codes in groups:
                for slice_key, arrays in _per_slice(keys, codes, per_example, task.class_names):
                    accumulator.add(slice_key, name, arrays)
        return accumulator


def _label_values(batch, label_key: str, class_names: Sequence[str] | None) -> np.ndarray:
    """One label per example: class ids in `class_names` order, or float64 numbers (regression)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if label_key not in batch.schema.names:
        raise UserInputError(
            f"the eval examples have no feature {label_key!r} (features: {', '.join(sorted(batch.schema.names))}); "
            "set Evaluator(label_key=...) to the raw feature that holds the label"
        )
    column = batch.column(label_key)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    if not np.all(lengths == 1):
        bad = int(np.flatnonzero(lengths != 1)[0])
        raise UserInputError(
            f"an eval example has {lengths[bad]} values of the label {label_key!r} (example {bad} of a batch); "
            "each eval example needs exactly one label value"
        )
    values = pc.list_flatten(column)
    if class_names is None:
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            raise UserInputError(
                f"the label {label_key!r} holds text such as {_slice_value(values[0].as_py())!r}, not numbers; a "
                "regression model needs a numeric label (for classes, use head='classification')"
            )
        numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.all(np.isfinite(numbers)):
            raise UserInputError(f"an eval example's label {label_key!r} is NaN or infinite")
        return numbers
    text = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
    ids = pc.index_in(text, value_set=pa.array(list(class_names), pa.string()))
    if ids.null_count:
        unknown = text.filter(pc.is_null(ids))[0].as_py()
        raise UserInputError(
            f"label {unknown!r} is not one of the model's classes {list(class_names)}; check the "
            "Evaluator's label_key and the eval split's labels"
        )
    return ids.to_numpy(zero_copy_only=False).astype(np.int64)


def _slice_groups(batch, features: Sequence[str]) -> tuple[list[tuple], np.ndarray]:
    """The slices of one spec in a batch: their TFMA slice keys, and each example's slice index
    (-1: in none, as TFMA leaves out an example that lacks a slicing feature). A feature with
    several values in an example puts it in the slice of each value, as TFMA's slicer does."""
    import pyarrow.compute as pc

    rows = batch.num_rows
    if not features:
        return [()], np.zeros(rows, dtype=np.int64)
    names = sorted(features)
    codes = np.zeros(rows, dtype=np.int64)
    present = np.ones(rows, dtype=bool)
    dictionaries = []
    for name in names:
        if name not in batch.schema.names:
            return [], np.full(rows, -1, dtype=np.int64)
        column = batch.column(name)
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        if np.any(lengths > 1):
            return _multi_valued_groups(batch, names)
        present &= lengths == 1
        values = pc.list_flatten(column)
        encoded = pc.dictionary_encode(values)
        indices = np.full(rows, 0, dtype=np.int64)
        indices[lengths == 1] = encoded.indices.to_numpy(zero_copy_only=False)
        dictionary = [_slice_value(v) for v in encoded.dictionary.to_pylist()]
        codes = codes * max(len(dictionary), 1) + indices
        dictionaries.append(dictionary)
    used, inverse = np.unique(codes[present], return_inverse=True)
    keys = []
    for code in used:
        parts, rest = [], int(code)
        for name, dictionary in reversed(list(zip(names, dictionaries))):
            rest, index = divmod(rest, max(len(dictionary), 1))
            parts.append((name, dictionary[index]))
        keys.append(tuple(reversed(parts)))
    slice_of = np.full(rows, -1, dtype=np.int64)
    slice_of[present] = inverse
    return keys, slice_of


def _multi_valued_groups(batch, names: list[str]):
    """The rare case of a slicing feature with several values in an example: per example, the
    cross of its values; returned as (keys, [(slice index, example index)...]) pairs flattened
    into a 2-column array."""
    import itertools

    columns = [batch.column(name).to_pylist() for name in names]
    keys: list[tuple] = []
    index: dict[tuple, int] = {}
    pairs: list[tuple[int, int]] = []
    for row in range(batch.num_rows):
        choices = [sorted({_slice_value(v) for v in (column[row] or [])}) for column in columns]
        for combination in itertools.product(*choices):
            key = tuple(zip(names, combination))
            if key not in index:
                index[key] = len(keys)
                keys.append(key)
            pairs.append((index[key], row))
    return keys, np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _slice_value(value):
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _classification_terms(
    labels: np.ndarray, outputs: dict, model: str, vocabulary: list[str], class_names: list[str]
) -> dict[str, np.ndarray]:
    from components.evaluator.tfma_results import shared_class_order

    try:
        shared = shared_class_order(outputs, model or "candidate", vocabulary, class_names)
    except ValueError as error:
        raise UserInputError(str(error)) from None
    scores = np.asarray(shared["scores"], dtype=np.float64)
    # The class the model serves (its class_ids: the best score, or its decision threshold's).
    terms = {"true": labels, "predicted": np.asarray(shared["class_ids"]).reshape(-1)}
    if len(class_names) == 2:
        terms["scores"] = scores
    return terms


def _regression_output(outputs: dict, model: str) -> np.ndarray:
    prediction = outputs["outputs"] if "outputs" in outputs else next(iter(outputs.values()))
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(prediction)):
        raise UserInputError(
            f"the {model or 'candidate'} model predicted NaN or an infinite value; it cannot be evaluated"
        )
    return prediction


def _regression_terms(labels: np.ndarray, prediction: np.ndarray) -> dict[str, np.ndarray]:
    if len(labels) != len(prediction):
        raise UserInputError(
            f"{len(labels)} label(s) for {len(prediction)} prediction(s): each eval example needs "
            "exactly one label value and one prediction"
        )
    error = labels - prediction
    # Per example, in the order of metrics' sums: count, y, y^2, p, e, e^2, |e|.
    return {
        "sums": np.stack(
            [np.ones_like(labels), labels, labels * labels, prediction, error, error * error, np.abs(error)],
            axis=1,
        )
    }


def _per_slice(keys: list[tuple], slice_of: np.ndarray, terms: dict, class_names) -> Iterable:
    """(slice key, {accumulator name: array}) for each slice of one spec in a batch."""
    if slice_of.ndim == 2:  # multi-valued: (slice index, example index) pairs
        slice_index, rows = slice_of[:, 0], slice_of[:, 1]
    else:
        rows = np.flatnonzero(slice_of >= 0)
        slice_index = slice_of[rows]
    count = len(keys)
    if not count:
        return
    if class_names is None:
        sums = terms["sums"][rows]
        totals = np.stack(
            [np.bincount(slice_index, weights=sums[:, j], minlength=count) for j in range(sums.shape[1])],
            axis=1,
        )
        for i, key in enumerate(keys):
            arrays = {"sums": totals[i]}
            if key == ():
                arrays["residuals"] = ResidualGrid.of(sums[:, 3], sums[:, 4])
            yield key, arrays
        return
    n = len(class_names)
    cells = (slice_index * n + terms["true"][rows]) * n + terms["predicted"][rows]
    matrices = np.bincount(cells, minlength=count * n * n).reshape(count, n, n).astype(np.int64)
    histograms = None
    if "scores" in terms:
        scores = terms["scores"][rows]
        buckets = np.clip((scores * AUC_BUCKETS).astype(np.int64), 0, AUC_BUCKETS - 1)  # [rows, 2]
        is_class = terms["true"][rows][:, None] == np.arange(n)[None, :]  # [rows, 2]
        cell = ((slice_index[:, None] * n + np.arange(n)[None, :]) * 2 + is_class) * AUC_BUCKETS + buckets
        histograms = np.bincount(cell.reshape(-1), minlength=count * n * 2 * AUC_BUCKETS).reshape(
            count, n, 2, AUC_BUCKETS
        )
    for i, key in enumerate(keys):
        arrays = {"matrix": matrices[i]}
        if histograms is not None:
            arrays["histogram"] = histograms[i]
        yield key, arrays


def auc(histogram: np.ndarray) -> float:
    """ROC AUC from a [2, buckets] histogram of scores (row 0: examples not of the class, row 1:
    of it), sweeping the threshold down bucket by bucket, by trapezoids (a tie within a bucket
    counts half, as between equal scores)."""
    negatives, positives = histogram[0][::-1].astype(np.float64), histogram[1][::-1].astype(np.float64)
    if not positives.sum() or not negatives.sum():
        return float("nan")
    tpr = np.concatenate([[0.0], np.cumsum(positives) / positives.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(negatives) / negatives.sum()])
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def auc_precision_recall(histogram: np.ndarray) -> float:
    """The area under the precision-recall curve of a [2, buckets] histogram (see `auc`): the
    threshold swept down bucket by bucket, precision summed over each step in recall (average
    precision, as scikit-learn's `average_precision_score` computes it)."""
    negatives, positives = histogram[0][::-1].astype(np.float64), histogram[1][::-1].astype(np.float64)
    if not positives.sum():
        return float("nan")
    true, false = np.cumsum(positives), np.cumsum(negatives)
    taken = (true + false) > 0
    precision = np.divide(true, true + false, out=np.ones_like(true), where=taken)
    recall = true / positives.sum()
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def slice_metrics(accumulator: Accumulator, class_names: Sequence[str] | None, baseline: str | None):
    """[(TFMA slice key, {MetricKey: value})], the candidate's and the baseline's values and, with
    a baseline, the candidate's differences (`is_diff`), as TFMA's evaluator computes them."""
    from tensorflow_model_analysis.metrics import metric_types

    from components.evaluator import metrics

    result = []
    for slice_key, per_model in sorted(accumulator.state.items(), key=lambda kv: _sortable(kv[0])):
        values = {}
        for model, arrays in per_model.items():
            for (name, class_id), value in _derive(arrays, class_names, metrics).items():
                sub_key = metric_types.SubKey(class_id=class_id) if class_id is not None else None
                key = metric_types.MetricKey(
                    name=name, model_name=model, sub_key=sub_key, example_weighted=False
                )
                values[key] = value
        if baseline is not None:
            for key, value in list(values.items()):
                if key.model_name != baseline:
                    base_key = key.make_baseline_key(baseline)
                    if base_key in values:
                        values[key.make_diff_key()] = value - values[base_key]
        result.append((slice_key, values))
    return result


def _sortable(slice_key: tuple) -> tuple:
    return tuple((name, str(value)) for name, value in slice_key)


def _derive(arrays: dict, class_names, metrics) -> dict[tuple[str, int | None], float]:
    if class_names is None:
        sums = arrays["sums"]
        return {
            (name, None): getattr(metrics, class_name).derive(sums)
            for name, class_name in metrics.REGRESSION_METRICS.items()
        }
    matrix = arrays["matrix"]
    derived: dict[tuple[str, int | None], float] = {
        ("example_count", None): metrics.LabeledExampleCount.derive(matrix, None),
        ("accuracy", None): metrics.MulticlassAccuracy.derive(matrix, None),
        ("macro_f1", None): metrics.MacroF1.derive(matrix, None),
    }
    for class_id in range(len(class_names)):
        derived["precision", class_id] = metrics.ClassPrecision.derive(matrix, class_id)
        derived["recall", class_id] = metrics.ClassRecall.derive(matrix, class_id)
        derived["f1", class_id] = metrics.ClassF1.derive(matrix, class_id)
        if "histogram" in arrays:
            derived["auc", class_id] = auc(arrays["histogram"][class_id])
            derived["auc_precision_recall", class_id] = auc_precision_recall(arrays["histogram"][class_id])
    return derived


def trivial_metrics(
    accumulator: Accumulator, class_names: Sequence[str] | None, model: str
) -> tuple[dict[str, float], str]:
    """The whole split's metrics of the trivial baseline, the best constant guess on the same
    examples (classification: always the most frequent class; regression: always the mean
    label), from `model`'s counts, and the guess in words. Their mean absolute error is not
    known from the sums (NaN); a constant scores an AUC of 0.5. ({}, "") without the whole split."""
    from components.evaluator import metrics

    arrays = accumulator.state.get((), {}).get(model)
    if arrays is None:
        return {}, ""
    if class_names is None:
        n, y, yy = (float(arrays["sums"][i]) for i in (metrics.N, metrics.Y, metrics.YY))
        squares = max(yy - y * y / n, 0.0) if n else 0.0
        sums = np.array([n, y, yy, y, 0.0, squares, np.nan])
        derived = _derive({"sums": sums}, None, metrics)
        guess = f"always the mean label, {y / n:.4g}" if n else "no example"
    else:
        matrix = arrays["matrix"]
        majority = int(np.argmax(matrix.sum(axis=1)))
        constant = np.zeros_like(matrix)
        constant[:, majority] = matrix.sum(axis=1)
        derived = _derive({"matrix": constant}, class_names, metrics)
        if len(class_names) == 2:
            shares = matrix.sum(axis=1) / max(matrix.sum(), 1)  # a constant's precision at every recall
            derived.update({("auc", i): 0.5 for i in range(2)})
            derived.update({("auc_precision_recall", i): float(shares[i]) for i in range(2)})
        guess = f"always {class_names[majority]!r}"
    named = {
        name if class_id is None else f"{name}/{list(class_names or ())[class_id]}": float(value)
        for (name, class_id), value in derived.items()
    }
    return named, guess


def write_results(output_path: str, config, accumulator: Accumulator, task: Task, data_location: str) -> None:
    """TFMA's files in `output_path`: eval_config.json, metrics, validations (and empty plots and
    attributions), from TFMA's own converters and threshold checks."""
    from tensorflow_model_analysis.evaluators import metrics_validator
    from tensorflow_model_analysis.writers import eval_config_writer
    from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer

    from components.io.tfrecord import frame

    baseline = next((m.name for m in config.model_specs if m.is_baseline), None)
    sliced = slice_metrics(accumulator, task.class_names, baseline)
    combine = writer.CombineValidations(config)
    validation = None
    for entry in sliced:
        validation = combine.add_input(validation, metrics_validator.validate_metrics(entry, config))
    validation = combine.extract_output(validation)
    protos = [writer.convert_slice_metrics_to_proto(entry, add_metrics_callbacks=None) for entry in sliced]
    os.makedirs(output_path, exist_ok=True)
    files = {
        "metrics-00000-of-00001.tfrecord": frame([p.SerializeToString() for p in protos]),
        "validations.tfrecord": frame([validation.SerializeToString()]),
        "plots-00000-of-00001.tfrecord": b"",
        "attributions-00000-of-00001.tfrecord": b"",
    }
    for name, data in files.items():
        with open(os.path.join(output_path, name), "wb") as f:
            f.write(data)
    run = eval_config_writer._serialize_eval_run(  # noqa: SLF001 - TFMA's own eval_config.json layout
        config, data_location, "tfrecords", dict(task.model_dirs)
    )
    with open(os.path.join(output_path, "eval_config.json"), "w") as f:
        f.write(run)


def evaluate(files: list[str], task: Task, batch_size: int = BATCH_SIZE, progress=None) -> Accumulator:
    """Every record of the gzipped TFRecord `files`, in this process."""
    from components.io.example_batches import read_shard

    evaluator = BatchEvaluator(task)
    total = Accumulator()
    done = 0
    for path in files:
        for records in read_shard(path, batch_size):
            total.merge(evaluator(records))
            done += len(records)
            if progress is not None:
                progress(done)
    return total


def evaluate_with_beam(pipeline, files: list[str], task: Task, batch_size: int = BATCH_SIZE) -> Accumulator:
    """The same as `evaluate`, as a Beam pipeline (for another runner): one element per batch of
    records, the accumulators merged by a CombineFn; the result comes back through a file."""
    import pickle
    import shutil
    import tempfile

    from components.io.example_batches import read_shard

    out = tempfile.mkdtemp(prefix="evaluation-")
    with pipeline as p:
        _ = (
            p
            | "Shards" >> beam.Create(files)
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.FlatMap(read_shard, batch_size)
            | "Evaluate" >> beam.ParDo(_EvaluateBatches(task))
            | "Merge" >> beam.CombineGlobally(_MergeAccumulators())
            | "Serialize" >> beam.Map(pickle.dumps)
            | "Write" >> beam.io.WriteToText(os.path.join(out, "accumulator"), coder=beam.coders.BytesCoder())
        )
    try:
        [path] = [os.path.join(out, f) for f in os.listdir(out) if f.startswith("accumulator")]
        with open(path, "rb") as f:
            data = f.read()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return pickle.loads(data[:-1] if data.endswith(b"\n") else data)


class _EvaluateBatches(beam.DoFn):
    def __init__(self, task: Task):
        self.task = task

    def setup(self):
        self.evaluator = BatchEvaluator(self.task)

    def process(self, records):
        yield self.evaluator(records)


class _MergeAccumulators(beam.CombineFn):
    def create_accumulator(self):
        return Accumulator()

    def add_input(self, total, accumulator):
        return total.merge(accumulator)

    def merge_accumulators(self, accumulators):
        total = Accumulator()
        for accumulator in accumulators:
            total.merge(accumulator)
        return total

    def extract_output(self, total):
        return total
