"""The Evaluator and the Pusher on the penguin pipeline, with real TFMA, TensorFlow and Beam: a good
first model is blessed and pushed as version 1, a worse one is refused and leaves the serving
directory alone, a good one after it becomes version 2, an unchanged rerun pushes nothing, and the
smoke check refuses a model whose serving signature is broken."""

import collections
import json
import os
import re
import subprocess
import sys

import pytest

from components.evaluator.tfma_results import Threshold, eval_config, shared_class_order
from components.pusher.component import PusherParams, run_pusher
from pipeline import UserInputError
from pipeline.artifacts import Examples, Model, ModelBlessing, PushedModel
from pipeline.component import ExecutionContext
from tests.helpers import decode_examples, quiet_run, read_tfrecords

# One more mistake on the 38 eval examples than the baseline is tolerated, so that a second good
# model is blessed even when its training (not deterministic) lands one example lower.
TOLERANT = {"change_thresholds": {"accuracy": -0.05}}


def build_fn_ignoring_inputs(features, params):
    """A model that sees no feature: it learns the class prior and always predicts one class."""
    import keras
    import tensorflow as tf

    zeros = tf.zeros_like(features["bill_length_mm"])[:, tf.newaxis]
    return keras.layers.Dense(params["n_classes"])(zeros)


def penguin(destination, trainer=None, evaluator=None):
    """The penguin pipeline pushing to `destination`, with Trainer and Evaluator parameters overridden."""
    from penguin.pipeline import create_pipeline

    pipeline = create_pipeline()
    trainer = dict(trainer or {})
    if "build_fn" in trainer:
        trainer["module_file"] = None
    _override(pipeline.node("Trainer"), trainer)
    _override(pipeline.node("Evaluator"), {**TOLERANT, **(evaluator or {})})
    _override(pipeline.node("Pusher"), {"push_destination": destination})
    return pipeline


def _override(node, values):
    params = {f: getattr(node.params, f) for f in node.params.__dataclass_fields__}
    node.params = type(node.params)(**{**params, **values})


def versions(destination):
    model_dir = os.path.join(destination, "penguin")
    return sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []


def outputs(result, node_id, key):
    return result.step(node_id).outputs[key]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluator-root")


@pytest.fixture(scope="module")
def destination(tmp_path_factory):
    return str(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def first(root, destination):
    result = quiet_run(penguin(destination), root)
    assert result.ok, result.error
    return result


@pytest.fixture(scope="module")
def worse(root, destination, first):
    before = versions(destination)
    result = quiet_run(penguin(destination, trainer={"build_fn": build_fn_ignoring_inputs}), root)
    assert result.ok, result.error
    return result, before


@pytest.fixture(scope="module")
def second(root, destination, worse):
    result = quiet_run(penguin(destination, trainer={"random_seed": 1}), root)
    assert result.ok, result.error
    return result


def test_first_model_is_blessed_without_baseline_and_pushed_as_version_1(first, destination):
    model = outputs(first, "Trainer", "model")
    blessing = outputs(first, "Evaluator", "blessing")
    # TFX's keys, as custom properties (ModelBlessing declares no property, as in TFX).
    assert blessing.properties == {}
    assert {
        k: blessing.get(k) for k in ("blessed", "current_model", "current_model_id", "baseline_model_id")
    } == {
        "blessed": 1,
        "current_model": model.uri,
        "current_model_id": model.id,
        "baseline_model_id": 0,
    }
    assert os.listdir(blessing.uri) == ["BLESSED"]
    assert blessing.get("accuracy") >= 0.9 and blessing.get("example_count") == 38
    # The floor: the error of "always the most frequent class" cut by the 10% margin.
    majority = blessing.get("trivial_accuracy")
    eval_species = collections.Counter(
        row["species"][0]
        for row in decode_examples(read_tfrecords(outputs(first, "ExampleGen", "examples").split_uri("eval")))
    )
    [(most, count)] = eval_species.most_common(1)
    assert majority == count / 38
    assert blessing.get("reason").splitlines() == [
        "BLESSED: beats the trivial baseline; all 1 threshold(s) passed",
        "baseline: none (value thresholds only)",
        f"PASS accuracy = {blessing.get('accuracy'):.4f} (needs >= 0.9)",
        f"PASS accuracy vs the trivial baseline (always {most!r}: {majority:.4f}, 10% margin) = "
        f"{blessing.get('accuracy'):.4f} (needs >= {1 - 0.9 * (1 - majority):.4f})",
    ]
    assert blessing.get("headline") == (
        f"accuracy on 38 'eval' examples of span 2009, the newest of the window 2007-2009: "
        f"candidate {blessing.get('accuracy'):.4g}, trivial baseline {majority:.4g}"
    )
    assert any(blessing.get("headline") in line for line in first.log)
    # penguin has no test split: the evaluation says its eval split is the early-stopping one.
    assert any(
        "on split 'eval' of span 2009, the newest of the window 2007-2009 (the Trainer's early stopping also used it"
        in line
        for line in first.log
    )
    pushed = outputs(first, "Pusher", "pushed_model")
    version_dir = os.path.join(destination, "penguin", "1")
    assert pushed.properties == {}  # TFX's keys and value types, as custom properties
    assert {k: pushed.get(k) for k in ("pushed", "pushed_destination", "pushed_version")} == {
        "pushed": 1,
        "pushed_destination": version_dir,
        "pushed_version": "1",
    }
    assert versions(destination) == ["1"]
    assert {"saved_model.pb", "variables", "assets", "push_record.json"} <= set(os.listdir(version_dir))
    with open(os.path.join(version_dir, "push_record.json")) as f:
        assert json.load(f)["model_id"] == model.id
    assert any("pushed model" in line and "as version 1" in line for line in first.log)


def test_evaluation_page_shows_thresholds_slices_and_a_chart(first):
    evaluation = outputs(first, "Evaluator", "evaluation")
    assert evaluation.get("page") == "evaluation.html" and evaluation.get("evaluation_seconds") > 0
    assert {"eval_config.json", "validations.tfrecord"} <= set(os.listdir(evaluation.uri))
    page = open(os.path.join(evaluation.uri, "evaluation.html")).read()
    assert "BLESSED" in page and "<svg" in page and "png" not in page
    for text in (
        "island=Biscoe",
        "island=Dream",
        "island=Torgersen",
        "sex=female",
        "sex=male",
        "recall/Gentoo",
    ):
        assert text in page


def test_tfmas_class_ids_are_the_served_models_class_ids_and_name_the_pages_classes(first):
    """Per-class results read back with TFMA's own loader: `classId:k` is the class the model's
    `class_ids` call k (its label vocabulary, which is in frequency order, not alphabetical), and
    each value is the one the page shows under that class's name."""
    import tensorflow_model_analysis as tfma

    model = outputs(first, "Trainer", "model")
    evaluation = outputs(first, "Evaluator", "evaluation")
    with open(os.path.join(model.uri, "Format-Serving", "assets", "species")) as f:
        vocabulary = [line.strip() for line in f if line.strip()]
    assert json.loads(evaluation.get("class_names")) == vocabulary != sorted(vocabulary)
    page = open(os.path.join(evaluation.uri, "evaluation.html")).read()
    table = page[page.index("<h2>Metrics by slice</h2>") :]
    header = re.findall(r"<th>([^<]+)</th>", table)[1:]  # after "slice"
    overall = re.search(r"<tr><td>Overall</td>(.*?)</tr>", table).group(1)
    shown = dict(zip(header, re.findall(r"<td>([^<]+)", overall)))
    [record] = [r for r in tfma.load_metrics(evaluation.uri) if not r.slice_key.single_slice_keys]
    per_class = {}
    for entry in record.metric_keys_and_values:
        if entry.key.sub_key.HasField("class_id"):
            name = f"{entry.key.name}/{vocabulary[entry.key.sub_key.class_id.value]}"
            per_class[name] = entry.value.double_value.value
    assert {m.partition("/")[0] for m in per_class} == {"precision", "recall", "f1"}
    assert len(per_class) == 3 * len(vocabulary) == 9
    for name, value in per_class.items():
        assert shown[name] == f"{value:.4f}", name
    # The confusion matrix: a row per true class, in the same order, summing to the split.
    assert "Confusion matrix (whole split)" in page
    # The class ids the served model gives are those names, in that order.
    import tensorflow as tf

    examples = outputs(first, "ExampleGen", "examples")
    records = read_tfrecords(examples.split_uri("eval"))[:20]
    serve = tf.saved_model.load(os.path.join(model.uri, "Format-Serving")).signatures["serving_default"]
    result = serve(examples=tf.constant(records))
    ids = result["class_ids"].numpy().reshape(-1)
    classes = [c.decode() for c in result["classes"].numpy().reshape(-1)]
    assert [vocabulary[i] for i in ids] == classes


def test_string_labels_are_scored_against_the_models_class_names(worse):
    """The constant model's accuracy is exactly the share of its one class in the eval split: TFMA
    matched each string label to the right class id (not to the predicted name, as it would alone)."""
    result, _ = worse
    examples = outputs(result, "ExampleGen", "examples")
    labels = [row["species"][0] for row in decode_examples(read_tfrecords(examples.split_uri("eval")))]
    shares = {round(n / len(labels), 4) for n in collections.Counter(labels).values()}
    assert round(outputs(result, "Evaluator", "blessing").get("accuracy"), 4) in shares


def test_worse_model_is_not_blessed_against_the_baseline_and_the_destination_is_unchanged(
    first, worse, destination
):
    result, before = worse
    blessing = outputs(result, "Evaluator", "blessing")
    baseline = outputs(first, "Trainer", "model")
    assert blessing.get("blessed") == 0 and blessing.get("baseline_model_id") == baseline.id
    assert os.listdir(blessing.uri) == ["NOT_BLESSED"]
    assert blessing.get("baseline_accuracy") == outputs(first, "Evaluator", "blessing").get("accuracy")
    reason = blessing.get("reason").splitlines()
    assert reason[0].startswith("NOT BLESSED: ") and reason[0].endswith("; 2 of 2 threshold(s) failed")
    assert reason[1] == f"baseline: model {baseline.id}"
    assert reason[2].startswith("FAIL accuracy = 0.") and reason[2].endswith("(needs >= 0.9)")
    assert reason[3].startswith("FAIL accuracy change vs baseline = -0.")
    pushed = outputs(result, "Pusher", "pushed_model")
    assert pushed.get("pushed") == 0 and pushed.get("pushed_version") is None
    assert pushed.get("action") == "not_blessed"
    assert versions(destination) == before == ["1"]
    [line] = [line for line in result.log if "not pushed" in line]
    assert "is not blessed (FAIL accuracy = 0." in line and "left unchanged" in line


def test_good_model_after_a_refused_one_becomes_version_2(first, second, destination):
    blessing = outputs(second, "Evaluator", "blessing")
    assert blessing.get("blessed") == 1
    assert (
        blessing.get("baseline_model_id") == outputs(first, "Trainer", "model").id
    )  # the refused one is no baseline
    pushed = outputs(second, "Pusher", "pushed_model")
    assert pushed.pushed_version() == 2 and versions(destination) == ["1", "2"]
    assert pushed.get("pushed_destination") == os.path.join(destination, "penguin", "2")


def test_rerun_with_nothing_changed_pushes_nothing(root, destination, second):
    again = quiet_run(penguin(destination, trainer={"random_seed": 1}), root)
    assert again.ok, again.error
    assert again.step("Evaluator").status == "CACHED" and again.step("Pusher").status == "CACHED"
    assert versions(destination) == ["1", "2"]


def test_pusher_rerun_for_the_model_already_served_adds_no_version(root, destination, second):
    """A new evaluation of the same model (here: other slices) makes the Pusher run again; the latest
    version already holds this model, byte for byte, so nothing is copied."""
    slices = ((), ("islnd",))
    again = quiet_run(penguin(destination, trainer={"random_seed": 1}, evaluator={"slices": slices}), root)
    assert again.ok, again.error
    assert again.step("Evaluator").status == "COMPLETE" and again.step("Pusher").status == "COMPLETE"
    pushed = outputs(again, "Pusher", "pushed_model")
    assert pushed.get("action") == "already_pushed" and pushed.pushed_version() == 2
    assert versions(destination) == ["1", "2"]
    assert any("already served as version 2" in line for line in again.log)
    assert any("slice by islnd: no eval example has these features" in line for line in again.log)


def test_a_label_the_eval_examples_lack_is_named_before_tfma_starts(root, destination, second):
    again = quiet_run(penguin(destination, trainer={"random_seed": 1}, evaluator={"label_key": "kind"}), root)
    assert again.step("Evaluator").status == "FAILED"
    assert re.search(
        r"the eval examples have no feature 'kind', which Evaluator\(label_key=\.\.\.\) names as the label "
        r"\(features: .*species.*\); set Evaluator\(label_key=\.\.\.\) in the pipeline definition",
        str(again.error),
    )
    assert versions(destination) == ["1", "2"]


def test_pushed_model_answers_saved_model_cli_with_a_class_name(first, destination):
    example = (
        'examples=[{"island":["Biscoe"],"bill_length_mm":[50.0],"bill_depth_mm":[15.0],'
        '"flipper_length_mm":[220],"body_mass_g":[5500],"sex":["male"],"year":[2009]}]'
    )
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    done = subprocess.run(
        [cli, "run", "--dir", os.path.join(destination, "penguin", "1"), "--tag_set", "serve"]
        + ["--signature_def", "serving_default", "--input_examples", example],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Result for output key classes:\n[b'Gentoo']" in done.stdout


def _broken_model(path, kind):
    """A SavedModel whose serving_default raises when called, or does not take `examples`."""
    import tensorflow as tf

    class Broken(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def raises(self, examples):
            tf.debugging.assert_equal(tf.size(examples), -1, message="this model is broken on purpose")
            return {"scores": tf.zeros([tf.size(examples), 3])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def takes_numbers(self, numbers):
            return {"scores": tf.stack([numbers, numbers], axis=1)}

    module = Broken()
    signature = module.raises if kind == "raises" else module.takes_numbers
    tf.saved_model.save(
        module, os.path.join(path, "Format-Serving"), signatures={"serving_default": signature}
    )


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("raises", "this model is broken on purpose"),
        ("takes_numbers", "serving_default takes ['numbers'], not one string tensor 'examples'"),
    ],
)
def test_smoke_check_refuses_a_model_whose_signature_is_broken(tmp_path, first, kind, expected):
    _broken_model(str(tmp_path / "model"), kind)
    model = Model(str(tmp_path / "model"), id=10_000)
    blessing = ModelBlessing(
        str(tmp_path / "blessing"), id=10_001, custom_properties={"blessed": 1, "current_model_id": 10_000}
    )
    pushed = PushedModel(str(tmp_path / "pushed"))
    os.makedirs(pushed.uri)
    lines = []
    ctx = ExecutionContext("penguin", str(tmp_path), "Pusher", 1, "test-run", sink=lines.append)
    destination = str(tmp_path / "serving")
    examples = outputs(first, "ExampleGen", "examples")
    run_pusher(ctx, PusherParams(push_destination=destination), model, blessing, [examples], pushed)
    assert pushed.get("pushed") == 0 and pushed.get("pushed_version") is None
    assert pushed.get("action") == "smoke_check_failed" and expected in pushed.get("reason")
    assert not os.path.exists(os.path.join(destination, "penguin", "1"))
    [line] = lines
    assert line.startswith("not pushed: the smoke check of model 10000 failed:") and expected in line


def test_smoke_check_uses_the_process_started_ahead_and_an_unused_one_is_stopped(first):
    from components.pusher import component as pusher

    serving = os.path.join(outputs(first, "Trainer", "model").uri, "Format-Serving")
    eval_split = outputs(first, "ExampleGen", "examples").split_uri("eval")
    release = pusher.warm_up()
    [ahead] = pusher._WAITING
    passed, detail = pusher.smoke_check(serving, eval_split, "species", PusherParams())
    assert passed and "answered 8 raw examples" in detail, detail
    assert ahead.returncode == 0 and pusher._WAITING == []  # it answered, then exited
    release()  # used: nothing to undo
    release = pusher.warm_up()
    [unused] = pusher._WAITING
    release()
    assert unused.returncode is not None and pusher._WAITING == []


def test_a_foreign_version_folder_is_named_and_the_served_model_is_never_pushed_again(tmp_path, first):
    """`999/` written by hand: a warning naming it, and the push numbered after it; then the same
    model copied by hand as the highest version without our record: recognised by its content,
    nothing pushed over itself."""
    import shutil

    model = outputs(first, "Trainer", "model")
    blessing = ModelBlessing(
        str(tmp_path / "blessing"), id=10_001, custom_properties={"blessed": 1, "current_model_id": model.id}
    )
    examples = outputs(first, "ExampleGen", "examples")
    destination = str(tmp_path / "serving")
    os.makedirs(os.path.join(destination, "penguin", "999"))

    def push():
        pushed = PushedModel(str(tmp_path / f"pushed-{len(os.listdir(tmp_path))}"))
        os.makedirs(pushed.uri)
        lines = []
        ctx = ExecutionContext("penguin", str(tmp_path), "Pusher", 1, "test-run", sink=lines.append)
        run_pusher(ctx, PusherParams(push_destination=destination), model, blessing, [examples], pushed)
        return pushed, lines

    pushed, lines = push()
    assert lines[0] == (
        f"warning: {destination}/penguin/999 was not written by this Pusher (no push record): the next "
        "version is numbered after it, and TF Serving serves the highest; remove it if it is not yours"
    )
    assert pushed.get("pushed_version") == "1000"
    shutil.copytree(os.path.join(model.uri, "Format-Serving"), os.path.join(destination, "penguin", "1001"))
    again, lines = push()
    assert again.get("action") == "already_pushed" and again.get("pushed_version") == "1001", lines
    assert sorted(os.listdir(os.path.join(destination, "penguin"))) == ["1000", "1001", "999"]


def test_a_model_of_spans_older_than_the_served_ones_is_not_pushed_unless_asked(tmp_path):
    """A backfill of an old span trains a model of older data: blessed or not, it does not replace
    the served model of newer spans, and the run says so; push_older_spans lets it through."""
    import json

    model = Model(str(tmp_path / "model"), id=20, custom_properties={"spans": "[2007, 2008]"})
    os.makedirs(os.path.join(model.uri, "Format-Serving"))
    blessing = ModelBlessing(
        str(tmp_path / "blessing"), id=21, custom_properties={"blessed": 1, "current_model_id": 20}
    )
    served = tmp_path / "serving" / "penguin" / "3"
    os.makedirs(served)
    with open(served / "push_record.json", "w") as f:
        json.dump({"model_id": 9, "fingerprint": "elsewhere", "spans": [2007, 2008, 2009]}, f)

    def push(**params):
        pushed = PushedModel(str(tmp_path / f"pushed-{len(os.listdir(tmp_path))}"))
        os.makedirs(pushed.uri)
        ctx = ExecutionContext("penguin", str(tmp_path), "Pusher", 1, "test-run", sink=lambda line: None)
        destination = str(tmp_path / "serving")
        examples = Examples(str(tmp_path / "examples"), properties={"span": 2008})
        run_pusher(
            ctx, PusherParams(push_destination=destination, **params), model, blessing, [examples], pushed
        )
        return pushed, ctx

    pushed, ctx = push()
    assert pushed.get("pushed") == 0 and pushed.get("action") == "older_than_served"
    assert ctx.held_back == (
        "model 20 learned from spans up to 2008, older than the newest span of the served version 3 "
        "(2009); not pushed (run with --push-older-spans to replace the served model)"
    )
    assert os.listdir(served.parent) == ["3"]
    pushed, ctx = push(push_older_spans=True)  # let through: on to the smoke check (an empty model fails it)
    assert pushed.get("action") == "smoke_check_failed", pushed.custom_properties


def test_pusher_refuses_a_blessing_of_another_model(tmp_path):
    model = Model(str(tmp_path / "model"), id=7)
    blessing = ModelBlessing(
        str(tmp_path / "blessing"), id=9, custom_properties={"blessed": 1, "current_model_id": 8}
    )
    ctx = ExecutionContext("penguin", str(tmp_path), "Pusher", 1, "test-run")
    with pytest.raises(UserInputError, match=r"the blessing 9 is for model 8, not model 7; give the Pusher"):
        run_pusher(ctx, PusherParams(), model, blessing, None, PushedModel(str(tmp_path / "pushed")))


def test_class_order_is_shared_and_a_wrong_vocabulary_is_refused():
    import numpy as np

    outputs = {
        "classes": np.array([b"b", b"a"]),
        "class_ids": np.array([0, 1]),
        "scores": np.array([[0.7, 0.3], [0.2, 0.8]]),
    }
    shared = shared_class_order(outputs, "candidate", ["b", "a"], ["a", "b"])
    assert shared["scores"].tolist() == [[0.3, 0.7], [0.8, 0.2]]
    assert shared["class_ids"].tolist() == [1, 0]
    assert shared["all_classes"].tolist() == [[b"a", b"b"], [b"a", b"b"]]
    with pytest.raises(
        ValueError, match=r"candidate model: its label vocabulary \['a', 'b'\] does not match"
    ):
        shared_class_order(outputs, "candidate", ["a", "b"], ["a", "b"])


def test_threshold_on_an_unknown_metric_names_the_metrics_there_are():
    with pytest.raises(
        UserInputError,
        match=r"metric 'recall/Emperor', which a classification model does not have; metrics for this "
        r"model: .*recall/Gentoo",
    ):
        eval_config(
            "species",
            "serving_default",
            [()],
            ["Adelie", "Gentoo"],
            [Threshold("recall/Emperor", "value", 0.5)],
            False,
        )


def test_two_class_models_get_roc_and_precision_recall_auc_per_class():
    thresholds = [Threshold("auc/yes", "value", 0.8), Threshold("auc_precision_recall/yes", "value", 0.3)]
    config = eval_config("label", "serving_default", [()], ["no", "yes"], thresholds, False)
    per_class = [spec for spec in config.metrics_specs if spec.binarize.class_ids.values]
    assert [[m.class_name for m in spec.metrics] for spec in per_class] == [
        ["ClassPrecision", "ClassRecall", "ClassF1", "AUC", "AUCPrecisionRecall"]
    ] * 2
    [auc_yes] = [m for m in per_class[1].metrics if m.class_name == "AUC"]
    assert auc_yes.per_slice_thresholds[0].threshold.value_threshold.lower_bound.value == 0.8
    [pr_yes] = [m for m in per_class[1].metrics if m.class_name == "AUCPrecisionRecall"]
    assert pr_yes.per_slice_thresholds[0].threshold.value_threshold.lower_bound.value == 0.3
    overall = [m.class_name for m in config.metrics_specs[0].metrics]
    assert overall == ["LabeledExampleCount", "MulticlassAccuracy", "MacroF1"]


def test_metrics_from_the_confusion_matrix_match_counting_by_hand():
    import numpy as np
    from tensorflow_model_analysis.metrics import metric_types

    from components.evaluator.metrics import (
        ClassF1,
        ClassPrecision,
        ClassRecall,
        LabeledExampleCount,
        MacroF1,
        MulticlassAccuracy,
    )

    names = ["Adelie", "Chinstrap", "Gentoo"]
    truth, predicted = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]

    def element(label: int, guess: int, keyed: bool):
        scores = np.eye(3)[guess] * 0.8 + 0.05
        label_value, prediction = np.array([names[label].encode()]), {"scores": scores}
        if keyed:  # with a baseline, TFMA keys labels and predictions by model name
            label_value, prediction = {"candidate": label_value}, {"candidate": prediction, "baseline": {}}
        return metric_types.StandardMetricInputs(labels=label_value, predictions=prediction)

    def evaluate(metric, keyed: bool, sub_keys=None) -> dict:
        base, derived = metric.computations(model_names=["candidate"], sub_keys=sub_keys)
        combiner = base.combiner
        halves = [combiner.create_accumulator(), combiner.create_accumulator()]
        for i, (t, p) in enumerate(zip(truth, predicted)):
            halves[i % 2] = combiner.add_input(halves[i % 2], element(t, p, keyed))
        matrix = combiner.extract_output(combiner.merge_accumulators(halves))
        return {
            (k.name, k.sub_key.class_id if k.sub_key else None): v for k, v in derived.result(matrix).items()
        }

    by_class = [metric_types.SubKey(class_id=i) for i in range(3)]
    for keyed in (False, True):
        assert evaluate(LabeledExampleCount(names), keyed) == {("example_count", None): 6.0}
        assert evaluate(MulticlassAccuracy(names), keyed) == {("accuracy", None): 4 / 6}
        assert evaluate(ClassPrecision(names), keyed, by_class) == {
            ("precision", 0): 1 / 2,
            ("precision", 1): 1 / 2,
            ("precision", 2): 2 / 2,
        }
        assert evaluate(ClassRecall(names), keyed, by_class) == {
            ("recall", 0): 1 / 2,
            ("recall", 1): 1 / 1,
            ("recall", 2): 2 / 3,
        }
        f1 = evaluate(ClassF1(names), keyed, by_class)
        assert f1 == pytest.approx({("f1", 0): 0.5, ("f1", 1): 2 / 3, ("f1", 2): 0.8})
        assert evaluate(MacroF1(names), keyed) == pytest.approx({("macro_f1", None): (0.5 + 2 / 3 + 0.8) / 3})
    [base, _] = MulticlassAccuracy(names).computations(model_names=["candidate"])
    with pytest.raises(
        ValueError,
        match=r"label 'Emperor' is not one of the model's classes \['Adelie', 'Chinstrap', 'Gentoo'\]",
    ):
        base.combiner.add_input(
            base.combiner.create_accumulator(),
            metric_types.StandardMetricInputs(
                labels=np.array([b"Emperor"]), predictions={"scores": np.ones(3)}
            ),
        )


def test_regression_metrics_match_a_reference_computation():
    import numpy as np
    from tensorflow_model_analysis.metrics import metric_types

    from components.evaluator import metrics

    rng = np.random.default_rng(0)
    labels = rng.normal(50, 10, 3000)
    predictions = labels + rng.normal(0, 3, 3000)
    error = labels - predictions
    reference = {
        "example_count": 3000.0,
        "mean_squared_error": np.mean(error**2),
        "root_mean_squared_error": np.sqrt(np.mean(error**2)),
        "mean_absolute_error": np.mean(np.abs(error)),
        "mean_label": labels.mean(),
        "mean_prediction": predictions.mean(),
        "r_squared": 1 - np.sum(error**2) / np.sum((labels - labels.mean()) ** 2),
    }
    for name, class_name in metrics.REGRESSION_METRICS.items():
        base, derived = getattr(metrics, class_name)().computations(model_names=["candidate"])
        combiner = base.combiner
        parts = [combiner.create_accumulator() for _ in range(3)]
        for i in range(0, 3000, 100):  # batches of 100, spread over three accumulators and merged
            element = metric_types.StandardMetricInputs(
                labels=labels[i : i + 100], predictions={"outputs": predictions[i : i + 100]}
            )
            parts[i % 3] = combiner.add_input(parts[i % 3], element)
        [(key, value)] = derived.result(combiner.extract_output(combiner.merge_accumulators(parts))).items()
        assert key.name == name and value == pytest.approx(reference[name], rel=1e-9)


def test_regression_labels_must_be_numbers_that_every_example_has():
    import numpy as np
    from tensorflow_model_analysis.metrics import metric_types

    from components.evaluator.metrics import MeanSquaredError

    [base, _] = MeanSquaredError().computations(model_names=["candidate"])
    for label, expected in [
        (np.array([b"high"]), r"the label holds text such as \[b'high'\], not numbers"),
        (None, r"an eval example has no label"),
        (np.array([1.0, 2.0]), r"2 label\(s\) for 1 prediction\(s\)"),
    ]:
        with pytest.raises(ValueError, match=expected):
            base.combiner.add_input(
                base.combiner.create_accumulator(),
                metric_types.StandardMetricInputs(labels=label, predictions={"outputs": np.array([1.0])}),
            )


def test_error_thresholds_point_down_and_say_so():
    config = eval_config(
        "price",
        "serving_default",
        [()],
        None,
        [
            Threshold("root_mean_squared_error", "value", 5.0),
            Threshold("root_mean_squared_error", "change", 0.0),
            Threshold("r_squared", "value", 0.8),
        ],
        True,
    )
    [spec] = config.metrics_specs
    by_name = {m.class_name: list(m.per_slice_thresholds) for m in spec.metrics}
    value, change = (t.threshold for t in by_name["RootMeanSquaredError"])
    assert value.value_threshold.upper_bound.value == 5.0 and not value.value_threshold.HasField(
        "lower_bound"
    )
    from tensorflow_model_analysis.proto import config_pb2

    assert config_pb2.MetricDirection.Name(change.change_threshold.direction) == "LOWER_IS_BETTER"
    assert by_name["RSquared"][0].threshold.value_threshold.lower_bound.value == 0.8
    assert Threshold("mean_absolute_error", "value", 2).needs() == "<= 2"
    with pytest.raises(UserInputError, match=r"metric 'accuracy', which a regression model does not have"):
        eval_config("price", "serving_default", [()], None, [Threshold("accuracy", "value", 0.5)], False)


def test_parameters_that_would_not_be_honoured_are_refused_when_the_pipeline_is_defined():
    from components.evaluator.component import Evaluator
    from components.trainer.component import Trainer
    from pipeline import DefinitionError

    with pytest.raises(DefinitionError, match=r"smoke_examples must be at least 1, got 0"):
        PusherParams(smoke_examples=0)
    with pytest.raises(DefinitionError, match=r"model_name 'my model' becomes a folder name"):
        PusherParams(model_name="my model")
    with pytest.raises(DefinitionError, match=r"Trainer: give label_key, the name of the label"):
        Trainer(module_file="model.py")
    with pytest.raises(DefinitionError, match=r"names unknown metric 'rmse'; classification: .*regression: "):
        Evaluator(value_thresholds={"rmse": 1.0})


def test_a_threshold_on_a_metric_the_model_will_not_produce_is_refused_at_definition(tmp_path):
    """The task is known from the Evaluator's `task`, or from the Trainer's head when a build_fn
    is the model; a model_fn decides its own outputs, so its thresholds wait for the model."""
    from penguin.pipeline import create_pipeline
    from pipeline import DefinitionError

    pipeline = create_pipeline()
    pipeline.override(value_thresholds={"root_mean_squared_error": 1.0})
    with pytest.raises(
        DefinitionError,
        match=r"Evaluator: value_thresholds names 'root_mean_squared_error', which a classification model "
        r"\(Trainer's head\) does not produce; it produces: example_count, accuracy, macro_f1, precision/<class>",
    ):
        pipeline.validate()
    pipeline.override(value_thresholds={"auc": 0.5})  # per class only
    with pytest.raises(DefinitionError, match=r"names 'auc', which a classification model"):
        pipeline.validate()
    pipeline.override(value_thresholds={"recall/Adelie": 0.5, "accuracy": 0.5})
    pipeline.validate()
    pipeline.override(value_thresholds={"accuracy": 0.5}, task="regression")
    with pytest.raises(
        DefinitionError, match=r"names 'accuracy', which a regression model \(Evaluator's task\)"
    ):
        pipeline.validate()
    module = tmp_path / "model.py"
    module.write_text("def model_fn(features, labels, mode, params):\n    raise NotImplementedError\n")
    pipeline = create_pipeline()
    pipeline.override(module_file=str(module), value_thresholds={"root_mean_squared_error": 1.0})
    pipeline.validate()

    # From the command line: exit 2 and the list, before any step runs.
    path = tmp_path / "pipeline.py"
    path.write_text(
        "from penguin.pipeline import create_pipeline as penguin\n\n"
        "def create_pipeline():\n"
        "    pipeline = penguin()\n"
        "    pipeline.override(change_thresholds={'mean_absolute_error': 0.0})\n"
        "    return pipeline\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline", str(path), "--pipeline-root", str(tmp_path / "root"), "run"],
        cwd=repo, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "change_thresholds names 'mean_absolute_error', which a classification model" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "root" / "ExampleGen").exists()


def test_time_travel_and_trends_over_a_held_back_model_and_a_refused_push(
    root, destination, first, worse, second
):
    """Which model served when, the push history, and the accuracy trend, on a history with a model
    held back (not blessed: its push refused)."""
    import json
    import subprocess
    import sys
    import time

    from pipeline.history import History

    refused = outputs(worse[0], "Pusher", "pushed_model")
    assert (
        refused.get("pushed") == 0
        and refused.get("action") == "not_blessed"
        and worse[0].status == "HELD_BACK"
    )
    history = History(os.path.join(root, "metadata.sqlite"))
    v2, v1 = history.pushes("penguin")
    assert (v1.version, v2.version) == (1, 2) and (v1.replaced, v2.replaced) == (None, 1)
    assert (
        v1.model_id == outputs(first, "Trainer", "model").id
        and v2.model_id == outputs(second, "Trainer", "model").id
    )
    assert v2.serving and not v1.serving and v1.reason.startswith("BLESSED")
    assert history.served_at("penguin", v1.pushed_at - 1) is None
    assert history.served_at("penguin", (v1.pushed_at + v2.pushed_at) / 2).version == 1
    assert history.served_at("penguin", time.time()).version == 2
    trend = {r.model.id: (r.blessed, r.metric("accuracy"), r.versions) for r in history.models("penguin")}
    assert trend[outputs(worse[0], "Trainer", "model").id][:1] == (False,)
    assert trend[outputs(second, "Trainer", "model").id][2] == [2]
    assert trend[outputs(worse[0], "Trainer", "model").id][2] == []
    assert trend[outputs(first, "Trainer", "model").id][1] == outputs(first, "Evaluator", "blessing").get(
        "accuracy"
    )

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "runner.py", "--pipeline-root", str(root), *args],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((v1.pushed_at + v2.pushed_at) / 2 + 0.5))
    assert cli("models", "--served-at", when).startswith(
        f"at {when}: version 1 of {destination}/penguin, model #{v1.model_id}"
    )
    lines = cli("models", "--metric", "accuracy").splitlines()
    assert lines[0].startswith("accuracy of 3 model(s), oldest first")
    marks = [line.split()[0] for line in lines[1:]]
    assert marks[:3] == ["B", "-", "B"], lines  # first, worse (held back), second
    assert json.loads(cli("pushes", "--json")) == [p.to_dict() for p in history.pushes("penguin")]
    pushes_text = cli("pushes")
    assert "version 2" in pushes_text and "replaced version 1  SERVING" in pushes_text
