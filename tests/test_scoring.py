"""Bulk scoring against straightforward references: a few hundred examples through small real
SavedModels (a three-class classifier and a regressor over one feature, serving_default as our
exports have it). The CSV equals direct serving_default calls, row for row; every PredictionLog
equals the one TFX's BulkInferrer builds (tfx-bsl's Predict post-processing, serialized
deterministically) and reads back with TensorFlow and Beam; awkward ids round-trip through
csv.reader."""

import csv
import gzip
import os

import numpy as np
import pytest

from components.bulk_inferrer import scoring
from components.io.tfrecord import frame
from pipeline.errors import UserInputError

CLASSES = ["alpha", "beta", "gamma"]
ROWS = 500
NAMES = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\ronly", "crlf\r\n", "ünïcödé ✓", "", " padded "]


def _example(x: float, row: int) -> bytes:
    """Features: x (the model's input), id (int64, missing every 7th row), name (text, awkward,
    missing every 11th row), weight (float), late (int64, from row 300 on: not in the first
    batches)."""
    import tensorflow as tf

    feature = {
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
        "weight": tf.train.Feature(float_list=tf.train.FloatList(value=[x / 3])),
    }
    if row % 7:
        feature["id"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row * 1_000_003 - 5]))
    if row % 11:
        name = NAMES[row % len(NAMES)].encode()
        feature["name"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[name]))
    if row >= 300:
        feature["late"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _save_model(path: str, kind: str) -> str:
    """classification: scores = softmax([x, -x, x / 2]), class_ids their argmax, classes its
    name; regression: outputs = 2x + 1, of shape [batch] (serving_default) or [batch, 1] (the
    signature "column")."""
    import tensorflow as tf

    spec = {"x": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}
    signature = tf.TensorSpec([None], tf.string)

    class Model(tf.Module):
        @tf.function(input_signature=[signature])
        def classify(self, examples):
            x = tf.io.parse_example(examples, spec)["x"]
            scores = tf.nn.softmax(tf.concat([x, -x, x / 2], axis=1))
            class_ids = tf.argmax(scores, axis=1)
            return {
                "classes": tf.gather(tf.constant(CLASSES), class_ids),
                "class_ids": class_ids,
                "scores": scores,
            }

        @tf.function(input_signature=[signature])
        def column(self, examples):
            return {"outputs": 2 * tf.io.parse_example(examples, spec)["x"] + 1}

        @tf.function(input_signature=[signature])
        def regress(self, examples):
            return {"outputs": self.column(examples)["outputs"][:, 0]}

    model = Model()
    signatures = (
        {"serving_default": model.classify}
        if kind == "classification"
        else {"serving_default": model.regress, "column": model.column}
    )
    tf.saved_model.save(model, path, signatures=signatures)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from components.io.tfrecord import write_gzipped

    base = tmp_path_factory.mktemp("scoring")
    x = np.random.default_rng(3).normal(0, 2, ROWS).astype(np.float32)
    records = [_example(float(v), i) for i, v in enumerate(x)]
    files = []
    for i, part in enumerate(np.array_split(np.arange(ROWS), 3)):
        files.append(str(base / f"data-{i}.gz"))
        write_gzipped(files[-1], [records[j] for j in part])
    models = {kind: _save_model(str(base / kind), kind) for kind in ("classification", "regression")}
    return base, files, records, models


def _serve(
    model_dir: str, records: list[bytes], signature_name: str = "serving_default"
) -> dict[str, np.ndarray]:
    """The signature's outputs, called on the batches the scoring makes (each file's records, 64
    at a time): a batch's size can change a float's last bit."""
    import tensorflow as tf

    signature = tf.saved_model.load(model_dir).signatures[signature_name]
    batches = [
        [records[j] for j in part[i : i + 64]]
        for part in np.array_split(np.arange(len(records)), 3)  # the three files of `setup`
        for i in range(0, len(part), 64)
    ]
    outputs = [signature(examples=tf.constant(batch)) for batch in batches]
    return {k: np.concatenate([o[k].numpy() for o in outputs]) for k in outputs[0]}


def _score(setup, kind: str, name: str, **kwargs) -> tuple[scoring.ScoreReport, str]:
    base, files, _, models = setup
    out = base / name
    out.mkdir()
    kwargs.setdefault("class_names", CLASSES if kind == "classification" else None)
    return scoring.score_examples(files, models[kind], str(out), batch_size=64, **kwargs), str(out)


def _csv(out: str) -> list[list[str]]:
    with open(os.path.join(out, "predictions.csv"), newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _logs(out: str) -> list[bytes]:
    import tensorflow as tf

    path = os.path.join(out, "prediction_logs-00000-of-00001.gz")
    return [r.numpy() for r in tf.data.TFRecordDataset([path], compression_type="GZIP")]


def _reference_log(records, outputs, i, signature_name="serving_default", model_name=""):
    """The PredictionLog tfx-bsl's `_PredictModelHandler._post_process` builds for example i (a
    one-value row made an array, as TF Serving splits a tensor), serialized deterministically."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    predict_log = log.predict_log
    tensor = predict_log.request.inputs["examples"]
    tensor.dtype = tf.string.as_datatype_enum
    tensor.tensor_shape.dim.add().size = 1
    tensor.string_val.append(records[i])
    for spec in (predict_log.request.model_spec, predict_log.response.model_spec):
        spec.signature_name = signature_name
        spec.name = model_name
    for alias, output in outputs.items():
        values = np.asarray(output[i])
        proto = tf.make_tensor_proto(
            values=values,
            dtype=tf.as_dtype(values.dtype).as_datatype_enum,
            shape=np.expand_dims(values, axis=0).shape,
        )
        predict_log.response.outputs[alias].CopyFrom(proto)
    return log.SerializeToString(deterministic=True)


def test_csv_rows_are_the_models_predictions_in_input_order(setup):
    _, _, records, models = setup
    done = []
    report, out = _score(
        setup, "classification", "csv", id_columns=("id", "weight"), model_version="7", progress=done.append
    )
    expected = _serve(models["classification"], records)
    rows = _csv(out)
    assert rows[0] == [
        "id",
        "weight",
        "predicted_class",
        "score_alpha",
        "score_beta",
        "score_gamma",
        "model_version",
    ]
    assert len(rows) == ROWS + 1
    for i, row in enumerate(rows[1:]):
        assert row[0] == ("" if i % 7 == 0 else str(i * 1_000_003 - 5))
        assert row[2] == expected["classes"][i].decode()
        assert [np.float32(v) for v in row[3:6]] == list(expected["scores"][i])  # the float32, exactly
        assert row[6] == "7"
    assert report.rows == ROWS and done[-1] == ROWS and done == sorted(done)
    assert 0 < report.load_seconds < report.seconds
    predicted = [c.decode() for c in expected["classes"]]
    assert report.class_counts == {c: predicted.count(c) for c in CLASSES}
    assert report.files == [
        os.path.join(out, "prediction_logs-00000-of-00001.gz"),
        os.path.join(out, "predictions.csv"),
    ]


def test_prediction_logs_are_tfx_bulk_inferrers_in_input_order(setup):
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.testing.util import assert_that, equal_to
    from tensorflow_serving.apis import prediction_log_pb2

    _, _, records, models = setup
    _, out = _score(setup, "classification", "logs", model_name="penguin")
    assert sorted(os.listdir(out)) == ["prediction_logs-00000-of-00001.gz", "predictions.csv"]
    expected = _serve(models["classification"], records)
    logs = _logs(out)
    assert len(logs) == ROWS
    with gzip.open(os.path.join(out, "prediction_logs-00000-of-00001.gz")) as f:
        assert f.read() == frame(logs)  # TFRecord framing as the project writes it
    for i, data in enumerate(logs):
        log = prediction_log_pb2.PredictionLog.FromString(data)
        request, response = log.predict_log.request, log.predict_log.response
        assert request.inputs["examples"].string_val == [records[i]]
        assert response.outputs["classes"].string_val == [expected["classes"][i]]
        scores = tf.make_ndarray(response.outputs["scores"])
        assert scores.shape == (1, 3) and list(scores[0]) == list(expected["scores"][i])
        assert response.model_spec.name == request.model_spec.name == "penguin"
        assert response.model_spec.signature_name == "serving_default"
        assert data == _reference_log(records, expected, i, model_name="penguin")
    with beam.Pipeline() as p:
        read = p | beam.io.ReadFromTFRecord(
            os.path.join(out, "prediction_logs-*.gz"),
            coder=beam.coders.ProtoCoder(prediction_log_pb2.PredictionLog),
        )
        examples = read | beam.Map(lambda log: log.predict_log.request.inputs["examples"].string_val[0])
        assert_that(examples, equal_to(records))


def test_regression_writes_one_prediction_per_row(setup):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    _, _, records, models = setup
    for signature in ("serving_default", "column"):  # outputs of shape [batch] and [batch, 1]
        report, out = _score(
            setup, "regression", signature, signature_name=signature, id_columns=("id",), model_version="2"
        )
        expected = _serve(models["regression"], records, signature)["outputs"].reshape(-1)
        rows = _csv(out)
        assert rows[0] == ["id", "prediction", "model_version"]
        assert [np.float32(r[1]) for r in rows[1:]] == list(expected)
        assert report.mean_prediction == pytest.approx(float(np.mean(expected.astype(np.float64))))
        assert report.class_counts is None
        logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in _logs(out)]
        assert {log.predict_log.response.model_spec.signature_name for log in logs} == {signature}
        outputs = [tf.make_ndarray(log.predict_log.response.outputs["outputs"]) for log in logs]
        assert [o.reshape(-1)[0] for o in outputs] == list(expected)
        assert outputs[0].shape == ((1,) if signature == "serving_default" else (1, 1))


def test_awkward_and_missing_ids_round_trip_through_csv_reader(setup):
    _, out = _score(
        setup,
        "regression",
        "ids",
        id_columns=("name", "id", "weight", "late", "nope"),
        model_version="v1,beta",
    )
    rows = _csv(out)
    assert rows[0] == ["name", "id", "weight", "late", "nope", "prediction", "model_version"]
    x = np.random.default_rng(3).normal(0, 2, ROWS).astype(np.float32)
    for i, row in enumerate(rows[1:]):
        assert row[0] == ("" if i % 11 == 0 else NAMES[i % len(NAMES)])
        assert row[1] == ("" if i % 7 == 0 else str(i * 1_000_003 - 5))
        assert np.float32(row[2]) == np.float32(float(x[i]) / 3)  # the example's float32, exactly
        assert row[3:5] == [str(i) if i >= 300 else "", ""]  # typed once a batch holds it; none: empty
        assert row[6] == "v1,beta"


def test_csv_is_what_csv_writer_writes_whichever_path_formats_it():
    """Arrow's writer (a batch with no value to quote) and the csv module (one with) give the
    same lines: csv.writer's, numbers as Arrow formats them."""
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([1, None, -(2**63)], pa.int64()),
            pa.array([0.1, 1e-8, None], pa.float32()),
            pa.array([1 / 3, 1e300, 0.0], pa.float64()),
            pa.array([b"x", None, "é".encode()], pa.binary()),
            pa.nulls(3),  # an id column no example has yet
        ],
        names=["a", "b", "c", "d", "e"],
    )
    lines = scoring._csv_batch(batch)
    assert lines == scoring._csv_rows(batch)
    assert lines == b"1,0.1,0.3333333333333333,x,\r\n,1e-8,1e+300,,\r\n-9223372036854775808,,0,\xc3\xa9,\r\n"


def test_no_examples_write_a_header_and_no_logs(setup):
    base, _, _, models = setup
    out = base / "empty"
    out.mkdir()
    report = scoring.score_examples(
        [], models["classification"], str(out), id_columns=("id",), class_names=CLASSES
    )
    assert report.rows == 0 and report.class_counts == dict.fromkeys(CLASSES, 0)
    assert _csv(str(out)) == [
        ["id", "predicted_class", "score_alpha", "score_beta", "score_gamma", "model_version"]
    ]
    assert _logs(str(out)) == []


@pytest.mark.parametrize(
    "values",
    [
        np.array([[0.5, -1.0, 3.25], [0.0, 2.0, -0.0]], np.float32),  # several numbers: tensor_content
        np.array([1.5, -2.0], np.float64),
        np.array([3, -1], np.int64),  # varints, a negative one in ten bytes
        np.array([[7], [300]], np.int32),
        np.array([[1, 2], [65535, 0]], np.uint16),  # not tensor_content: int_val
        np.array([True, False]),
        np.array([[True, False], [False, True]]),
        np.array([1.5, -0.25], np.float16),
        np.array([2**64 - 1, 0], np.uint64),
        np.array([b"x", b""], object),
        np.array([[b"a", b"bc"], [b"", b"d"]], object),
        np.zeros((2, 0), np.float32),
    ],
    ids=lambda v: f"{v.dtype}{list(v.shape)}",
)
def test_output_entries_are_make_tensor_protos(values):
    """Each row of any output type the encoder takes serializes as tfx-bsl's make_tensor_proto."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    encoder = scoring._OutputEncoder("out", values.dtype, values.shape[1:])
    rows = encoder.rows(values)
    if isinstance(rows, np.ndarray):
        rows = [row.tobytes() for row in rows]
    for i, entry in enumerate(rows):
        row = np.asarray(values[i])
        response = predict_pb2.PredictResponse()
        response.outputs["out"].CopyFrom(
            tf.make_tensor_proto(row, dtype=tf.as_dtype(row.dtype).as_datatype_enum, shape=(1, *row.shape))
        )
        assert entry == response.SerializeToString()


def test_models_that_do_not_fit_the_task_are_refused_with_what_they_give(setup):
    base, files, _, models = setup
    out = base / "refused"
    out.mkdir()
    with pytest.raises(
        UserInputError, match=r"no signature 'predict' \(signatures: column, serving_default\)"
    ):
        scoring.score_examples(files, models["regression"], str(out), signature_name="predict")
    with pytest.raises(UserInputError, match=r"needs the outputs 'classes' .* this one gives outputs \[64\]"):
        scoring.score_examples(files, models["regression"], str(out), class_names=CLASSES, batch_size=64)
    with pytest.raises(UserInputError, match=r"'scores' \[64, 2\] .* gives class_ids \[64\], classes \[64\]"):
        scoring.score_examples(
            files, models["classification"], str(out), class_names=["a", "b"], batch_size=64
        )
    with pytest.raises(UserInputError, match="two columns of the same name"):
        scoring.score_examples(files, models["regression"], str(out), id_columns=("prediction",))


def test_a_damaged_file_is_named_and_the_stages_stop(setup):
    import threading

    base, files, _, models = setup
    broken = str(base / "broken.gz")
    with open(files[1], "rb") as f:
        data = gzip.decompress(f.read())
    with gzip.open(broken, "wb") as f:
        f.write(data[: len(data) // 2])  # a record cut in the middle
    out = base / "damaged"
    out.mkdir()
    with pytest.raises(UserInputError, match=r"broken\.gz is truncated"):
        scoring.score_examples([files[0], broken], models["regression"], str(out), batch_size=64)
    assert not [t for t in threading.enumerate() if t.name == "scoring-stage"]


def test_a_failure_downstream_stops_every_stage(setup):
    import threading

    def progress(done: int) -> None:
        raise RuntimeError("the caller gave up")

    with pytest.raises(RuntimeError, match="gave up"):
        _score(setup, "regression", "stopped", progress=progress)
    assert not [t for t in threading.enumerate() if t.name == "scoring-stage"]
