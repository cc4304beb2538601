"""Bulk reading of gzipped tf.Example shards into Arrow record batches, in a real Beam pipeline."""

import gzip
import os
import pickle

import apache_beam as beam
import pytest
import tensorflow as tf

from components.io.example_batches import ReadExampleBatches
from components.io.tfrecord import write_gzipped
from pipeline import UserInputError


def example(species: str, mass: int | None) -> bytes:
    feature = {"species": tf.train.Feature(bytes_list=tf.train.BytesList(value=[species.encode()]))}
    if mass is not None:
        feature["body_mass_g"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[mass]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture
def shards(tmp_path):
    records = [example("Adelie", 3700 + i) for i in range(5)] + [example("Gentoo", None)]
    write_gzipped(str(tmp_path / "data-0.gz"), records[:4])
    write_gzipped(str(tmp_path / "data-1.gz"), records[4:])
    return str(tmp_path / "*.gz"), records


def collect(pattern, out: str, **kwargs) -> list:
    """The record batches the transform yields, saved by the pipeline to `out` and loaded back."""

    def save(batches):
        with open(out, "wb") as f:
            pickle.dump(batches, f)

    with beam.Pipeline() as p:
        _ = p | ReadExampleBatches([pattern], **kwargs) | beam.combiners.ToList() | beam.Map(save)
    with open(out, "rb") as f:
        return pickle.load(f)


def test_every_record_arrives_once_in_batches_of_at_most_the_batch_size(shards, tmp_path):
    pattern, records = shards
    batches = collect(pattern, str(tmp_path / "out"), batch_size=3)
    assert max(b.num_rows for b in batches) <= 3
    rows = [row for b in batches for row in b.to_pylist()]
    assert sorted(r["body_mass_g"] and r["body_mass_g"][0] or 0 for r in rows) == [
        0,
        3700,
        3701,
        3702,
        3703,
        3704,
    ]
    assert sorted(r["species"][0] for r in rows) == [b"Adelie"] * 5 + [b"Gentoo"]


def test_columns_are_kept_as_asked_and_raw_records_attached(shards, tmp_path):
    pattern, records = shards
    batches = collect(pattern, str(tmp_path / "out"), columns=["species"], raw_record_column_name="__raw__")
    assert {tuple(b.schema.names) for b in batches} == {("species", "__raw__")}
    raw = sorted(r for b in batches for r in b.column("__raw__").to_pylist())
    assert raw == sorted([r] for r in records)


def test_a_truncated_shard_is_named_with_what_to_do(tmp_path):
    path = str(tmp_path / "data-0.gz")
    write_gzipped(path, [example("Adelie", 3700)] * 100)
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    with open(path, "wb") as f:
        f.write(gzip.compress(data[: len(data) // 2 + 5]))  # ends inside a record
    with pytest.raises(Exception, match=r"data-0.gz is truncated .*rerun the step that wrote it"):
        collect(str(tmp_path / "*.gz"), str(tmp_path / "out"))


def test_no_matching_file_is_refused_before_the_pipeline_runs(tmp_path):
    with pytest.raises(UserInputError, match="no TFRecord files match"):
        collect(os.path.join(str(tmp_path), "*.gz"), str(tmp_path / "out"))
