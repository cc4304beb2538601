"""The data steps off the DirectRunner: Beam's Python job server and a pool of workers in separate
processes (the job and Fn APIs that Flink, Spark and Dataflow workers speak), started here on
loopback ports. The same pipeline on the same data gives the same artifacts as on the DirectRunner:
rows per split, statistics, the Transform graph and transformed examples, and evaluation metrics
that match a reference computed from the model's own answers."""

import glob
import json
import os
import subprocess
import sys

import pytest

from bench.beam_services import local_portable_services
from tests.helpers import decode_examples, expect_exit, read_tfrecords

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def beam_services(tmp_path_factory):
    """A job server and a worker pool in their own processes, stopped whatever happens."""
    with local_portable_services(
        str(tmp_path_factory.mktemp("beam-services")), project_path=REPO
    ) as services:
        yield services


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Every third row of span 2008 (38 rows)."""
    base = tmp_path_factory.mktemp("portable-data")
    with open(os.path.join(REPO, "data", "penguins", "span-2008", "penguins.csv")) as f:
        header, *rows = f.readlines()
    os.makedirs(base / "span-2008")
    with open(base / "span-2008" / "penguins.csv", "w") as f:
        f.writelines([header, *rows[::3]])
    return str(base / "span-{SPAN}" / "*.csv")


def run(root, data, *extra):
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline-root", str(root), "run", "--data", data, *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    expect_exit(done.returncode, done.stdout + done.stderr, "runner.py run on the PortableRunner")
    return done


@pytest.fixture(scope="module")
def roots(tmp_path_factory, beam_services, small_data):
    job_server, workers, job_log = beam_services
    direct, portable = tmp_path_factory.mktemp("direct"), tmp_path_factory.mktemp("portable")
    run(direct, small_data)
    run(portable, small_data, "--job-server", job_server, "--workers", workers)
    with open(job_log) as f:
        return direct, portable, f.read()


def output(root, component: str, key: str) -> str:
    [path] = [
        p
        for p in glob.glob(os.path.join(root, component, key, "*"))
        if not os.path.basename(p).startswith(".")
    ]
    return path


def rows_of(directory: str) -> list[str]:
    """The examples of a split as canonical JSON, sorted (a tf.Example's feature map has no fixed
    order once serialized, so bytes may differ between processes for the same example)."""
    return sorted(json.dumps(row, sort_keys=True) for row in decode_examples(read_tfrecords(directory)))


def test_examples_are_the_same_rows_in_the_same_splits(roots):
    direct, portable, _ = roots
    for split in ("train", "eval"):
        a, b = (
            rows_of(os.path.join(output(r, "ExampleGen", "examples"), f"Split-{split}"))
            for r in (direct, portable)
        )
        assert len(a) > 0 and a == b


def test_statistics_are_the_same(roots):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    direct, portable, _ = roots
    for split in ("train", "eval"):
        stats = []
        for root in (direct, portable):
            path = os.path.join(
                output(root, "StatisticsGen", "statistics"), f"Split-{split}", "FeatureStats.pb"
            )
            with open(path, "rb") as f:
                stats.append(statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read()).datasets[0])
        a, b = stats
        assert a.num_examples == b.num_examples > 0
        features_a = {f.path.step[0]: f for f in a.features}
        features_b = {f.path.step[0]: f for f in b.features}
        assert set(features_a) == set(features_b)
        for name, fa in features_a.items():
            fb = features_b[name]
            if fa.HasField("num_stats"):
                assert fa.num_stats.common_stats.num_non_missing == fb.num_stats.common_stats.num_non_missing
                assert (fa.num_stats.min, fa.num_stats.max) == (fb.num_stats.min, fb.num_stats.max)
                assert fa.num_stats.mean == pytest.approx(fb.num_stats.mean, rel=1e-9)
            else:
                assert fa.string_stats.unique == fb.string_stats.unique
                assert [(v.value, v.frequency) for v in fa.string_stats.top_values] == [
                    (v.value, v.frequency) for v in fb.string_stats.top_values
                ]


def test_transform_graph_and_transformed_examples_are_the_same(roots):
    direct, portable, _ = roots
    graphs = [output(r, "Transform", "transform_graph") for r in (direct, portable)]
    assets = [sorted(os.listdir(os.path.join(g, "transform_fn", "assets"))) for g in graphs]
    assert assets[0] == assets[1] and "species" in assets[0]
    for name in assets[0]:
        a, b = (open(os.path.join(g, "transform_fn", "assets", name)).read() for g in graphs)
        assert a == b
    for split in ("train", "eval"):
        rows = [
            sorted(
                decode_examples(
                    read_tfrecords(
                        os.path.join(output(r, "Transform", "transformed_examples"), f"Split-{split}")
                    )
                ),
                key=lambda row: json.dumps(row, sort_keys=True),
            )
            for r in (direct, portable)
        ]
        assert len(rows[0]) == len(rows[1]) > 0
        for a, b in zip(*rows):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-6)


REFERENCE = """
import sys, numpy as np, tensorflow as tf
from tests.helpers import read_tfrecords
model = tf.saved_model.load(sys.argv[1])
examples, truth = [], []
for record in read_tfrecords(sys.argv[2]):
    example = tf.train.Example.FromString(record)
    truth.append(example.features.feature.pop("species").bytes_list.value[0].decode())
    examples.append(example.SerializeToString())
classes = [c.decode() for c in model.signatures["serving_default"](examples=tf.constant(examples))["classes"].numpy()]
print(len(truth), np.mean([c == t for c, t in zip(classes, truth)]))
"""


def test_every_data_step_ran_as_a_job_of_the_job_server(roots):
    _, _, job_log = roots
    # ExampleGen, StatisticsGen, Transform and the Evaluator: one Beam job each, none failed.
    assert job_log.count("Running job") == 4 and "Error running pipeline" not in job_log


def test_evaluation_on_the_portable_runner_matches_the_models_own_answers(roots):
    direct, portable, _ = roots
    for root in (direct, portable):
        model = output(root, "Trainer", "model")
        raw_eval = os.path.join(output(root, "ExampleGen", "examples"), "Split-eval")
        reference = subprocess.run(
            [sys.executable, "-c", REFERENCE, os.path.join(model, "Format-Serving"), raw_eval],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert reference.returncode == 0, reference.stderr[-2000:]
        count, accuracy = reference.stdout.split()
        evaluation = output(root, "Evaluator", "blessing")
        from pipeline.metadata import MetadataStore

        store = MetadataStore(os.path.join(root, "metadata.sqlite"))
        [blessing] = store.artifacts_by_uri(evaluation)
        assert blessing.get("example_count") == int(count)
        assert blessing.get("accuracy") == pytest.approx(float(accuracy))
