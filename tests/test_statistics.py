"""Statistics against numpy on inline rows, accumulator merging, and schema inference."""

import pickle

import numpy as np
import pyarrow as pa
import pytest

from components.example_gen import csv_to_examples as csv2ex
from components.schema_gen.inference import infer_schema
from components.statistics_gen.statistics import SplitAccumulator, decode_examples, feature_stats, to_proto

ROWS = {
    "mass": ["3750", "0", None, "4725", "3500", None, "5700", "3900"],
    "bill": ["39.1", "47.3", "46.5", None, "50.0", "37.2", "41.1", "0"],
    "island": ["Dream", "Biscoe", "Biscoe", None, "Dream", "Biscoe", "Torgersen", "Biscoe"],
}
TYPES = {"mass": "int", "bill": "float", "island": "string"}


def examples_of(rows: dict, types: dict | None = None) -> list[bytes]:
    table = pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in rows.items()})
    batch = csv2ex.CsvBatch(csv2ex.Chunk("f.csv", 0, 0, 0, 0, 2), table, b"")
    return list(csv2ex.encode_examples(csv2ex.parse_columns(batch, types or TYPES)))


def statistics_of(rows: dict, pieces: int = 1, types: dict | None = None):
    """Statistics over `pieces` accumulators merged after a pickle round trip, as Beam does."""
    records = examples_of(rows, types)
    accumulators = []
    for part in np.array_split(np.arange(len(records)), pieces):
        acc = SplitAccumulator()
        acc.add_batch(decode_examples([records[i] for i in part]))
        accumulators.append(pickle.loads(pickle.dumps(acc)))
    merged = SplitAccumulator()
    for acc in accumulators:
        merged.merge(acc)
    return to_proto("train", merged)


@pytest.mark.parametrize("pieces", [1, 3])
def test_numeric_statistics_match_numpy(pieces):
    dataset = statistics_of(ROWS, pieces)
    stats = feature_stats(dataset)
    assert dataset.num_examples == 8
    for name, cast in (("mass", int), ("bill", float)):
        values = np.array([cast(v) for v in ROWS[name] if v is not None], dtype=np.float64)
        num = stats[name].num_stats
        assert num.common_stats.num_non_missing == len(values)
        assert num.common_stats.num_missing == 8 - len(values)
        assert num.common_stats.min_num_values == num.common_stats.max_num_values == 1
        assert num.min == pytest.approx(values.min(), rel=1e-6)
        assert num.max == pytest.approx(values.max(), rel=1e-6)
        assert num.mean == pytest.approx(values.mean(), rel=1e-6)
        assert num.std_dev == pytest.approx(values.std(), rel=1e-6)
        assert num.num_zeros == int((values == 0).sum()) == 1
        assert num.median == pytest.approx(np.median(values), rel=0.05)
        standard = [h for h in num.histograms if h.type == 0][0]
        assert sum(b.sample_count for b in standard.buckets) == pytest.approx(len(values))


def test_string_statistics_match_counting():
    strings = feature_stats(statistics_of(ROWS, pieces=2))["island"].string_stats
    values = [v for v in ROWS["island"] if v is not None]
    assert strings.common_stats.num_missing == 1
    assert strings.unique == len(set(values)) == 3
    assert [(v.value, v.frequency) for v in strings.top_values] == [
        ("Biscoe", 4),
        ("Dream", 2),
        ("Torgersen", 1),
    ]
    assert strings.avg_length == pytest.approx(np.mean([len(v) for v in values]))


def test_accumulator_size_does_not_grow_with_the_row_count():
    sizes = {}
    for rows in (20_000, 100_000):
        acc = SplitAccumulator()
        for start in range(0, rows, 20_000):
            ids = range(start, start + 20_000)
            table = pa.RecordBatch.from_pydict(
                {
                    "id": pa.array([[f"user-{i}".encode()] for i in ids], pa.large_list(pa.large_binary())),
                    "x": pa.array([[float(i)] for i in ids], pa.large_list(pa.float32())),
                }
            )
            acc.add_batch(table)
        sizes[rows] = len(pickle.dumps(acc))
        stats = feature_stats(to_proto("train", acc))
        assert stats["id"].string_stats.unique == pytest.approx(rows, rel=0.1)
        assert stats["x"].num_stats.median == pytest.approx(rows / 2, rel=0.02)
    assert sizes[100_000] < 1.1 * sizes[20_000] < 1_000_000


def test_schema_inference_leaves_ranges_and_presence_open():
    from tensorflow_metadata.proto.v0 import schema_pb2

    inferred = infer_schema(statistics_of(ROWS))
    features = {f.name: f for f in inferred.proto.feature}
    assert features["mass"].type == schema_pb2.INT
    assert features["bill"].type == schema_pb2.FLOAT
    assert features["island"].type == schema_pb2.BYTES
    # Something is missing in each: optional, with no share pinned to the one observed.
    for name in ("mass", "bill", "island"):
        assert not features[name].presence.HasField("min_fraction")
        assert (features[name].value_count.min, features[name].value_count.max) == (1, 1)
    # No numeric range copied from the extremes seen; the note says where one is set.
    assert not features["mass"].HasField("int_domain") and not features["bill"].HasField("float_domain")
    assert "seen from 0 to 5700; no range set (add int_domain" in inferred.notes["mass"]
    [domain] = inferred.proto.string_domain
    assert features["island"].domain == domain.name == "island"
    assert list(domain.value) == ["Biscoe", "Dream", "Torgersen"]

    complete = infer_schema(statistics_of({"mass": ["1", "2"], "bill": ["1.5", "2"], "island": ["a", "b"]}))
    required = {f.name: f for f in complete.proto.feature}["mass"]
    assert required.presence.min_fraction == 1.0 and [d.size for d in required.shape.dim] == [1]


def test_free_text_ids_and_dates_are_not_closed_domains():
    """Told apart by their values, not only by how many there are: a few comments that repeat and
    a month's date in every row would pass the count, and stay open all the same."""
    rows = {
        "comment": ["Nest, never observed", "Adult not sampled.", "ok", "Nest, never observed", "late", "x"],
        "date": ["2007-11-11", "2007-11-12", "2007-11-16", "2007-11-16", "2007-11-17", "2007-11-18"],
        "island": ["Dream", "Biscoe", "Dream", "Biscoe", "Dream", "Biscoe"],
        "remark": [
            "Adult not sampled, blood only.",
            None,
            None,
            "Adult not sampled, blood only.",
            None,
            None,
        ],
        "month": ["2007-11-01"] * 6,
        "stage": ["Adult, 1 Egg Stage"] * 6,
    }
    inferred = infer_schema(statistics_of(rows, types=dict.fromkeys(rows, "string")))
    features = {f.name: f for f in inferred.proto.feature}
    assert not any(features[n].domain for n in ("comment", "date", "remark", "month"))
    assert features["island"].domain == "island" and features["stage"].domain == "stage"
    assert "not a closed list" in inferred.notes["comment"] and "open: date" in inferred.notes["date"]
    assert "open: free text" in inferred.notes["remark"] and "open: date" in inferred.notes["month"]
    assert inferred.kinds == {"date": "date", "remark": "free text", "month": "date"}


def test_schema_from_several_splits_accepts_values_and_gaps_of_each():
    train = statistics_of({"mass": ["1", "2", "3", "4"], "island": ["a", "a", "b", "b"]})
    evaluation = statistics_of({"mass": ["5", None], "island": ["c", "c"]})
    inferred = infer_schema([train, evaluation])
    features = {f.name: f for f in inferred.proto.feature}
    assert not features["mass"].presence.HasField("min_fraction")  # missing only in the eval split
    assert "missing in 1 of 6 examples" in inferred.notes["mass"]
    assert list(inferred.proto.string_domain[0].value) == ["a", "b", "c"]


def test_schema_text_reads_back_with_its_comments():
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.schema_gen.inference import schema_text

    inferred = infer_schema(statistics_of(ROWS))
    text = schema_text(inferred, "inline rows")
    assert "# mass: optional (missing in 2 of 8 examples" in text
    assert text_format.Parse(text, schema_pb2.Schema()) == inferred.proto
