"""The Trainer in the penguin pipeline: early stopping, accuracy, the export's signatures, resume
after SIGKILL at the pipeline level, and errors in the user's build_fn."""

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from pipeline.metadata import MetadataStore, custom, state_name
from tests.helpers import quiet_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def penguin(root, **trainer):
    """The penguin pipeline on the embedded data, with Trainer parameters overridden."""
    from penguin.pipeline import create_pipeline

    pipeline = create_pipeline()
    node = pipeline.node("Trainer")
    params = {f: getattr(node.params, f) for f in node.params.__dataclass_fields__}
    params.update(trainer)
    if "build_fn" in trainer or "model_fn" in trainer:
        params["module_file"] = None
    node.params = type(node.params)(**params)
    return pipeline


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("trainer-root")


@pytest.fixture(scope="module")
def default_run(root):
    result = quiet_run(penguin(root), root)
    assert result.ok, result.error
    return result


def test_penguin_model_is_accurate_and_stopped_early(default_run):
    model = default_run.step("Trainer").outputs["model"]
    assert model.get("best_metric") == "loss"
    assert model.get("stopped_early") == 1 and model.get("best_step") <= model.get("last_step")
    import json

    assert json.loads(model.get("eval_metrics"))["accuracy"] >= 0.95
    assert os.path.exists(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
    assert os.listdir(os.path.join(model.uri, "run", "best"))
    events = [f for _, _, files in os.walk(os.path.join(model.uri, "run")) for f in files if "tfevents" in f]
    assert len(events) >= 2  # train and eval
    page = open(os.path.join(model.uri, "training.html")).read()
    assert "<svg" in page and "png" not in page and f"Best step {model.get('best_step')}" in page


def test_export_answers_with_class_names_without_labels_or_unused_features(default_run):
    model = default_run.step("Trainer").outputs["model"]
    raw = default_run.step("ExampleGen").outputs["examples"]
    script = textwrap.dedent("""
        import sys, numpy as np, tensorflow as tf
        from tests.helpers import read_tfrecords
        model = tf.saved_model.load(sys.argv[1])
        records = read_tfrecords(sys.argv[2])
        examples, truth, raw = [], [], {}
        for record in records:
            example = tf.train.Example.FromString(record)
            truth.append(example.features.feature.pop("species").bytes_list.value[0].decode())
            example.features.feature.pop("year")  # not read by the Transform graph: not needed
            examples.append(example.SerializeToString())
        out = model.signatures["serving_default"](examples=tf.constant(examples))
        classes = [c.decode() for c in out["classes"].numpy()]
        print("accuracy", np.mean([c == t for c, t in zip(classes, truth)]))
        print("scores", np.allclose(out["scores"].numpy().sum(axis=1), 1.0))
        c = model.signatures["classification"](inputs=tf.constant(examples))
        print("classify", np.allclose(c["scores"].numpy(), out["scores"].numpy()))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, os.path.join(model.uri, "Format-Serving"), raw.split_uri("eval")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy = float(re.search(r"accuracy ([\d.]+)", done.stdout).group(1))
    assert accuracy >= 0.95 and "scores True" in done.stdout and "classify True" in done.stdout


def test_unchanged_trainer_is_cached(root, default_run):
    again = quiet_run(penguin(root), root)
    assert again.step("Trainer").status == "CACHED"


def test_killed_training_resumes_in_the_next_run(root, default_run):
    """A Trainer killed after a checkpoint: the next run records it FAILED (interrupted), then
    trains again from that checkpoint with its early-stopping state, not from scratch."""
    script = textwrap.dedent(f"""
        from tests.test_trainer import penguin
        from pipeline.local_runner import RunOptions, run_pipeline
        run_pipeline(penguin({str(root)!r}, train_steps=300, eval_every_steps=20,
                             early_stopping_patience=1000), RunOptions({str(root)!r}, log=lambda m: print(m, flush=True)))
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    for line in child.stdout:
        if "evaluation at step 100" in line:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    result = quiet_run(
        penguin(root, train_steps=300, eval_every_steps=20, early_stopping_patience=1000), root
    )
    assert result.ok, result.error
    log = "\n".join(result.log)
    resumed = re.search(r"resumed from the checkpoint at step (\d+): best loss [\d.]+ at step (\d+)", log)
    assert resumed and int(resumed.group(1)) >= 100
    assert "was interrupted; marked FAILED" in log
    model = result.step("Trainer").outputs["model"]
    assert model.get("resumed_from") == int(resumed.group(1)) and model.get("last_step") == 300
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    executions = sorted(
        store.mlmd.get_executions_by_context(store.pipeline_runs("penguin")[0].id), key=lambda e: e.id
    )
    states = [state_name(e) for e in executions]
    assert "RUNNING" not in states and states[-1] == "COMPLETE"
    # The checkpoints are in the Model (hard links), and stay beside it, marked finished, until
    # the next Trainer execution sees that Model published and removes them.
    [kept] = os.listdir(os.path.join(root, "Trainer", ".runs"))
    with open(os.path.join(root, "Trainer", ".runs", kept, "exported_to")) as f:
        assert f.read() == model.uri
    assert os.listdir(os.path.join(model.uri, "run", "best"))


def test_a_trainer_killed_after_its_export_resumes_from_its_last_checkpoint(root, default_run):
    """What a kill between the export and the Model's publication leaves: the finished run
    directory beside a Model path that does not exist (the recovery removes the staged output).
    Here the same state, made by removing a Trainer's published Model (which the next run's cache
    lookup finds damaged): the retry resumes from the last checkpoint, early-stopping state and
    all, and does not train again."""
    import shutil

    from pipeline import Pipeline

    # The module's root: the steps before the Trainer are cached; this Model is never blessed.
    full = penguin(root, train_steps=120, eval_every_steps=40)
    upstream = [n for n in full.nodes if n.id not in ("Evaluator", "Pusher")]
    first = quiet_run(Pipeline(full.name, upstream), root)
    assert first.ok, first.error
    model = first.step("Trainer").outputs["model"]
    runs = os.path.join(root, "Trainer", ".runs")
    markers = [os.path.join(runs, d, "exported_to") for d in os.listdir(runs)]
    [kept] = [m for m in markers if os.path.isfile(m) and open(m).read() == model.uri]
    shutil.rmtree(model.uri)
    retry = quiet_run(Pipeline(full.name, upstream), root)
    assert retry.ok, retry.error
    log = "\n".join(retry.log)
    assert "resumed from the checkpoint at step 120" in log, log
    assert "evaluation at step" not in log.split("resumed from the checkpoint")[1]  # no training again
    resumed = retry.step("Trainer").outputs["model"]
    assert resumed.get("resumed_from") == 120 and os.listdir(os.path.join(resumed.uri, "Format-Serving"))


def test_build_fn_that_raises_fails_the_step_naming_it(root, default_run):
    def build_fn(features, params):
        return features["no_such_feature"]

    result = quiet_run(penguin(root, build_fn=build_fn), root)
    assert result.step("Trainer").status == "FAILED"
    assert re.search(
        r"Trainer failed \(execution \d+\): build_fn in .*test_trainer.py raised in mode 'train': "
        r"KeyError: 'no_such_feature'",
        str(result.error),
    )
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    [execution] = store.mlmd.get_executions_by_id([result.step("Trainer").execution_id])
    assert state_name(execution) == "FAILED" and "no_such_feature" in custom(execution, "error")


def test_label_missing_from_transform_names_the_parameter_to_set(root, default_run):
    result = quiet_run(penguin(root, label_key="kind"), root)
    assert result.step("Trainer").status == "FAILED"
    assert re.search(
        r"the transformed examples have no label 'kind' \(features: .*species.*\); set "
        r"Trainer\(label_key=\.\.\.\) in the pipeline definition",
        str(result.error),
    )


def test_missing_label_vocabulary_names_both_fixes(root, default_run):
    result = quiet_run(penguin(root, label_vocabulary="classes"), root)
    assert result.step("Trainer").status == "FAILED"
    message = str(result.error)
    assert "Transform wrote no vocabulary 'classes' (vocabularies: island, sex, species)" in message
    assert "set Trainer(label_vocabulary=...) in the pipeline definition" in message
    assert "vocab_filename='classes'" in message and "Trainer(head='regression')" in message


def test_a_model_module_adds_its_own_serving_receiver(root, default_run, tmp_path):
    """`serving_receivers(raw_feature_spec, transform)` in the model module: here a signature that
    takes the four measurements as one dense [batch, 4] tensor, through the same Transform graph."""
    module = tmp_path / "model.py"
    module.write_text(
        textwrap.dedent("""
            import tensorflow as tf
            from estimator.export import ServingInputReceiver
            from penguin.model import build_fn  # noqa: F401 - the model itself is the penguin one

            NAMES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]

            def serving_receivers(raw_feature_spec, transform):
                def features_fn(inputs):
                    rows = tf.shape(inputs["measurements"])[0]
                    raw = {}
                    for i, name in enumerate(NAMES):
                        values = tf.cast(inputs["measurements"][:, i], raw_feature_spec[name].dtype)
                        indices = tf.stack([tf.range(tf.cast(rows, tf.int64)), tf.zeros([rows], tf.int64)], axis=1)
                        raw[name] = tf.sparse.SparseTensor(indices, values, tf.stack([tf.cast(rows, tf.int64), 1]))
                    raw["island"] = tf.fill([rows, 1], "Biscoe")
                    raw["sex"] = tf.sparse.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), tf.stack([tf.cast(rows, tf.int64), 1]))
                    return transform(raw)

                spec = tf.TensorSpec([None, 4], tf.float32, name="measurements")
                return {"measurements": ServingInputReceiver({"measurements": spec}, features_fn)}
        """)
    )
    result = quiet_run(penguin(root, module_file=str(module)), root)
    assert result.ok, result.error
    model = result.step("Trainer").outputs["model"]
    import json

    assert json.loads(model.get("signatures"))["measurements"] == ["class_ids", "classes", "scores"]
    script = textwrap.dedent("""
        import sys, tensorflow as tf
        model = tf.saved_model.load(sys.argv[1])
        out = model.signatures["measurements"](measurements=tf.constant([[47.5, 15.0, 218.0, 4950.0]]))
        print(out["classes"].numpy()[0].decode())
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, os.path.join(model.uri, "Format-Serving")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "Gentoo", done.stderr[-2000:]


def test_a_label_with_one_class_fails_the_trainer_naming_the_label_and_the_fix(tmp_path):
    """A pipeline not written by init (which refuses such a label): the span's only species
    passes the schema's domain, and the Trainer names the label column instead of a head error."""
    import csv

    from pipeline import Pipeline

    with open(os.path.join(REPO, "data", "penguins", "span-2008", "penguins.csv")) as f:
        header, *rows = list(csv.reader(f))
    species = header.index("species")
    os.makedirs(tmp_path / "data" / "span-1")
    with open(tmp_path / "data" / "span-1" / "penguins.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *[r for r in rows if r[species] == "Adelie"]])
    full = penguin(tmp_path / "root")
    example_gen = full.node("ExampleGen")
    example_gen.params = example_gen.component.with_params(
        "ExampleGen", example_gen.params, {"input_pattern": str(tmp_path / "data" / "span-{SPAN}" / "*.csv")}
    )
    upstream = [n for n in full.nodes if n.id not in ("Evaluator", "Pusher")]
    result = quiet_run(Pipeline(full.name, upstream), tmp_path / "root")
    assert not result.ok and result.error.component_id == "Trainer"
    assert str(result.error.cause).startswith(
        "the label 'species' has 1 class(es) in the training data ('Adelie'): a classifier needs at least two"
    ), result.error
