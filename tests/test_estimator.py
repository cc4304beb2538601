"""The custom estimator on real TensorFlow: modes, short and full forms, heads, early stopping,
resume after SIGKILL, errors naming the user's function, and the exported signatures."""

import os
import re
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from estimator import (
    SERVING_DEFAULT,
    ClassificationHead,
    EarlyStopping,
    Estimator,
    EstimatorSpec,
    EvalSpec,
    ModeKeys,
    PredictOutput,
    RegressionHead,
    RegressionOutput,
    RunConfig,
    TrainSpec,
    get_global_step,
    metrics,
    model_fn_from_build_fn,
    train_and_evaluate,
)
from estimator.estimator import checkpoint_step
from estimator.export import export_saved_model, parsing_receiver, raw_receiver
from pipeline.errors import UserInputError
from tests.estimator_fixtures import CLASSES, X, Y, classifier, input_fn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = {"log": lambda message: None}
FEATURE_SPEC = {"x": tf.io.FixedLenFeature([4], tf.float32)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy classifier trained with early stopping on accuracy, and its export."""
    model_dir = str(tmp_path_factory.mktemp("model"))
    estimator = classifier(model_dir)
    result = train_and_evaluate(
        estimator,
        TrainSpec(input_fn(), 300),
        EvalSpec(input_fn(False), every_steps=20),
        EarlyStopping("accuracy", "max", patience=3),
        **QUIET,
    )
    estimator.restore_best()
    export_dir = os.path.join(model_dir, "export")
    signatures = export_saved_model(
        estimator, export_dir, parsing_receiver(FEATURE_SPEC), raw_receiver(FEATURE_SPEC)
    )
    return estimator, result, export_dir, signatures


def test_train_eval_and_predict_modes(trained):
    estimator, result, _, _ = trained
    assert result.best_metrics["accuracy"] > 0.9
    evaluation = estimator.evaluate(input_fn(False))
    assert set(evaluation) >= {"loss", "accuracy", "global_step", "precision/low", "recall/high"}
    predictions = list(estimator.predict(lambda: tf.data.Dataset.from_tensor_slices({"x": X[:5]}).batch(5)))
    assert [p["classes"].decode() for p in predictions] == [CLASSES[p["class_ids"]] for p in predictions]
    assert all(abs(p["probabilities"].sum() - 1) < 1e-5 for p in predictions)


def test_full_form_model_fn_with_keras_layers_and_tf_ops(tmp_path):
    def model_fn(features, labels, mode, params):
        hidden = keras.layers.Dense(8, activation="tanh")(features["x"])
        prediction = tf.squeeze(keras.layers.Dense(1)(hidden), axis=1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(
                mode,
                predictions={"value": prediction},
                export_outputs={"regress": RegressionOutput(prediction)},
            )
        loss = tf.reduce_mean(tf.square(prediction - labels))
        return EstimatorSpec(
            mode,
            predictions=prediction,
            loss=loss,
            eval_metric_ops={"mae": metrics.mean(tf.abs(prediction - labels))},
        )

    target = (X[:, 0] * 2 - X[:, 3]).astype(np.float32)

    def data(train):
        def make():
            ds = tf.data.Dataset.from_tensor_slices(({"x": X}, target))
            return (ds.shuffle(600, seed=1).repeat() if train else ds).batch(32)

        return make

    estimator = Estimator(model_fn, str(tmp_path), params={"learning_rate": 0.02})
    before = estimator.evaluate(data(False))["mae"]
    estimator.train(data(True), max_steps=300, **QUIET)
    after = estimator.evaluate(data(False))
    assert after["mae"] < before / 3 and after["global_step"] == 300
    assert len(estimator.variables.created) == 4  # one set, shared by every mode


def test_regression_head(tmp_path):
    def build(features, params):
        return keras.layers.Dense(1)(features["x"])

    target = (X[:, 1] * 3).astype(np.float32)
    data = lambda: tf.data.Dataset.from_tensor_slices(({"x": X}, target)).repeat().batch(64)  # noqa: E731
    estimator = Estimator(
        model_fn_from_build_fn(build, RegressionHead()), str(tmp_path), params={"learning_rate": 0.1}
    )
    estimator.train(data, max_steps=200, **QUIET)
    assert estimator.evaluate(lambda: data().take(5))["mean_absolute_error"] < 0.1


def test_multi_head_model_has_a_signature_per_head(tmp_path):
    def build(features, params):
        hidden = keras.layers.Dense(8, activation="relu")(features["x"])
        return {"kind": keras.layers.Dense(3)(hidden), "size": keras.layers.Dense(1)(hidden)}

    heads = {"kind": ClassificationHead(3, CLASSES, name="kind"), "size": RegressionHead(name="size")}
    size = X[:, 0].astype(np.float32)

    def data():
        return tf.data.Dataset.from_tensor_slices(({"x": X}, {"kind": Y, "size": size})).repeat().batch(32)

    estimator = Estimator(model_fn_from_build_fn(build, heads, serving_head="kind"), str(tmp_path / "m"))
    estimator.train(data, max_steps=20, **QUIET)
    assert {"kind/accuracy", "size/mean_absolute_error", "loss"} <= set(
        estimator.evaluate(lambda: data().take(2))
    )
    signatures = export_saved_model(estimator, str(tmp_path / "export"), parsing_receiver(FEATURE_SPEC))
    assert signatures[SERVING_DEFAULT] == signatures["kind"] == ["class_ids", "classes", "scores"]
    assert signatures["size"] == ["outputs"]


def test_several_heads_need_one_named_serving_default(tmp_path):
    with pytest.raises(UserInputError, match=r"with several heads \(a, b\), serving_head must name the one"):
        model_fn_from_build_fn(lambda f, p: f, {"a": RegressionHead(), "b": RegressionHead()})

    def model_fn(features, labels, mode, params):
        value = tf.squeeze(keras.layers.Dense(1)(features["x"]), 1)
        outputs = {"first": RegressionOutput(value), "second": PredictOutput({"v": value})}
        return EstimatorSpec(mode, predictions=value, export_outputs=outputs, loss=tf.reduce_mean(value))

    estimator = Estimator(model_fn, str(tmp_path))
    with pytest.raises(
        UserInputError, match=r"export_outputs has 2 entries \(first, second\) and none is 'serving_default'"
    ):
        estimator.call_model_fn({"x": tf.constant(X[:2])}, None, ModeKeys.PREDICT)


def test_early_stopping_counts_evaluations_and_exports_the_best_weights(tmp_path):
    """Eval metric by step: 10 -> 5, 20 -> 4, 30 -> 3, 40 -> 3.5, 50 -> 3.2: with patience 2 the run
    stops after the evaluation at step 50, and the best weights are those of step 30."""
    sequence = {10: 5.0, 20: 4.0, 30: 3.0, 40: 3.5, 50: 3.2, 60: 1.0}

    def model_fn(features, labels, mode, params):
        logits = keras.layers.Dense(3)(features["x"])
        step = tf.cast(get_global_step(), tf.int32)
        score = tf.gather(tf.constant([sequence.get(s, 9.0) for s in range(100)]), step)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        return EstimatorSpec(
            mode, predictions=logits, loss=loss, eval_metric_ops={"score": metrics.mean(score)}
        )

    estimator = Estimator(model_fn, str(tmp_path), config=RunConfig(save_checkpoints_steps=10))
    result = train_and_evaluate(
        estimator,
        TrainSpec(input_fn(), 100),
        EvalSpec(input_fn(False), steps=2, every_steps=10),
        EarlyStopping("score", "min", patience=2),
        **QUIET,
    )
    assert result.stopped_early and result.last_step == 50 and result.best_step == 30
    assert [h["global_step"] for h in result.history] == [10, 20, 30, 40, 50]
    best = tf.train.load_checkpoint(os.path.join(str(tmp_path), "best"))
    assert int(best.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE")) == 30
    assert estimator.restore_best() == 30
    kernel = best.get_tensor("model/created/0/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(estimator.variables.created[0].numpy(), kernel)
    # Starting again with the same model_dir finds the run finished and does not train further.
    again = train_and_evaluate(
        Estimator(model_fn, str(tmp_path)),
        TrainSpec(input_fn(), 100),
        EvalSpec(input_fn(False), steps=2, every_steps=10),
        EarlyStopping("score", "min", patience=2),
        **QUIET,
    )
    assert again.resumed_from == 50 and again.last_step == 50 and again.best_step == 30


def test_killed_training_resumes_from_its_last_checkpoint_with_its_state(tmp_path):
    model_dir = str(tmp_path / "run")
    job = [sys.executable, "-m", "tests.estimator_fixtures", model_dir, "200"]
    child = subprocess.Popen(job, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in child.stdout:
        if line.startswith("evaluation at step 60"):
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    checkpoint = tf.train.latest_checkpoint(model_dir)
    saved_step = checkpoint_step(checkpoint)
    assert saved_step >= 60
    state = tf.train.load_checkpoint(checkpoint)
    best_step = int(state.get_tensor("best_step/.ATTRIBUTES/VARIABLE_VALUE"))

    done = subprocess.run(job, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"resumed from the checkpoint at step {saved_step}: best loss")
    assert f"at step {best_step}," in first
    assert f"evaluation at step {saved_step - saved_step % 10 + 10}:" in done.stdout
    assert "evaluation at step 10:" not in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("done: last step 200")


def test_a_checkpoint_is_never_written_over(tmp_path):
    """Training saves at step 20, then the evaluation there saves its state at the same step: the
    second save is a new checkpoint, so a kill during it leaves the first one whole."""
    model_dir = str(tmp_path / "run")
    estimator = classifier(model_dir)
    estimator.train(input_fn(), max_steps=20, **QUIET)
    first = estimator.latest_checkpoint
    files = {
        name: open(os.path.join(model_dir, name), "rb").read()
        for name in os.listdir(model_dir)
        if "ckpt" in name
    }
    estimator.early_stopping_state["last_evaluated_step"].assign(20)
    second = estimator.save()
    assert second != first and checkpoint_step(first) == checkpoint_step(second) == 20
    assert {name: open(os.path.join(model_dir, name), "rb").read() for name in files} == files
    reader = tf.train.load_checkpoint(second)
    assert int(reader.get_tensor("last_evaluated_step/.ATTRIBUTES/VARIABLE_VALUE")) == 20
    os.makedirs(os.path.join(model_dir, "ckpt-9_temp"))  # a save killed before it finished
    assert int(estimator.save().rsplit("-", 1)[1]) == 10


def test_build_fn_that_raises_is_named(tmp_path):
    def broken_build_fn(features, params):
        return features["missing"]

    estimator = Estimator(model_fn_from_build_fn(broken_build_fn, ClassificationHead(3)), str(tmp_path))
    with pytest.raises(
        UserInputError,
        match=r"broken_build_fn in .*test_estimator.py raised in mode 'train': KeyError: 'missing'",
    ):
        estimator.train(input_fn(), max_steps=1, **QUIET)


def test_logits_that_do_not_fit_the_head(tmp_path):
    def two_logits(features, params):
        return keras.layers.Dense(2)(features["x"])

    estimator = Estimator(model_fn_from_build_fn(two_logits, ClassificationHead(3)), str(tmp_path))
    with pytest.raises(
        UserInputError,
        match=r"two_logits in .* returned logits of shape \(\w+, 2\); the classification head needs \[batch, 3\]",
    ):
        estimator.train(input_fn(), max_steps=1, **QUIET)


def test_nan_loss_stops_with_its_step(tmp_path):
    def exploding(features, labels, mode, params):
        value = tf.squeeze(keras.layers.Dense(1)(features["x"]), 1)
        loss = tf.reduce_mean(value) + tf.where(get_global_step() >= 3, np.nan, 0.0)
        return EstimatorSpec(mode, predictions=value, loss=loss)

    estimator = Estimator(exploding, str(tmp_path))
    with pytest.raises(
        UserInputError, match=r"the loss became nan at step 4 \(exploding in .*\); lower the learning rate"
    ):
        estimator.train(input_fn(), max_steps=10, **QUIET)


def test_label_outside_the_vocabulary(tmp_path):
    def bad():
        return tf.data.Dataset.from_tensor_slices(({"x": X[:8]}, np.array([0, 1, 2, 3, 0, 1, 2, 0]))).batch(8)

    estimator = classifier(str(tmp_path))
    with pytest.raises(
        UserInputError, match=r"build_fn in .*: classification head: a label is outside the label vocabulary"
    ):
        estimator.train(bad, max_steps=1, **QUIET)


def test_export_serves_names_and_probabilities_in_a_fresh_process(trained):
    _, _, export_dir, signatures = trained
    assert signatures[SERVING_DEFAULT] == ["class_ids", "classes", "scores"]
    assert signatures["classification"] == ["classes", "scores"]
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from tests.estimator_fixtures import X, example\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "a = m.signatures['serving_default'](examples=tf.constant([example(x) for x in X[:4]]))\n"
        "b = m.signatures['raw_serving_default'](x=tf.constant(X[:4]))\n"
        "c = m.signatures['classification'](inputs=tf.constant([example(x) for x in X[:4]]))\n"
        "assert (a['classes'].numpy() == b['classes'].numpy()).all()\n"
        "np.testing.assert_allclose(a['scores'].numpy(), b['scores'].numpy(), rtol=1e-6)\n"
        "np.testing.assert_allclose(a['scores'].numpy(), c['scores'].numpy(), rtol=1e-6)\n"
        "print(' '.join(a['classes'].numpy().astype(str)), a['scores'].numpy().sum(axis=1).round(4).tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, export_dir], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names, sums = done.stdout.strip().split(" [")
    assert set(names.split()) <= set(CLASSES) and sums == "1.0, 1.0, 1.0, 1.0]"


def test_saved_model_cli_shows_and_runs_the_signatures(trained):
    _, _, export_dir, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", export_dir, "--all"], capture_output=True, text=True).stdout
    for name in ("serving_default", "classification", "predict", "raw_serving_default"):
        assert f"signature_def['{name}']" in shown
    assert "Method name is: tensorflow/serving/classify" in shown
    ran = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            export_dir,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_examples",
            f"examples=[{{'x': {X[0].tolist()}}}]",
        ],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "Result for output key classes" in ran.stdout and "Result for output key scores" in ran.stdout


MIRRORED = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from estimator import ClassificationHead, Estimator, RunConfig, model_fn_from_build_fn
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
X = rng.normal(size=(512, 4)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("int64")
def data():
    return tf.data.Dataset.from_tensor_slices(({"x": X}, Y)).repeat().batch(64)
def build(features, params):
    return keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(features["x"]))
estimator = Estimator(model_fn_from_build_fn(build, ClassificationHead(2)), "{model_dir}",
                      params={"learning_rate": 0.05}, config=RunConfig(strategy=strategy))
estimator.train(data, max_steps=150, log=lambda m: None)
print("replicas", estimator.replicas, "step", int(estimator.global_step.numpy()),
      "accuracy", estimator.evaluate(lambda: data().take(4))["accuracy"])
"""


def test_mirrored_strategy_trains_one_model_over_two_replicas(tmp_path):
    """MirroredStrategy as on a machine with two GPUs, here over two logical CPUs: each global
    batch is split between the replicas, their gradients summed, one model learnt."""
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED.replace("{model_dir}", str(tmp_path / "m"))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    replicas, step, accuracy = re.search(r"replicas (\d+) step (\d+) accuracy ([\d.]+)", done.stdout).groups()
    assert (int(replicas), int(step)) == (2, 150) and float(accuracy) >= 0.9


def test_class_weights_weight_each_example_by_its_class():
    """The weighted loss is the batch mean of each example's cross-entropy times its class's
    weight; "balanced" weights are those of scikit-learn's compute_class_weight."""
    import numpy as np
    import tensorflow as tf
    from sklearn.utils.class_weight import compute_class_weight

    from components.trainer.training import class_weights
    from pipeline import UserInputError

    logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 3.0], [1.0, 2.0, 0.0]])
    labels = tf.constant([0, 1, 2, 2])
    each = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits).numpy()
    weights = [1.0, 4.0, 0.5]
    weighted = ClassificationHead(3, CLASSES, class_weights=weights).loss(labels, logits).numpy()
    assert weighted == pytest.approx(np.mean(each * np.array([1.0, 4.0, 0.5, 0.5])))
    assert ClassificationHead(3, CLASSES).loss(labels, logits).numpy() == pytest.approx(each.mean())

    labels_seen = np.array([0] * 90 + [1] * 9 + [2] * 1)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels_seen)
    assert class_weights("balanced", CLASSES, [90, 9, 1]) == pytest.approx(expected.tolist())
    assert class_weights({CLASSES[2]: 5}, CLASSES, [90, 9, 1]) == [1.0, 1.0, 5.0]
    with pytest.raises(UserInputError, match="names 'Emperor', not a class of the label"):
        class_weights({"Emperor": 2.0}, CLASSES, [90, 9, 1])
    with pytest.raises(UserInputError, match="class_weights needs 3 non-negative weights"):
        ClassificationHead(3, CLASSES, class_weights=[1.0, -1.0, 1.0])


def test_a_decision_threshold_moves_the_served_class():
    """Two classes: class 1 is predicted when its probability reaches the threshold, not 0.5."""
    import numpy as np

    from pipeline import UserInputError

    logits = tf.constant([[0.0, -2.0], [0.0, -0.5], [0.0, 0.2], [0.0, 3.0]])  # p(1): .12 .38 .55 .95
    plain = ClassificationHead(2, ["No", "Yes"]).predictions(logits)
    assert plain["class_ids"].numpy().tolist() == [0, 0, 1, 1]
    low = ClassificationHead(2, ["No", "Yes"], decision_threshold=(1, 0.3)).predictions(logits)
    assert low["class_ids"].numpy().tolist() == [0, 1, 1, 1]
    assert [c.decode() for c in low["classes"].numpy()] == ["No", "Yes", "Yes", "Yes"]
    assert np.allclose(low["probabilities"].numpy(), plain["probabilities"].numpy())
    high = ClassificationHead(2, ["No", "Yes"], decision_threshold=(1, 0.9)).predictions(logits)
    assert high["class_ids"].numpy().tolist() == [0, 0, 0, 1]
    with pytest.raises(UserInputError, match="a decision threshold needs two classes"):
        ClassificationHead(3, CLASSES, decision_threshold=(1, 0.3))
