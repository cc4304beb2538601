"""`runner.py` as a user runs it, in a subprocess, on a small copy of the embedded data."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from pipeline.metadata import MetadataStore, custom, state_name
from tests.helpers import decode_examples, expect_exit, read_tfrecords, run_commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runner(*args, check=True, env=None):
    done = subprocess.run(
        [sys.executable, "runner.py", *args], cwd=REPO, capture_output=True, text=True, env=env
    )
    if check:
        expect_exit(done.returncode, done.stdout + done.stderr, f"runner.py {' '.join(args)}")
    return done


def _small_data(base) -> str:
    """Every other row of spans 2007 and 2008 (55 and 57 rows), in the layout of data/: enough for
    the penguin pipeline to bless its model (fewer leave an eval split of nine examples, where one
    mistake misses its 0.9 accuracy threshold)."""
    for span in ("2007", "2008"):
        src = os.path.join(REPO, "data", "penguins", f"span-{span}", "penguins.csv")
        os.makedirs(base / "data" / f"span-{span}")
        with open(src) as f:
            header, *rows = f.readlines()
            lines = [header, *rows[::2]]
        with open(base / "data" / f"span-{span}" / "penguins.csv", "w") as f:
            f.writelines(lines)
    return str(base / "data" / "span-{SPAN}" / "*.csv")


@pytest.fixture
def small_data(tmp_path):
    return _small_data(tmp_path)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One cold run of the penguin pipeline on the small data, shared by the tests that read it:
    (root, data pattern, its output, the TMPDIR it was given)."""
    base = tmp_path_factory.mktemp("first-run")
    data = _small_data(base)
    root = str(base / "root")
    # Every temporary file of the run (Beam's, TensorFlow's, its child processes') stays under the
    # root and goes with the run: the system's temporary folder is left as it was.
    system_tmp = base / "system-tmp"
    os.makedirs(system_tmp)
    done = runner(
        "--pipeline-root", root, "run", "--data", data, env={**os.environ, "TMPDIR": str(system_tmp)}
    )
    return root, data, done, system_tmp


def test_run_records_examples_and_a_second_run_is_cached(first_run):
    root, small_data, first, system_tmp = first_run
    assert os.listdir(system_tmp) == [] and os.listdir(os.path.join(root, ".tmp")) == []
    # Transform, the Trainer and the Evaluator executed in the worker process.
    assert len(re.findall(r"COMPLETE in [0-9.]+ s \(execution \d+; worker memory", first.stdout)) == 3
    # The penguin pipeline's window takes both spans, each ingested in an execution of its own.
    assert re.search(r"^ExampleGen\[span 2007\]\s+COMPLETE", first.stdout, re.M)
    assert re.search(r"^ExampleGen\[span 2008\]\s+COMPLETE", first.stdout, re.M)
    assert "span 2008, version 0: 1 file(s)" in first.stdout

    assert re.search(r"ExampleValidator\[span 2008\]\s+COMPLETE", first.stdout)
    assert re.search(r"ExampleValidator\[span 2008\] page: .*/statistics.html", first.stdout)
    report = re.search(r"run report: (\S+)", first.stdout).group(1)
    assert report.startswith(os.path.join(root, "reports"))
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    types = {t.id: t.name for t in store.mlmd.get_execution_types()}
    [execution] = [
        e
        for e in store.mlmd.get_executions()
        if types[e.type_id] == "ExampleGen" and custom(e, "map_key") == "2008"
    ]
    examples = store.outputs_of(execution.id)["examples"]
    assert examples.uri == os.path.join(root, "ExampleGen", "examples", str(execution.id))
    assert examples.properties["span"] == 2008
    rows = decode_examples(read_tfrecords(examples.split_uri("train"))) + decode_examples(
        read_tfrecords(examples.split_uri("eval"))
    )
    assert len(rows) == 57 == examples.get("row_count_train") + examples.get("row_count_eval")
    assert {r["year"][0] for r in rows} == {2008}

    second = runner("--pipeline-root", root, "run", "--data", small_data)
    assert re.search(r"ExampleGen\[span 2008\]\s+CACHED", second.stdout)
    # Nothing new: a few lines pointing to the first run's full report, not another copy of it.
    full = re.search(r"run report: (\S+)", first.stdout).group(1)
    pointer = re.search(r"run report: (\S+)", second.stdout).group(1)
    assert os.path.getsize(pointer) < 1000 and os.path.basename(full) in open(pointer).read()
    # A fully cached run does not pay for importing TensorFlow or Beam.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runner; rc = runner.main(['--pipeline-root', sys.argv[1], 'run', '--data', sys.argv[2]]);"
            "print('heavy:', 'tensorflow' in sys.modules, 'apache_beam' in sys.modules, rc)",
            root,
            small_data,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert re.search(r"heavy: False False 0$", probe.stdout, re.M), probe.stdout
    latest = max(
        (e for e in store.mlmd.get_executions() if types[e.type_id] == "ExampleGen"), key=lambda e: e.id
    )
    assert state_name(latest) == "CACHED" and custom(latest, "cached_from") == execution.id
    for later_run in store.pipeline_runs("penguin")[:2]:
        states = {state_name(e) for e in store.mlmd.get_executions_by_context(later_run.id)}
        assert states == {"CACHED"}

    runs = runner("--pipeline-root", root, "runs", "--steps").stdout
    assert len(re.findall(r"^run \S+\s+(COMPLETE|HELD_BACK)\s+started", runs, re.M)) == 3
    assert re.search(rf"ExampleGen\[span 2008\]\s+CACHED\s+execution {latest.id}\s", runs)

    lineage = runner("--pipeline-root", root, "lineage", str(examples.id)).stdout
    assert f"Examples #{examples.id} LIVE {examples.uri}" in lineage
    assert f"<- ExampleGen execution {execution.id} (COMPLETE" in lineage
    assert "schema: Schema #" in lineage and "<- ImportSchemaGen execution" in lineage
    assert "span-2008/penguins.csv" in lineage and "sha256" in lineage
    assert runner("--pipeline-root", root, "lineage", examples.uri).stdout == lineage


def test_bad_input_exits_non_zero_with_a_short_message(tmp_path, small_data):
    with open(small_data.replace("{SPAN}", "2008").replace("*", "penguins"), "a") as f:
        f.write("Adelie,Dream,1,2\n")
    done = runner("--pipeline-root", str(tmp_path / "root"), "run", "--data", small_data, check=False)
    assert done.returncode == 1
    assert re.search(r"error: ExampleGen failed \(execution \d+\): 1 bad row\(s\) in span 2008", done.stderr)
    assert "line 59: expected 8 cells as in the header, found 4" in done.stderr
    assert "Traceback" not in done.stderr


def test_overlapping_run_refuses_with_exit_75(tmp_path, small_data):
    from pipeline.lock import RootLock

    root = tmp_path / "root"
    os.makedirs(root)
    with RootLock(str(root), "cron-1"):
        done = runner("--pipeline-root", str(root), "run", "--data", small_data, check=False)
    assert done.returncode == 75
    assert "not started: another run holds the lock" in done.stderr and "cron-1" in done.stderr
    shutil.rmtree(root)


def test_infer_schema_prints_a_schema_to_start_a_curated_one(tmp_path, small_data):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    done = runner("--pipeline-root", str(tmp_path / "root"), "infer-schema", "--data", small_data)
    schema = text_format.Parse(done.stdout, schema_pb2.Schema())
    features = {f.name: f for f in schema.feature}
    assert len(features) == 8 and features["species"].domain == "species"
    assert {d.name: list(d.value) for d in schema.string_domain}["island"] == ["Biscoe", "Dream", "Torgersen"]
    assert "SchemaGen" in done.stderr


def test_run_report_renders_in_a_browser(first_run):
    from tests.browser import charts_rendered, chromium, rendered_dom

    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    _, _, done, _ = first_run
    report = re.search(r"run report: (\S+)", done.stdout).group(1)
    dom = rendered_dom(browser, report)
    decoded, total = charts_rendered(dom)
    # A chart per feature and split (8 x 2), two training charts, three evaluation charts at least.
    assert decoded == total and total >= 21
    for heading in ("Steps", "Outputs", "Statistics of span 2008", "Training", "Lineage of the run"):
        assert heading in dom


# Batch scoring (`runner.py score`, penguin/scoring.py) with the model the first run serves.

PENGUIN_COLUMNS = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"


@pytest.fixture(scope="module")
def scorings(first_run, tmp_path_factory):
    """`runner.py score` with the model the first run serves, on unlabeled rows, labeled rows and
    rows that lack a feature, and on a store where nothing was pushed: {case: (its data's ids,
    what the command printed, its exit code)}."""

    root, *_ = first_run
    base = tmp_path_factory.mktemp("scoring")
    store = os.path.join(root, "metadata.sqlite")
    cases = {
        "unlabeled": (store, unlabeled_rows(base / "unlabeled")),
        "labeled": (store, unlabeled_rows(base / "labeled", "species," + PENGUIN_COLUMNS)),
        "missing": (store, unlabeled_rows(base / "missing", PENGUIN_COLUMNS.replace("bill_length_mm,", ""))),
        "no model": (str(base / "empty.sqlite"), unlabeled_rows(base / "no-model")),
    }
    commands = {
        name: [
            "--metadata",
            spec,
            "--pipeline-root",
            str(base / name.replace(" ", "-") / "root"),
            "score",
            "--data",
            data,
        ]
        for name, (spec, (data, _)) in cases.items()
    }
    printed = run_commands(commands, REPO, str(base / "driver.json"))
    return {name: (ids, printed[name]) for name, (_, (_, ids)) in cases.items()}


def unlabeled_rows(tmp_path, columns: str = PENGUIN_COLUMNS) -> tuple[str, list[str]]:
    """Every fifth row of the embedded data with `columns` (no species: unlabeled), with ids that
    a CSV must quote; returns (the pattern of its span folder, the ids in file order)."""
    wanted = columns.split(",")
    lines, ids = [f"penguin_id,{columns}"], []
    for year in (2007, 2008, 2009):
        with open(os.path.join(REPO, "data", "penguins", f"span-{year}", "penguins.csv")) as f:
            header, *rows = f.read().splitlines()
        names = header.split(",")
        for number, row in enumerate(rows[::5]):
            cells = dict(zip(names, row.split(",")))
            ids.append(f"{year}, n°{number}")
            lines.append(",".join([f'"{ids[-1]}"', *(cells[c] for c in wanted)]))
    os.makedirs(tmp_path / "to-score" / "span-1")
    with open(tmp_path / "to-score" / "span-1" / "rows.csv", "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(tmp_path / "to-score" / "span-{SPAN}" / "*.csv"), ids


COMPARE = """
import csv, glob, json, sys
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
model_dir, examples_dir, result_dir = sys.argv[1:4]
records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(examples_dir + "/*.gz")), compression_type="GZIP")]
out = tf.saved_model.load(model_dir).signatures["serving_default"](examples=tf.constant(records))
logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
    sorted(glob.glob(result_dir + "/prediction_logs-*.gz")), compression_type="GZIP")]
ids = [tf.train.Example.FromString(r).features.feature["penguin_id"].bytes_list.value[0].decode() for r in records]
print(json.dumps({
    "ids": ids,
    "classes": [c.decode() for c in out["classes"].numpy()],
    "scores": out["scores"].numpy().tolist(),
    "logged": [log.predict_log.request.inputs["examples"].string_val[0] == r for log, r in zip(logs, records)],
    "logs": len(logs),
    "signature": logs[0].predict_log.request.model_spec.signature_name,
}))
"""


def test_scoring_unlabeled_rows_with_the_served_model(first_run, scorings):
    """The CSV's ids and predictions equal the served model's own answers, asked in a fresh
    process, row for row; TFX's PredictionLogs parse and hold the rows in order; the predictions'
    lineage is the served model's whole history."""
    import csv
    import json

    root, *_ = first_run
    ids, done = scorings["unlabeled"]
    expect_exit(done.returncode, done.stdout + done.stderr, "score")
    found = re.search(
        r"^predictions: (\S+) \((\d+) rows, span 1, 'penguin' model version 1\)$", done.stdout, re.M
    )
    assert found, done.stdout[-3000:]
    with open(found.group(1), newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header[:2] == ["penguin_id", "predicted_class"] and header[-1] == "model_version", header
    assert sorted(header[2:-1]) == ["score_Adelie", "score_Chinstrap", "score_Gentoo"], header
    assert [r[0] for r in rows] == ids and {r[-1] for r in rows} == {"1"}
    result_dir = os.path.dirname(found.group(1))
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    [scored] = store.artifacts_by_uri(result_dir)
    examples = store.inputs_of(store.producer_of(scored.id).id)["examples"]
    served = os.path.join(root, "serving", "penguin", "1")
    asked = subprocess.run(
        [sys.executable, "-c", COMPARE, served, examples.split_uri("score"), result_dir],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 0, asked.stderr[-3000:]
    answers = json.loads(asked.stdout.strip().splitlines()[-1])
    assert answers["ids"] == ids and [r[1] for r in rows] == answers["classes"]
    classes = [name.removeprefix("score_") for name in header[2:-1]]
    for row, scores in zip(rows, answers["scores"]):
        assert [float(v) for v in row[2:-1]] == pytest.approx(scores, abs=1e-6), (row, scores)
        assert row[1] == classes[max(range(len(scores)), key=scores.__getitem__)]
    assert (
        answers["logs"] == len(ids) and all(answers["logged"]) and answers["signature"] == "serving_default"
    )
    # Which model version scored which span, and the model's whole history behind the predictions.
    assert scored.get("model_version") == "1" and scored.get("span") == 1
    history = runner("--metadata", os.path.join(root, "metadata.sqlite"), "lineage", result_dir).stdout
    for step in ("BulkInferrer", "Pusher", "Evaluator", "Trainer", "Transform", "ExampleGen"):
        assert f"<- {step} execution" in history, history
    # The training store now holds the scoring pipeline's runs too: the history commands read the
    # training pipeline's unless told otherwise, the scoring pipeline's with its file.
    trained = runner("--pipeline-root", str(root), "runs")
    assert trained.returncode == 0 and "pushed version 1" in trained.stdout, trained.stdout + trained.stderr
    assert "BulkInferrer" not in runner("--pipeline-root", str(root), "runs", "--steps").stdout
    scoring = runner(
        "--pipeline", "penguin/scoring.py", "--metadata", os.path.join(root, "metadata.sqlite"), "runs"
    )
    assert len(re.findall(r"^run \S+", scoring.stdout, re.M)) == 3, scoring.stdout  # three cases scored


def test_a_label_in_rows_to_score_is_ignored_and_without_a_model_scoring_says_so(scorings):
    ids, labeled = scorings["labeled"]
    expect_exit(labeled.returncode, labeled.stdout + labeled.stderr, "score of labeled rows")
    assert re.search(
        rf"^predictions: \S+ \({len(ids)} rows, span 1, 'penguin' model version 1\)$", labeled.stdout, re.M
    )
    assert "species" not in labeled.stdout.split("[4/5] ExampleValidator")[1].split("[5/5]")[0]
    # No model pushed (a store with no training run yet): its own exit code and one line.
    _, empty = scorings["no model"]
    assert empty.returncode == 4, empty.stdout[-2000:] + empty.stderr[-2000:]
    assert "no model: pipeline 'penguin' has not pushed any model" in empty.stderr
    assert "Traceback" not in empty.stderr and "predictions:" not in empty.stdout


def test_rows_to_score_missing_a_feature_the_model_needs_are_refused_naming_it_and_the_file(scorings):
    _, done = scorings["missing"]
    assert done.returncode == 1
    path = re.search(r"root (\S+)/root\)", done.stdout).group(1) + "/to-score/span-1/rows.csv"
    assert re.search(
        rf"missing_column: feature 'bill_length_mm', split score: expected the column to be present, found no such column in {re.escape(path)}",
        done.stderr,
    ), done.stderr[-3000:]
    assert re.search(r"^BulkInferrer\s+SKIPPED", done.stdout, re.M)
