"""The batched evaluation against a straightforward reference: a few thousand examples through a
small real SavedModel (a classifier and a regressor over one feature), metrics per slice computed
here with plain numpy, example by example; the in-process and the Beam paths give the same files;
TFMA's own readers read them and its validation decides as the thresholds say."""

import os

import numpy as np
import pytest

from components.evaluator import batched
from components.evaluator.tfma_results import Threshold, eval_config

CLASSES = ["high", "low"]
ROWS = 3000


def _data(seed: int = 7):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, ROWS)
    group = rng.choice(["a", "b", "c", ""], ROWS)  # "" : the example has no `group`
    noisy = x + rng.normal(0, 0.7, ROWS)
    label = np.where(noisy > 0, "high", "low")
    price = 3 * x + 10 + rng.normal(0, 0.5, ROWS)
    return x, group, label, price


def _records(x, group, label, price) -> list[bytes]:
    import tensorflow as tf

    records = []
    for xi, gi, li, pi in zip(x, group, label, price):
        feature = {
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[xi])),
            "species": tf.train.Feature(bytes_list=tf.train.BytesList(value=[li.encode()])),
            "price": tf.train.Feature(float_list=tf.train.FloatList(value=[pi])),
        }
        if gi:
            feature["group"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[gi.encode()]))
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return records


def _save_model(path: str, kind: str, weight: float) -> str:
    """A SavedModel whose serving_default parses `examples`: scores [P(high), P(low)] in the
    vocabulary order ["high", "low"] = sigmoid(weight * x), or outputs = weight * x + 10."""
    import tensorflow as tf

    spec = {"x": tf.io.FixedLenFeature([1], tf.float32)}

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            x = tf.io.parse_example(examples, spec)["x"][:, 0]
            if kind == "classification":
                high = tf.sigmoid(weight * x)
                return {"scores": tf.stack([high, 1 - high], axis=1)}
            return {"outputs": weight * x + 10.0}

    model = Model()
    tf.saved_model.save(model, path, signatures={"serving_default": model.serve})
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from components.io.tfrecord import write_gzipped

    base = tmp_path_factory.mktemp("batched")
    x, group, label, price = _data()
    records = _records(x, group, label, price)
    files = []
    for i, part in enumerate(np.array_split(np.arange(ROWS), 3)):  # three shards
        files.append(str(base / f"data-{i}.gz"))
        write_gzipped(files[-1], [records[j] for j in part])
    models = {
        (kind, weight): _save_model(str(base / f"{kind}-{weight}"), kind, weight)
        for kind in ("classification", "regression")
        for weight in (3.0, 0.5)
    }
    return base, files, (x, group, label, price), models


def _task(models, kind, candidate, baseline=None, slices=((), ("group",))):
    names = {"": candidate} if baseline is None else {"candidate": candidate, "baseline": baseline}
    return batched.Task(
        label_key="species" if kind == "classification" else "price",
        signature_name="serving_default",
        slices=slices,
        model_dirs={n: models[kind, w] for n, w in names.items()},
        vocabularies={n: CLASSES for n in names} if kind == "classification" else {},
        class_names=tuple(CLASSES) if kind == "classification" else None,
    )


def _by_name(sliced):
    """{(slice, model, metric name[/class]): value} from slice_metrics' TFMA keys."""
    out = {}
    for slice_key, values in sliced:
        name = ", ".join(f"{k}={v}" for k, v in slice_key) or "Overall"
        for key, value in values.items():
            metric = key.name + (f"/{CLASSES[key.sub_key.class_id]}" if key.sub_key else "")
            out[name, ("change" if key.is_diff else key.model_name), metric] = value
    return out


def _reference_auc(scores, positive):
    """Exact ROC AUC: the share of (positive, negative) pairs ordered right, ties counting half."""
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_classification_metrics_per_slice_match_a_reference(setup):
    from sklearn.metrics import average_precision_score, f1_score

    _, files, (x, group, label, _), models = setup
    accumulator = batched.evaluate(files, _task(models, "classification", 3.0, 0.5), batch_size=700)
    got = _by_name(batched.slice_metrics(accumulator, CLASSES, "baseline"))
    truth = label == "high"
    for weight, model in ((3.0, "candidate"), (0.5, "baseline")):
        high = 1 / (1 + np.exp(-weight * x.astype(np.float32)))
        predicted_high = high > 1 - high
        for name, rows in [("Overall", np.ones(ROWS, bool))] + [(f"group={g}", group == g) for g in "abc"]:
            t, p = truth[rows], predicted_high[rows]
            assert got[name, model, "example_count"] == rows.sum()
            assert got[name, model, "accuracy"] == pytest.approx(np.mean(t == p), abs=1e-12)
            assert got[name, model, "precision/high"] == pytest.approx(np.mean(t[p]), abs=1e-12)
            assert got[name, model, "recall/low"] == pytest.approx(np.mean(~p[~t]), abs=1e-12)
            assert got[name, model, "auc/high"] == pytest.approx(_reference_auc(high[rows], t), abs=2e-3)
            # F1, macro-F1 and PR-AUC against scikit-learn's.
            truth_names, predicted_names = label[rows], np.where(p, "high", "low")
            for c in CLASSES:
                assert got[name, model, f"f1/{c}"] == pytest.approx(
                    f1_score(truth_names, predicted_names, pos_label=c), abs=1e-12
                )
            assert got[name, model, "macro_f1"] == pytest.approx(
                f1_score(truth_names, predicted_names, average="macro"), abs=1e-12
            )
            assert got[name, model, "auc_precision_recall/high"] == pytest.approx(
                average_precision_score(t, high[rows]), abs=5e-3
            )
            assert got[name, model, "auc_precision_recall/low"] == pytest.approx(
                average_precision_score(~t, 1 - high[rows]), abs=5e-3
            )
    assert not any(k[0] == "group=" for k in got)  # an example without the feature is in no slice
    diff = got["Overall", "change", "accuracy"]
    assert diff == pytest.approx(
        got["Overall", "candidate", "accuracy"] - got["Overall", "baseline", "accuracy"]
    )


def test_regression_metrics_per_slice_match_a_reference(setup):
    _, files, (x, group, _, price), models = setup
    accumulator = batched.evaluate(files, _task(models, "regression", 3.0), batch_size=1000)
    got = _by_name(batched.slice_metrics(accumulator, None, None))
    prediction = 3.0 * x.astype(np.float32) + 10.0
    label = price.astype(np.float32).astype(np.float64)
    for name, rows in [("Overall", np.ones(ROWS, bool)), ("group=b", group == "b")]:
        y, p = label[rows], prediction[rows].astype(np.float32).astype(np.float64)
        error = y - p
        expected = {
            "example_count": rows.sum(),
            "mean_squared_error": np.mean(error**2),
            "root_mean_squared_error": np.sqrt(np.mean(error**2)),
            "mean_absolute_error": np.mean(np.abs(error)),
            "mean_label": y.mean(),
            "mean_prediction": p.mean(),
            "r_squared": 1 - np.sum(error**2) / np.sum((y - y.mean()) ** 2),
        }
        for metric, value in expected.items():
            assert got[name, "", metric] == pytest.approx(value, rel=1e-9), (name, metric)


def test_the_trivial_baseline_is_the_best_constant_guess_on_the_same_examples(setup):
    """Classification: always the most frequent class (its share is the accuracy, its recall 1);
    regression: always the mean label (its RMSE is the labels' standard deviation, R^2 0)."""
    _, files, (_, _, label, price), models = setup
    accumulator = batched.evaluate(files, _task(models, "classification", 3.0))
    trivial, guess = batched.trivial_metrics(accumulator, CLASSES, "")
    most = max(CLASSES, key=lambda c: np.sum(label == c))
    other = next(c for c in CLASSES if c != most)
    assert guess == f"always {most!r}"
    assert trivial["accuracy"] == pytest.approx(np.mean(label == most), abs=1e-12)
    assert trivial[f"recall/{most}"] == 1.0 and trivial[f"recall/{other}"] == 0.0
    assert trivial["example_count"] == ROWS and trivial[f"auc/{most}"] == 0.5
    accumulator = batched.evaluate(files, _task(models, "regression", 3.0))
    trivial, guess = batched.trivial_metrics(accumulator, None, "")
    price = price.astype(np.float32).astype(np.float64)  # as the examples hold it
    assert guess == f"always the mean label, {price.mean():.4g}"
    assert trivial["root_mean_squared_error"] == pytest.approx(np.std(price), rel=1e-9)
    assert trivial["mean_prediction"] == pytest.approx(price.mean()) and trivial["r_squared"] == 0.0
    assert np.isnan(trivial["mean_absolute_error"])  # not known from the sums


def test_in_process_and_beam_write_the_same_files_that_tfma_reads_and_validates(setup):
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.utils import config_util

    base, files, _, models = setup
    task = _task(models, "classification", 0.5, 3.0)
    thresholds = [Threshold("accuracy", "value", 0.5), Threshold("accuracy", "change", 0.0)]
    config = eval_config("species", "serving_default", [(), ("group",)], CLASSES, thresholds, True)
    config = config_util.update_eval_config_with_defaults(config, has_baseline=True)
    outputs = {}
    for way in ("process", "beam"):
        if way == "process":
            accumulator = batched.evaluate(files, task)
        else:
            accumulator = batched.evaluate_with_beam(beam.Pipeline(), files, task)
        outputs[way] = str(base / f"out-{way}")
        batched.write_results(outputs[way], config, accumulator, task, "data")
    for name in ("metrics-00000-of-00001.tfrecord", "validations.tfrecord", "eval_config.json"):
        with (
            open(os.path.join(outputs["process"], name), "rb") as a,
            open(os.path.join(outputs["beam"], name), "rb") as b,
        ):
            assert a.read() == b.read(), name

    result = tfma.load_eval_result(outputs["process"])
    assert {tuple(s) for s, _ in result.slicing_metrics} == {
        (),
        (("group", "a"),),
        (("group", "b"),),
        (("group", "c"),),
    }
    validation = tfma.load_validation_result(outputs["process"])
    # The candidate (weight 0.5) ranks as the baseline (3.0) does but is less sure; both have the
    # same accuracy, so the change threshold (>= 0) passes and the value one too.
    assert validation.validation_ok, validation
    failing = eval_config(
        "species", "serving_default", [()], CLASSES, [Threshold("accuracy", "value", 0.99)], True
    )
    failing = config_util.update_eval_config_with_defaults(failing, has_baseline=True)
    batched.write_results(str(base / "out-failing"), failing, accumulator, task, "data")
    validation = tfma.load_validation_result(str(base / "out-failing"))
    assert not validation.validation_ok
    [failure] = validation.metric_validations_per_slice[0].failures
    assert failure.metric_key.name == "accuracy" and failure.metric_key.model_name == "candidate"


def test_a_label_outside_the_classes_or_missing_is_named(setup):
    from pipeline.errors import UserInputError

    _, files, _, models = setup
    task = _task(models, "classification", 3.0)
    wrong = batched.Task(
        **{**task.__dict__, "class_names": ("high", "medium"), "vocabularies": {"": ["high", "medium"]}}
    )
    with pytest.raises(
        UserInputError, match=r"label 'low' is not one of the model's classes \['high', 'medium'\]"
    ):
        batched.evaluate(files, wrong)
    missing = batched.Task(**{**task.__dict__, "label_key": "kind"})
    with pytest.raises(UserInputError, match=r"the eval examples have no feature 'kind'"):
        batched.evaluate(files, missing)
    text = batched.Task(**{**_task(models, "regression", 3.0).__dict__, "label_key": "species"})
    with pytest.raises(
        UserInputError, match=r"the label 'species' holds text such as '(high|low)', not numbers"
    ):
        batched.evaluate(files, text)


def test_the_predicted_class_is_the_one_the_model_serves_at_its_decision_threshold():
    """A model with a decision threshold serves Yes at a score of 0.4; the Evaluator's
    precision, recall and accuracy count what it serves, not the argmax of its scores."""
    import numpy as np

    from components.evaluator.batched import _classification_terms

    outputs = {
        "scores": np.array([[0.6, 0.4], [0.8, 0.2], [0.3, 0.7]]),
        "class_ids": np.array([1, 0, 1]),
        "classes": np.array([b"Yes", b"No", b"Yes"]),
    }
    terms = _classification_terms(np.array([1, 0, 1]), outputs, "", ["No", "Yes"], ["No", "Yes"])
    assert terms["predicted"].tolist() == [1, 0, 1]
    assert np.argmax(terms["scores"], axis=-1).tolist() == [0, 0, 1]


def test_the_pages_roc_and_precision_recall_curves_match_scikit_learn(setup):
    """The curves drawn from the score histogram: each point is the rates at one bucket's lower
    edge, counted example by example, and the areas under them are scikit-learn's."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from components.evaluator.page import curve_points

    _, files, (x, _, label, _), models = setup
    accumulator = batched.evaluate(files, _task(models, "classification", 3.0, slices=((),)))
    histogram = accumulator.state[()][""]["histogram"][1]  # class "low"
    fpr, tpr, precision, recall = (np.array(v) for v in curve_points(histogram))
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(tpr) >= 0)
    low = (1 - 1 / (1 + np.exp(-3.0 * x.astype(np.float32)))).astype(np.float32)
    truth = label == "low"
    buckets = np.clip((low.astype(np.float64) * batched.AUC_BUCKETS).astype(int), 0, batched.AUC_BUCKETS - 1)
    used = np.unique(buckets)[::-1]  # thresholds from the top, as the curve sweeps them
    expected_tpr = [np.mean(buckets[truth] >= b) for b in used]
    expected_fpr = [np.mean(buckets[~truth] >= b) for b in used]
    assert tpr[1:] == pytest.approx(expected_tpr) and fpr[1:] == pytest.approx(expected_fpr)
    taken = [np.mean(truth[buckets >= b]) for b in used]
    assert precision[1:] == pytest.approx(taken)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(roc_auc_score(truth, low), abs=2e-3)
    average_precision = np.sum(np.diff(recall) * precision[1:])
    assert average_precision == pytest.approx(average_precision_score(truth, low), abs=5e-3)


def test_the_residual_grid_counts_each_example_once_and_merges_exactly_however_batched(setup):
    """The grid is the same for one batch, many batches, and merges in any order, and is
    numpy's histogram2d on its own edges; two grids of very different scales merge into one
    that holds both."""
    _, files, (x, _, _, price), models = setup
    grids = [
        batched.evaluate(files, _task(models, "regression", 3.0, slices=((),)), batch_size=size).state[()][
            ""
        ]["residuals"]
        for size in (3000, 170)
    ]
    assert np.array_equal(grids[0].counts, grids[1].counts) and grids[0].counts.sum() == ROWS
    assert grids[0].shifts == grids[1].shifts and grids[0].origins == grids[1].origins
    prediction = (3.0 * x.astype(np.float32) + 10.0).astype(np.float32).astype(np.float64)
    residual = price.astype(np.float32).astype(np.float64) - prediction
    expected, _, _ = np.histogram2d(prediction, residual, bins=[grids[0].edges(0), grids[0].edges(1)])
    assert np.array_equal(grids[0].counts, expected.astype(np.int64))
    assert grids[0].edges(0)[0] <= prediction.min() and prediction.max() < grids[0].edges(0)[-1]
    rng = np.random.default_rng(1)
    parts = [
        (rng.normal(0, 1e-3, 50), rng.normal(0, 1e-3, 50)),
        (rng.normal(1e6, 1e5, 50), rng.normal(0, 1e4, 50)),
    ]
    small, large = (batched.ResidualGrid.of(*part) for part in parts)
    one_way, other_way = small.copy(), large.copy()
    one_way += large
    other_way += small
    whole = batched.ResidualGrid.of(*(np.concatenate(axis) for axis in zip(*parts)))
    for merged in (one_way, other_way):
        assert merged.counts.sum() == 100 and np.array_equal(merged.counts, whole.counts)
        assert merged.shifts == whole.shifts and merged.origins == whole.origins


def test_the_evaluation_page_draws_curves_a_confusion_heatmap_and_residuals(setup, tmp_path):
    """The page as the Evaluator writes it, from accumulators of the batched evaluation: SVG
    only, counts written in the heatmap, markup in a class name escaped."""
    from components.evaluator.page import write_page
    from components.evaluator.tfma_results import CANDIDATE, OVERALL, Results

    _, files, _, models = setup
    accumulator = batched.evaluate(files, _task(models, "classification", 3.0, slices=((),)))
    arrays = accumulator.state[()][""]
    model = type("M", (), {"id": 7, "uri": "/root/p/Trainer/model/9"})()
    results = Results(
        metrics={(OVERALL, CANDIDATE): {"accuracy": 0.9}}, verdicts=[], validation_ok=True, sliced_by=set()
    )
    names = ["<b>high</b>", "low"]
    page_path = tmp_path / "evaluation.html"
    write_page(
        str(page_path),
        results,
        model,
        None,
        names,
        "accuracy 0.9",
        confusion=arrays["matrix"],
        scores={"positive": "low", "histograms": {CANDIDATE: arrays["histogram"][1]}},
    )
    page = page_path.read_text()
    assert "png" not in page and page.count("<svg") == 5  # two bar charts, heatmap, ROC, PR
    assert "<b>high</b>" not in page and "&lt;b&gt;high&lt;/b&gt;" in page
    matrix = arrays["matrix"]
    for count in matrix.reshape(-1):
        assert f">{int(count)}</text>" in page
    assert "Curves for the positive class, low" in page and "Evaluation of model 7" in page
    assert "Model 7 is its ML Metadata artifact id" in page and "/root/p/Trainer/model/9" in page

    accumulator = batched.evaluate(files, _task(models, "regression", 3.0, slices=((),)))
    regression = Results(
        metrics={(OVERALL, CANDIDATE): {"root_mean_squared_error": 0.5}},
        verdicts=[],
        validation_ok=True,
        sliced_by=set(),
    )
    write_page(
        str(page_path),
        regression,
        model,
        None,
        None,
        "rmse 0.5",
        residuals=accumulator.state[()][""]["residuals"],
    )
    page = page_path.read_text()
    assert "Residuals (whole split)" in page and page.count("<svg") == 3
