"""The Evaluator's TFMA side: the EvalConfig (metrics, slices, thresholds), the class order shared
by candidate and baseline, and reading TFMA's results back.

The evaluation itself runs batch by batch (`batched`) and writes TFMA's files with TFMA's own
converters and threshold checks; this module defines what it computes and reads what it wrote
with TFMA's readers (`tfma.load_metrics`, `tfma.load_validation_result`).

Class order: a model's `serving_default` returns `scores` in its label vocabulary's order (and
optionally `classes`, the predicted class name per example, and `class_ids`). `shared_class_order`
moves `scores` and `class_ids` into one shared class order (`shared_class_names`: the candidate's
class-id order, then any class only the baseline has), so `classId:k` in TFMA's result files is
the candidate's `class_ids` k, and the same class for the baseline even if its vocabulary is
ordered differently; it also checks `classes` against the vocabulary, so a wrong vocabulary fails
loudly instead of corrupting metrics. The evaluation records the order as its `class_names`.

Metric names, as the Evaluator's parameters and reports use them. Classification:
`example_count`, `accuracy`, `macro_f1`, `precision/<class>`, `recall/<class>`, `f1/<class>` (the
predicted class is the one with the highest score; see `metrics`) and, for two-class models,
`auc/<class>` and `auc_precision_recall/<class>` (ROC and precision-recall curves of that class's
score). Regression
(`outputs`): `example_count`, `mean_squared_error`, `root_mean_squared_error`,
`mean_absolute_error`, `mean_label`, `mean_prediction`, `r_squared`. Throughout,
`class_names=None` means regression.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from components.evaluator.component import REGRESSION_METRICS
from pipeline.artifacts import SERVING_DIR
from pipeline.errors import UserInputError

CANDIDATE, BASELINE = "candidate", "baseline"
# The trivial baseline's name in `Results.metrics`: the best constant guess (see `batched.trivial_metrics`).
TRIVIAL = "trivial"
OVERALL = "Overall"


LOWER_IS_BETTER = frozenset({"mean_squared_error", "root_mean_squared_error", "mean_absolute_error"})


@dataclass(frozen=True)
class Threshold:
    """One check on the overall slice: `metric` (an Evaluator metric name), `kind` "value" (the
    candidate's value must be at least `bound`, or at most for an error such as
    mean_squared_error), "change" (candidate minus baseline must be at least `bound`, or at most
    for an error) or "floor" (a value bound derived from the trivial baseline, which `note`
    describes; checked by the Evaluator itself, not by TFMA)."""

    metric: str
    kind: str
    bound: float
    note: str = ""

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def needs(self) -> str:
        bound = f"{self.bound:.4f}" if self.kind == "floor" else f"{self.bound:g}"
        return f"{'<=' if self.lower_is_better else '>='} {bound}"


@dataclass
class Verdict:
    threshold: Threshold
    value: float
    passed: bool

    def line(self) -> str:
        t = self.threshold
        what = {"value": t.metric, "change": f"{t.metric} change vs baseline"}.get(
            t.kind, f"{t.metric} vs the trivial baseline ({t.note})"
        )
        return f"{'PASS' if self.passed else 'FAIL'} {what} = {self.value:.4f} (needs {t.needs()})"


@dataclass
class Results:
    """Metrics as `{(slice, model): {metric: value}}` (diffs under model "change"), the verdicts,
    TFMA's own decision, and the feature sets of the slices found (sorted tuples)."""

    metrics: dict[tuple[str, str], dict[str, float]]
    verdicts: list[Verdict]
    validation_ok: bool
    sliced_by: set[tuple[str, ...]]

    def value(self, metric: str, model: str = CANDIDATE, slice_name: str = OVERALL) -> float:
        return self.metrics.get((slice_name, model), {}).get(metric, math.nan)


def label_vocabulary(model_uri: str, vocabulary: str) -> list[str]:
    """The model's class names in class-id order: `Format-Serving/assets/<vocabulary>`, one per line
    (Transform's vocabulary, which the Trainer's classification head also names its classes by)."""
    assets = os.path.join(model_uri, SERVING_DIR, "assets")
    path = os.path.join(assets, vocabulary)
    if not os.path.isfile(path):
        found = sorted(os.listdir(assets)) if os.path.isdir(assets) else []
        raise UserInputError(
            f"the model at {model_uri} has no label vocabulary {SERVING_DIR}/assets/{vocabulary} "
            f"(assets: {', '.join(found) or 'none'}); set the Evaluator's label_vocabulary to the "
            "vocabulary file that names the model's classes in class-id order"
        )
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def shared_class_names(vocabularies: dict[str, list[str]]) -> list[str]:
    """The class order of an evaluation: the candidate's vocabulary (class-id order), then the
    classes only the baseline has, sorted."""
    names = list(vocabularies[CANDIDATE])
    extra = {c for v in vocabularies.values() for c in v} - set(names)
    return names + sorted(extra)


OUR_METRICS = "components.evaluator.metrics"


def per_class_metrics(class_names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Our per-class metric names -> (metric class, its module; "" for TFMA's own). Precision and
    recall come from the shared confusion matrix of `metrics`; AUC, for two-class models
    only, is TFMA's."""
    metrics = {
        "precision": ("ClassPrecision", OUR_METRICS),
        "recall": ("ClassRecall", OUR_METRICS),
        "f1": ("ClassF1", OUR_METRICS),
    }
    if len(class_names) == 2:
        metrics["auc"] = ("AUC", "")
        metrics["auc_precision_recall"] = ("AUCPrecisionRecall", "")
    return metrics


def metric_names(class_names: Sequence[str] | None) -> list[str]:
    """Every metric an evaluation reports, for a model with these classes (None: regression)."""
    if class_names is None:
        return list(REGRESSION_METRICS)
    per_class = per_class_metrics(class_names)
    return ["example_count", "accuracy", "macro_f1", *(f"{m}/{c}" for m in per_class for c in class_names)]


def eval_config(
    label_key: str,
    signature_name: str,
    slices: Sequence[Sequence[str]],
    class_names: Sequence[str] | None,
    thresholds: Sequence[Threshold],
    with_baseline: bool,
):
    """TFMA's EvalConfig: one or two models, the slices, the metrics (per-class ones in one spec per
    class; for regression, one spec), and each threshold on its metric, for the overall slice only
    (a threshold on every small slice would bless or refuse by noise)."""
    from tensorflow_model_analysis.proto import config_pb2 as cfg

    models = [cfg.ModelSpec(name=CANDIDATE, signature_name=signature_name, label_key=label_key)]
    if with_baseline:
        models.append(
            cfg.ModelSpec(name=BASELINE, signature_name=signature_name, label_key=label_key, is_baseline=True)
        )
    checks = _metric_thresholds(thresholds, class_names)
    if class_names is None:
        from components.evaluator.metrics import REGRESSION_METRICS as CLASSES

        spec = cfg.MetricsSpec(
            metrics=[
                cfg.MetricConfig(
                    class_name=CLASSES[name], module=OUR_METRICS, per_slice_thresholds=checks.get(name, [])
                )
                for name in REGRESSION_METRICS
            ]
        )
        return cfg.EvalConfig(
            model_specs=models,
            slicing_specs=[cfg.SlicingSpec(feature_keys=list(s)) for s in slices],
            metrics_specs=[spec],
        )

    ours = json.dumps({"class_names": list(class_names)})[1:-1]

    def metric(class_name: str, name: str, module: str = ""):
        return cfg.MetricConfig(
            class_name=class_name,
            module=module,
            config=ours if module == OUR_METRICS else "",
            per_slice_thresholds=checks.get(name, []),
        )

    specs = [
        cfg.MetricsSpec(
            metrics=[
                metric("LabeledExampleCount", "example_count", OUR_METRICS),
                metric("MulticlassAccuracy", "accuracy", OUR_METRICS),
                metric("MacroF1", "macro_f1", OUR_METRICS),
            ]
        )
    ]
    for class_id, name in enumerate(class_names):
        specs.append(
            cfg.MetricsSpec(
                metrics=[
                    metric(metric_class, f"{key}/{name}", module)
                    for key, (metric_class, module) in per_class_metrics(class_names).items()
                ],
                binarize=cfg.BinarizationOptions(class_ids={"values": [class_id]}),
            )
        )
    return cfg.EvalConfig(
        model_specs=models,
        slicing_specs=[cfg.SlicingSpec(feature_keys=list(s)) for s in slices],
        metrics_specs=specs,
    )


def _metric_thresholds(thresholds: Sequence[Threshold], class_names: Sequence[str] | None) -> dict[str, list]:
    """Metric name -> [PerSliceMetricThreshold] on the overall slice.

    Thresholds go on the MetricConfig itself: TFMA 0.52 keys thresholds given in
    MetricsSpec.thresholds without `example_weighted`, so they never match the computed metrics and
    every one of them fails as "Metric not found"."""
    from tensorflow_model_analysis.proto import config_pb2 as cfg

    checks: dict[str, list] = {}
    for t in thresholds:
        parse_metric(t.metric, class_names)
        if t.kind == "value":
            bound = {"upper_bound" if t.lower_is_better else "lower_bound": {"value": t.bound}}
            check = cfg.MetricThreshold(value_threshold=cfg.GenericValueThreshold(**bound))
        else:
            direction = "LOWER_IS_BETTER" if t.lower_is_better else "HIGHER_IS_BETTER"
            check = cfg.MetricThreshold(
                change_threshold=cfg.GenericChangeThreshold(
                    absolute={"value": t.bound}, direction=cfg.MetricDirection.Value(direction)
                )
            )
        checks.setdefault(t.metric, []).append(
            cfg.PerSliceMetricThreshold(slicing_specs=[cfg.SlicingSpec()], threshold=check)
        )
    return checks


def parse_metric(metric: str, class_names: Sequence[str] | None) -> tuple[str, int | None]:
    """`recall/Gentoo` -> ("recall", class id of Gentoo); `accuracy` -> ("accuracy", None)."""
    known = metric_names(class_names)
    if metric not in known:
        kind = "regression" if class_names is None else "classification"
        raise UserInputError(
            f"Evaluator threshold on metric {metric!r}, which a {kind} model does not have; "
            f"metrics for this model: {', '.join(known)}"
        )
    name, _, class_name = metric.partition("/")
    return name, (list(class_names or ()).index(class_name) if class_name else None)


def shared_class_order(outputs: dict, model: str, vocabulary: list[str], class_names: list[str]) -> dict:
    """One batch of a model's `serving_default` outputs (`scores` [batch, n] in `vocabulary` order,
    and optionally `class_ids` and `classes` [batch], which are checked against them) with `scores`
    and `class_ids` moved into `class_names` order and `all_classes` added. Raises ValueError when
    the outputs disagree with `vocabulary`."""
    if not isinstance(outputs, dict):  # TFMA unwraps a signature with a single output
        outputs = {"scores": outputs}
    if "scores" not in outputs:
        raise ValueError(
            f"{model} model: its signature returns {sorted(outputs)}, without scores; the Evaluator "
            "needs a classification signature with scores (and optionally classes and class_ids)"
        )
    scores = np.asarray(outputs["scores"])
    if "class_ids" in outputs:
        class_ids = np.asarray(outputs["class_ids"]).reshape(-1)
    else:  # a model that gives only scores (a TFX run_fn's export, say): the best class
        class_ids = np.argmax(scores, axis=-1)
    if "classes" in outputs:
        classes = np.array([_text(c) for c in np.asarray(outputs["classes"]).reshape(-1)])
    else:
        classes = np.array(vocabulary)[class_ids] if scores.shape[-1] == len(vocabulary) else np.array([])
    if scores.shape[-1] != len(vocabulary) or not np.array_equal(np.array(vocabulary)[class_ids], classes):
        raise ValueError(
            f"{model} model: its label vocabulary {vocabulary} does not match its outputs (scores for "
            f"{scores.shape[-1]} classes; class ids {class_ids[:5].tolist()} named {classes[:5].tolist()}); "
            "set the Evaluator's label_vocabulary to the vocabulary the model's head uses"
        )
    position = np.array([class_names.index(c) for c in vocabulary])
    reordered = np.zeros((scores.shape[0], len(class_names)), dtype=scores.dtype)
    reordered[:, position] = scores
    return {
        **outputs,
        "scores": reordered,
        "class_ids": position[class_ids],
        # Bytes, as TFXIO gives the string label: TFMA matches them with ==, so str would never match.
        "all_classes": np.tile(
            np.array([c.encode() for c in class_names], dtype=object), (scores.shape[0], 1)
        ),
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_results(
    output_path: str, class_names: Sequence[str] | None, thresholds: Sequence[Threshold]
) -> Results:
    """TFMA's metrics and validation from `output_path`, in the Evaluator's metric names."""
    import tensorflow_model_analysis as tfma

    metrics, sliced_by = _read_metrics(output_path, class_names)
    validation = tfma.load_validation_result(output_path)
    failed = {
        _failure_id(f) for per_slice in validation.metric_validations_per_slice for f in per_slice.failures
    }
    verdicts = []
    for t in thresholds:
        model = CANDIDATE if t.kind == "value" else "change"
        value = metrics.get((OVERALL, model), {}).get(t.metric, math.nan)
        name, class_id = parse_metric(t.metric, class_names)
        verdicts.append(Verdict(t, value, (name, class_id, t.kind == "change") not in failed))
    # With no threshold at all TFMA reports `missing_thresholds` and not ok; the Evaluator's
    # contract is that every model is then blessed.
    ok = validation.validation_ok or (not thresholds and validation.missing_thresholds)
    return Results(metrics, verdicts, ok, sliced_by)


def _read_metrics(output_path: str, class_names: Sequence[str] | None):
    """`{(slice, model): {metric: value}}` and the slices' feature sets."""
    import tensorflow_model_analysis as tfma

    metrics: dict[tuple[str, str], dict[str, float]] = {}
    sliced_by = set()
    for record in tfma.load_metrics(output_path):
        slice_name = _slice_name(record.slice_key)
        sliced_by.add(tuple(sorted(k.column for k in record.slice_key.single_slice_keys)))
        for entry in record.metric_keys_and_values:
            key = entry.key
            model = "change" if key.is_diff else (key.model_name or CANDIDATE)
            name = key.name
            if key.sub_key.HasField("class_id"):
                name = f"{name}/{list(class_names or ())[key.sub_key.class_id.value]}"
            metrics.setdefault((slice_name, model), {})[name] = entry.value.double_value.value
    return metrics, sliced_by


def _failure_id(failure) -> tuple[str, int | None, bool]:
    key = failure.metric_key
    class_id = key.sub_key.class_id.value if key.sub_key.HasField("class_id") else None
    return key.name, class_id, key.is_diff


def _slice_name(slice_key) -> str:
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind)
        parts.append(f"{single.column}={_text(value)}")
    return ", ".join(parts) or OVERALL
