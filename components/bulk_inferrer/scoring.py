"""Scoring raw tf.Examples in bulk with a SavedModel: TFX BulkInferrer's PredictionLogs and a CSV of
ids and predictions, streamed batch by batch in bounded memory.

    report = score_examples(files, model_dir, output_dir, id_columns=("id",),
                            class_names=["Adelie", "Gentoo", "Chinstrap"], model_version="3")

writes in `output_dir`:

- `prediction_logs-00000-of-00001.gz`: a gzipped TFRecord file of `PredictionLog`s, one per
  example, in input order, as TFX 1.x's BulkInferrer writes them for a Predict signature (its
  executor: `WriteToTFRecord(<uri>/prediction_logs, file_name_suffix='.gz',
  coder=ProtoCoder(PredictionLog))`, one shard on a local runner; the records are tfx-bsl's
  `_PredictModelHandler._post_process`):

      predict_log {
        request {
          model_spec { name: <model_name, absent when ''> signature_name: <signature_name> }
          inputs { key: <the signature's input, `examples`>
                   value { dtype: DT_STRING tensor_shape { dim { size: 1 } } string_val: <the example> } }
        }
        response {
          outputs { key: <each output, in name order> value: <its row, shape [1, ...]> }
          model_spec { <the same> }
        }
      }

  Each output's row is what `tf.make_tensor_proto(row, shape=[1, *row.shape])` makes of it, as
  in tfx-bsl: one value in its typed field (`float_val`, `int64_val`, `string_val`...), several
  numbers as `tensor_content`, several strings as `string_val`. The example is the input record,
  byte for byte (TFX re-serializes a parsed copy: the same message). A `[batch]` string output,
  such as our `classes`, gives one `string_val` of shape [1], as TF Serving splits a tensor
  (tfx-bsl's own code fails there: a row of a 1-D string array is plain bytes, with no dtype).
  Each record's bytes equal `PredictionLog.SerializeToString(deterministic=True)`; TFRecord
  framing as `frame` writes it; one gzip member, also when there is no example.
- `predictions.csv`: a header, then a row per example in input order: the `id_columns` (the
  example's value: text as is, integers, floats as the shortest text that reads back as the same
  float32, `0.1` rather than Python's `0.10000000149011612` for the float64; empty where the
  example has none), then, when `class_names` are given, `predicted_class` (the `classes` output)
  and `score_<class>` for each class (the `scores` output, in that order), else `prediction` (the
  `outputs` output, or the only one), then `model_version`; as csv.writer writes rows (minimal
  quoting, `"` doubled, lines ending in CRLF), text as UTF-8.

How it keeps up: four stages in threads, each up to `DEPTH` batches ahead of the next
(`_Ahead`): reading (`read_gzipped`; it starts while the model loads), the model (one
`serving_default` call per batch, and the id features parsed by TensorFlow's example parser),
encoding (the PredictionLog bytes from a few cached prefixes, the example bytes and the outputs'
bytes, without a proto per row; the CSV by Arrow's writer), and gzip with the writes.
TensorFlow, zlib and Arrow release the GIL, so the stages overlap on the cores. Memory is a few
batches and the largest input file (`read_gzipped` reads a file whole), whatever the number of
rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.io.tfrecord import COMPRESS_LEVEL, frame, read_gzipped
from pipeline.errors import UserInputError

# Rows per `serving_default` call: at 1M penguin rows 16,384 scored 2.5-5% faster than 8,192 (fewer
# calls and hand-overs between the stages) for ~50 MB more; 32,768 was no faster, 110 MB more.
BATCH_SIZE = 16384
PREDICTION_LOGS = "prediction_logs-00000-of-00001.gz"
PREDICTIONS_CSV = "predictions.csv"
# Batches a stage may run ahead of the next: slack for a file's start (`read_gzipped` decompresses
# it whole before its first batch) and for the GIL's turns; 4 was a few percent faster than 2.
DEPTH = 4


@dataclass
class ScoreReport:
    """What `score_examples` did: `files` are the paths written; `seconds` the whole call's, of
    which `load_seconds` loading the model; `class_counts` the rows per predicted class
    (classification), `mean_prediction` the mean prediction (regression, None when no row)."""

    rows: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0
    class_counts: dict[str, int] | None = None
    mean_prediction: float | None = None


def score_examples(
    example_files: list[str],
    model_dir: str,
    output_dir: str,
    *,
    signature_name: str = "serving_default",
    id_columns: Sequence[str] = (),
    class_names: Sequence[str] | None = None,
    model_version: str = "",
    model_name: str = "",
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ScoreReport:
    """Scores every record of the gzipped TFRecord `example_files` (serialized raw tf.Examples,
    read in this order) with the SavedModel at `model_dir`, writing the PredictionLogs and the CSV
    described in the module's docstring into `output_dir` (which must exist).

    `class_names`: a classification's classes in score order (its label vocabulary); None for a
    regression. `model_version` goes on every CSV row, `model_name` into the logs' model_spec.
    `progress` is called with the number of rows done after each batch. No input row writes a
    header-only CSV and an empty log file. An id column that no example holds is empty. Raises
    UserInputError for a model whose signature is missing or does not give the outputs the task
    needs, an id column with several values in an example (or of two types), and a damaged input
    file."""
    started = time.monotonic()
    header = [*id_columns, *_prediction_columns(class_names), "model_version"]
    if len(set(header)) < len(header):
        raise UserInputError(f"the CSV would have two columns of the same name: {header}")
    logs_path = os.path.join(output_dir, PREDICTION_LOGS)
    csv_path = os.path.join(output_dir, PREDICTIONS_CSV)
    with ExitStack() as stack:  # closes the stages last first: each stops once its consumer has
        reading = (records for path in example_files for records in _read(path, batch_size))
        batches = _start(stack, reading)
        model = _Model(model_dir, signature_name, id_columns)  # loads while the first file is read
        loaded = time.monotonic()
        encoder = _Encoder(model, class_names, model_version, model_name, signature_name)
        scored = _start(stack, (model.score(records) for records in batches))
        encoded = _start(stack, (encoder.encode(*batch) for batch in scored))
        raw_logs = stack.enter_context(open(logs_path, "wb"))
        logs = stack.enter_context(
            gzip.GzipFile(fileobj=raw_logs, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0)
        )
        table = stack.enter_context(open(csv_path, "wb"))
        table.write(_csv_lines([header]))
        done = 0
        for framed_logs, lines, rows in encoded:
            logs.write(framed_logs)
            table.write(lines)
            done += rows
            if progress is not None:
                progress(done)
    report = encoder.report
    report.files = [logs_path, csv_path]
    report.seconds = time.monotonic() - started
    report.load_seconds = loaded - started
    if class_names is None and report.rows:
        report.mean_prediction = encoder.prediction_sum / report.rows
    return report


def _read(path: str, batch_size: int) -> Iterator[list[bytes]]:
    """`read_gzipped`, without importing Beam (as `example_batches.read_shard` would)."""
    try:
        yield from read_gzipped(path, batch_size)
    except ValueError as error:
        raise UserInputError(f"{error}; rewrite the file, or rerun the step that wrote it") from None
    except FileNotFoundError:
        raise UserInputError(f"{path} does not exist: no examples to score there") from None


def _prediction_columns(class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return ["prediction"]
    return ["predicted_class", *(f"score_{name}" for name in class_names)]


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


class _Ahead:
    """Iterates over `items` in a thread of its own, started at once and at most `depth` items
    ahead of the consumer, so that stages which release the GIL overlap. An error in the thread
    is raised to the consumer. `close` stops the thread; close a consumer's stage before its
    source's (the source then still delivers what the consumer waits for)."""

    def __init__(self, items: Iterable, depth: int = DEPTH):
        self._results: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="scoring-stage", daemon=True)
        self._thread.start()

    def _run(self, items: Iterable) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as error:
            self._put(_Failure(error))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._results.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        item = self._results.get()
        if item is _DONE:
            self._results.put(_DONE)  # for a next call
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _start(stack: ExitStack, items: Iterable) -> _Ahead:
    stage = _Ahead(items)
    stack.callback(stage.close)
    return stage


class _Model:
    """The SavedModel's signature, called on a batch of serialized examples; the id features
    parsed from the same batch by TensorFlow's example parser (each typed as the first batch
    that holds it has it; empty until then)."""

    def __init__(self, model_dir: str, signature_name: str, id_columns: Sequence[str]):
        import tensorflow as tf

        loaded = tf.saved_model.load(model_dir)
        if signature_name not in loaded.signatures:
            raise UserInputError(
                f"the model at {model_dir} has no signature {signature_name!r} "
                f"(signatures: {', '.join(sorted(loaded.signatures))}); set signature_name"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self.signature = loaded.signatures[signature_name]
        _, inputs = self.signature.structured_input_signature
        if len(inputs) != 1 or next(iter(inputs.values())).dtype != tf.string:
            raise UserInputError(
                f"the model at {model_dir}: signature {signature_name!r} takes {sorted(inputs)}; "
                "bulk scoring calls it with one string tensor of serialized tf.Examples"
            )
        self.input_name = next(iter(inputs))
        self.id_columns = list(id_columns)
        self._id_types: dict = {}  # id column -> its TensorFlow type, once an example holds it

    def score(self, records: list[bytes]) -> tuple[list[bytes], dict[str, np.ndarray], dict[str, pa.Array]]:
        import tensorflow as tf

        serialized = tf.constant(records)
        outputs = {k: v.numpy() for k, v in self.signature(**{self.input_name: serialized}).items()}
        for name, values in outputs.items():
            if values.ndim < 1 or len(values) != len(records):
                raise UserInputError(
                    f"the model's output {name!r} has shape {values.shape} for {len(records)} examples; "
                    "each output needs one row per example"
                )
        ids: dict[str, pa.Array] = {}
        if self.id_columns:
            unknown = [name for name in self.id_columns if name not in self._id_types]
            if unknown:
                self._id_types.update(_feature_types(records, unknown))
            spec = {name: tf.io.VarLenFeature(dtype) for name, dtype in self._id_types.items()}
            try:
                parsed = tf.io.parse_example(serialized, spec) if spec else {}
            except tf.errors.InvalidArgumentError as error:
                raise UserInputError(f"an id column's values do not parse: {error.message}") from None
            for name in self.id_columns:
                found = name in parsed
                ids[name] = _id_column(name, parsed[name], len(records)) if found else pa.nulls(len(records))
        return records, outputs, ids


def _feature_types(records: list[bytes], names: list[str]) -> dict:
    """The TensorFlow type of each of `names` that a record holds (int64, float32 or string)."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    schema = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records).schema
    types = {}
    for name in names:
        if name in schema.names:
            kind = schema.field(name).type.value_type
            floating = pa.types.is_floating(kind)
            types[name] = tf.int64 if pa.types.is_integer(kind) else tf.float32 if floating else tf.string
    return types


def _id_column(name: str, sparse, rows: int) -> pa.Array:
    """One value per example (null where it has none) from a parsed VarLenFeature."""
    values = sparse.values.numpy()
    where = sparse.indices.numpy()[:, 0]
    if len(where) > 1 and np.any(where[1:] == where[:-1]):
        row = int(where[1:][where[1:] == where[:-1]][0])
        raise UserInputError(
            f"id column {name!r} has several values in an example (example {row} of a batch); "
            "an id column takes one value per example"
        )
    missing = np.ones(rows, dtype=bool)
    missing[where] = False
    if values.dtype == object:
        column = np.full(rows, None, dtype=object)
        column[where] = values
        return pa.array(column, pa.binary())
    column = np.zeros(rows, dtype=values.dtype)
    column[where] = values
    return pa.array(column, mask=missing)


# -- PredictionLog bytes: protobuf's wire format (tag, varint length, payload), fields as numbered
# in prediction_log.proto, predict.proto, model.proto, tensor.proto and tensor_shape.proto.


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative integer is its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a message, bytes, or a packed repeated field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


class _Memo(dict):
    """`memo[key]` is `make(key)`, computed once; at most `limit` values are kept."""

    def __init__(self, make: Callable[[Any], bytes], limit: int = 1 << 16):
        super().__init__()
        self._make, self._limit = make, limit

    def __missing__(self, key: Any) -> bytes:
        value = self._make(key)
        if len(self) < self._limit:
            self[key] = value
        return value


# numpy dtype (kind and size) -> (TensorFlow's DataType number, the TensorProto field of its values)
_NUMBER_TYPES = {
    "f2": (19, 13), "f4": (1, 5), "f8": (2, 6), "b1": (10, 11),
    "i1": (6, 7), "i2": (5, 7), "i4": (3, 7), "i8": (9, 10),
    "u1": (4, 7), "u2": (17, 7), "u4": (22, 16), "u8": (23, 17),
}  # fmt: skip
# make_tensor_proto writes several values of these as raw bytes (`tensor_content`)
_CONTENT_TYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u4", "u8"}
_STRING = 7


class _OutputEncoder:
    """The response's map entry (`outputs { key value }`) of one output, for each row of a batch,
    as `tf.make_tensor_proto(row, shape=[1, *row.shape])` serializes it. Rows of a fixed width (a
    float32 or float64 value, or several numbers as `tensor_content`) are built for the whole
    batch in numpy; others (integers are varints, strings) per distinct value, memoized."""

    def __init__(self, name: str, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.name, self.dtype, self.row_shape = name, dtype, row_shape
        self.size = int(np.prod(row_shape, dtype=np.int64))
        self.kind = "s" if dtype.kind in "SOU" else f"{dtype.kind}{dtype.itemsize}"
        if self.kind != "s" and self.kind not in _NUMBER_TYPES:
            raise UserInputError(
                f"the model's output {name!r} is of type {dtype}, which bulk scoring does not write"
            )
        type_number = _STRING if self.kind == "s" else _NUMBER_TYPES[self.kind][0]
        dims = b"".join(_field(2, _varint(8) + _varint(d) if d else b"") for d in (1, *row_shape))
        self._head = _varint(1 << 3) + _varint(type_number) + _field(2, dims)
        self._content = self.size > 1 and self.kind in _CONTENT_TYPES
        self._memo = _Memo(self._entry)
        self.width: int | None = None  # bytes per row, when fixed: the values' bytes come last
        if self._content or self.size == 0 or (self.size == 1 and self.kind in ("f4", "f8")):
            template = self._entry(np.zeros(row_shape, dtype=dtype))
            self.width = len(template)
            self._value_bytes = self.size * dtype.itemsize
            self._template = np.frombuffer(template, dtype=np.uint8)

    def _entry(self, row: Any) -> bytes:
        values = np.asarray(row, dtype=self.dtype).reshape(-1)
        if self.kind == "s":
            items = [v if isinstance(v, bytes) else str(v).encode() for v in values.tolist()]
            body = b"".join(_field(8, v) for v in items)
        elif self._content or self.kind in ("f4", "f8"):
            number = 4 if self._content else _NUMBER_TYPES[self.kind][1]
            body = (
                _field(number, values.astype(values.dtype.newbyteorder("<")).tobytes()) if self.size else b""
            )
        else:
            integers = values.view(np.uint16) if self.kind == "f2" else values
            packed = b"".join(_varint(int(v)) for v in integers.tolist())
            body = _field(_NUMBER_TYPES[self.kind][1], packed) if self.size else b""
        return _field(1, _field(1, self.name.encode()) + _field(2, self._head + body))

    def rows(self, values: np.ndarray) -> np.ndarray | list[bytes]:
        """Each row's entry: a [rows, width] uint8 matrix when fixed, else a list of bytes."""
        n = len(values)
        if self.width is None:
            keys = values.tolist() if values.ndim == 1 else [tuple(r) for r in values.reshape(n, -1).tolist()]
            return list(map(self._memo.__getitem__, keys))
        matrix = np.empty((n, self.width), dtype=np.uint8)
        matrix[:] = self._template
        if self._value_bytes:
            little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
            matrix[:, self.width - self._value_bytes :] = little.view(np.uint8).reshape(n, -1)
        return matrix


class _Encoder:
    """A scored batch -> its PredictionLogs (TFRecord-framed), its CSV lines and its row count;
    keeps the report's counts."""

    def __init__(
        self,
        model: _Model,
        class_names: Sequence[str] | None,
        model_version: str,
        model_name: str,
        signature_name: str,
    ):
        spec = (_field(1, model_name.encode()) if model_name else b"") + _field(3, signature_name.encode())
        self._request_spec = _field(1, spec)
        self._response_spec = _field(2, spec)
        self._input_key = _field(1, model.input_name.encode())
        self._heads = _Memo(self._head)
        self._response_heads = _Memo(lambda length: b"\x12" + _varint(length))
        self._frame_headers = _Memo(lambda length: frame([bytes(length)])[:12])
        self._outputs: dict[tuple, _OutputEncoder] = {}
        self.id_columns = model.id_columns
        self.class_names = None if class_names is None else list(class_names)
        self.version = model_version
        self._versions = pa.array([], pa.string())  # model_version, once per row of the largest batch
        self.report = ScoreReport(class_counts=None if class_names is None else dict.fromkeys(class_names, 0))
        self.prediction_sum = 0.0

    def _head(self, key: int) -> bytes:
        """A PredictionLog's bytes up to its example, for (example length << 32 | response length)."""
        example_length, response_length = key >> 32, key & 0xFFFFFFFF
        tensor_head = b"\x08\x07" + _field(2, _field(2, b"\x08\x01")) + b"\x42" + _varint(example_length)
        tensor_length = len(tensor_head) + example_length
        entry_length = len(self._input_key) + 1 + len(_varint(tensor_length)) + tensor_length
        request_length = len(self._request_spec) + 1 + len(_varint(entry_length)) + entry_length
        log_length = 2 + len(_varint(request_length)) + request_length
        log_length += len(_varint(response_length)) + response_length
        return (
            b"\x32" + _varint(log_length) + b"\x0a" + _varint(request_length) + self._request_spec
            + b"\x12" + _varint(entry_length) + self._input_key + b"\x12" + _varint(tensor_length) + tensor_head
        )  # fmt: skip

    def encode(
        self, records: list[bytes], outputs: dict[str, np.ndarray], ids: dict[str, pa.Array]
    ) -> tuple[bytes, bytes, int]:
        n = len(records)
        columns = [ids[name] for name in self.id_columns] + self._prediction_columns(outputs, n)
        if len(self._versions) < n:
            self._versions = pa.array([self.version] * n, pa.string())
        columns.append(self._versions.slice(0, n))
        lines = _csv_batch(pa.RecordBatch.from_arrays(columns, names=[f"c{i}" for i in range(len(columns))]))
        self.report.rows += n
        return self._framed_logs(records, outputs), lines, n

    def _framed_logs(self, records: list[bytes], outputs: dict[str, np.ndarray]) -> bytes:
        """The batch's PredictionLogs, TFRecord-framed: each joined from a cached head, the
        example, the outputs' entries and the model spec."""
        n = len(records)
        entries = []
        response_lengths = np.full(n, len(self._response_spec), dtype=np.int64)
        for name in sorted(outputs):  # map entries in key order, as deterministic serialization
            values = outputs[name]
            key = (name, values.dtype, values.shape[1:])
            if key not in self._outputs:
                self._outputs[key] = _OutputEncoder(name, values.dtype, values.shape[1:])
            rows = self._outputs[key].rows(values)
            if isinstance(rows, np.ndarray):
                flat, width = rows.tobytes(), rows.shape[1]
                entries.append([flat[i : i + width] for i in range(0, n * width, width)])
                response_lengths += width
            else:
                entries.append(rows)
                response_lengths += np.fromiter(map(len, rows), dtype=np.int64, count=n)
        example_lengths = np.fromiter(map(len, records), dtype=np.int64, count=n)
        heads = map(self._heads.__getitem__, (example_lengths << 32 | response_lengths).tolist())
        response_heads = map(self._response_heads.__getitem__, response_lengths.tolist())
        logs = list(map(b"".join, zip(heads, records, response_heads, *entries, repeat(self._response_spec))))
        # TFRecord framing, as `frame` writes it: length and its masked CRC32C (cached by length),
        # the data, the data's masked CRC32C (computed here for the whole batch at once).
        crc = np.fromiter(map(google_crc32c.value, logs), dtype=np.uint32, count=n)
        masked = (((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)).astype("<u4").tobytes()
        parts: list[bytes] = [b""] * (3 * n)
        parts[0::3] = map(self._frame_headers.__getitem__, map(len, logs))
        parts[1::3] = logs
        parts[2::3] = [masked[i : i + 4] for i in range(0, 4 * n, 4)]
        return b"".join(parts)

    def _prediction_columns(self, outputs: dict[str, np.ndarray], n: int) -> list[pa.Array]:
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in sorted(outputs.items()))
        if self.class_names is None:
            values = outputs.get("outputs")
            if values is None and len(outputs) == 1:
                values = next(iter(outputs.values()))
            if values is None or values.dtype.kind not in "fiu" or values.size != n:
                raise UserInputError(
                    f"a regression model needs one number per example in its output 'outputs'; this "
                    f"one gives {shapes} for {n} examples"
                )
            self.prediction_sum += float(values.sum(dtype=np.float64))
            return [pa.array(values.reshape(-1))]
        classes, scores = outputs.get("classes"), outputs.get("scores")
        k = len(self.class_names)
        if classes is None or classes.shape != (n,) or scores is None or scores.shape != (n, k):
            raise UserInputError(
                f"a classification model needs the outputs 'classes' [{n}] and 'scores' [{n}, {k}] (one score "
                f"per class of {self.class_names}); this one gives {shapes}"
            )
        predicted = pa.array(classes, pa.binary())
        counts = self.report.class_counts
        assert counts is not None
        for item in pc.value_counts(predicted).to_pylist():
            name = item["values"].decode("utf-8", "replace")
            counts[name] = counts.get(name, 0) + item["counts"]
        return [predicted, *(pa.array(scores[:, j]) for j in range(k))]


def _csv_batch(batch: pa.RecordBatch) -> bytes:
    """The CSV lines of `batch` as csv.writer writes them (its default dialect): Arrow's writer,
    its line ends made CRLF (unquoted, it refuses a value with a comma, a quote or a line break,
    so every LF it writes ends a line), else `_csv_rows`."""
    import pyarrow.csv as pcsv

    sink = pa.BufferOutputStream()
    try:
        pcsv.write_csv(batch, sink, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:
        return _csv_rows(batch)
    return sink.getvalue().to_pybytes().replace(b"\n", b"\r\n")


def _csv_rows(batch: pa.RecordBatch) -> bytes:
    """The CSV lines of `batch` by the csv module, each value as Arrow's writer formats it."""
    columns = []
    for column in batch.columns:
        if pa.types.is_binary(column.type):
            values = [b"" if v is None else v for v in column.to_pylist()]
            columns.append([v.decode("utf-8", "surrogateescape") for v in values])
        else:
            columns.append(["" if v is None else v for v in column.cast(pa.string()).to_pylist()])
    return _csv_lines(zip(*columns))


def _csv_lines(rows) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue().encode("utf-8", "surrogateescape")
