"""Transform over a window of spans with tensorflow-transform's analyzer cache, on real TFT and Beam
over a few spans of a dozen rows: a moved window reads only its new span and gives the graph of a
from-scratch analysis; every span's examples are written; a cache never serves a changed
preprocessing_fn, span or schema."""

import glob
import hashlib
import os

import numpy as np
import pytest

from components.io.tfrecord import read_gzipped, write_gzipped
from components.transform.beam import TransformReport, dataset_key, transform_spans
from pipeline import ExecutionContext
from pipeline.artifacts import Examples
from tests.helpers import decode_examples, read_tfrecords

SPLITS = {"train": 8, "eval": 4}
TOKENS = ["a", "b", "c", "d"]


def preprocessing_fn(inputs):
    import tensorflow_transform as tft

    x, s = inputs["x"], inputs["s"]
    return {
        "x_centered": x - tft.mean(x),
        "x_z": tft.scale_to_z_score(x),
        "s_index": tft.compute_and_apply_vocabulary(s, num_oov_buckets=1, vocab_filename="s"),
    }


def changed_preprocessing_fn(inputs):
    """The same output names and vocabulary file, other statistics: an old cache must not serve it."""
    import tensorflow_transform as tft

    x, s = inputs["x"], inputs["s"]
    return {
        "x_centered": x - tft.mean(x * 2.0),
        "x_z": tft.scale_to_z_score(x + 1.0),
        "s_index": tft.compute_and_apply_vocabulary(s, top_k=2, num_oov_buckets=1, vocab_filename="s"),
    }


def raw_schema():
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(
        {"x": tf.io.FixedLenFeature([], tf.float32), "s": tf.io.FixedLenFeature([], tf.string)}
    )


def span_rows(span: int, split: str, n: int, seed: int) -> list[tuple[float, str]]:
    """Span k: x around 10 k, spread 1 + k; tokens the first k of a, b, c, d (so token d arrives
    with span 4)."""
    rng = np.random.default_rng([seed, len(split)])
    xs = rng.normal(10.0 * span, 1.0 + span, n).astype(np.float32)
    tokens = TOKENS[: min(span, len(TOKENS))]
    return [(float(x), tokens[i % len(tokens)]) for i, x in enumerate(xs)]


def write_span(root, span: int, examples_id: int) -> Examples:
    import tensorflow as tf

    examples = Examples(str(root / f"span-{span}-{examples_id}"))
    for split, n in SPLITS.items():
        records = [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
                        "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode()])),
                    }
                )
            ).SerializeToString()
            for x, s in span_rows(span, split, n, seed=examples_id)
        ]
        write_gzipped(os.path.join(examples.split_uri(split), "data_tfrecord-00000-00000.gz"), records)
    examples.split_names = list(SPLITS)
    examples.set("span", span)
    examples.id = examples_id
    return examples


class Run:
    """One call of transform_spans and where it wrote."""

    def __init__(self, root, name, spans, fn=preprocessing_fn, schema=None, cache_in=None, cache_out=False):
        self.graph = str(root / name / "graph")
        self.examples = Examples(str(root / name / "examples"))
        self.cache = str(root / name / "cache") if cache_out else None
        self.lines: list[str] = []
        ctx = ExecutionContext("t", str(root), "Transform", 1, "run", sink=self.lines.append)
        self.report: TransformReport = transform_spans(
            ctx,
            fn,
            schema or raw_schema(),
            spans,
            ["train"],
            self.graph,
            self.examples,
            str(root / name / "tmp"),
            cache_in=cache_in,
            cache_out=self.cache,
        )

    def apply(self, batch: dict) -> dict:
        import tensorflow as tf
        import tensorflow_transform as tft

        output = tft.TFTransformOutput(self.graph)
        raw = {name: tf.constant(values) for name, values in batch.items()}
        return {name: t.numpy() for name, t in output.transform_raw_features(raw).items()}

    def vocabulary(self) -> bytes:
        import tensorflow_transform as tft

        with open(tft.TFTransformOutput(self.graph).vocabulary_file_by_name("s"), "rb") as f:
            return f.read()


RAW_BATCH = {"x": [-3.0, 0.0, 17.5, 31.25, 40.0], "s": [b"a", b"b", b"c", b"d", b"never-seen"]}


def train_mean(spans: list[int]) -> float:
    """The mean of x over the train rows of `spans` (as written by `write_span` with id = span)."""
    return float(np.mean([x for span in spans for x, _ in span_rows(span, "train", SPLITS["train"], span)]))


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    root = tmp_path_factory.mktemp("spans")
    return {span: write_span(root, span, examples_id=span) for span in range(1, 5)}


@pytest.fixture(scope="module")
def runs(spans, tmp_path_factory):
    """The window [1, 2, 3] from scratch writing a cache, then [2, 3, 4] with it and without."""
    root = tmp_path_factory.mktemp("runs")
    first = Run(root, "first", [spans[1], spans[2], spans[3]], cache_out=True)
    moved = Run(root, "moved", [spans[2], spans[3], spans[4]], cache_in=first.cache, cache_out=True)
    scratch = Run(root, "scratch", [spans[2], spans[3], spans[4]])
    return {"root": root, "first": first, "moved": moved, "scratch": scratch}


def assert_same_graph(run, reference):
    """Vocabularies byte for byte, and the transform_fn's outputs on one raw batch: exact for the
    vocabulary indices; the float statistics within 1e-6 relative, since a cached analysis merges
    per-span accumulators where a from-scratch one accumulates all rows at once (here they came out
    equal to the last bit, with the cache and without)."""
    assert run.vocabulary() == reference.vocabulary()
    ours, theirs = run.apply(RAW_BATCH), reference.apply(RAW_BATCH)
    assert sorted(ours) == sorted(theirs)
    np.testing.assert_array_equal(ours["s_index"], theirs["s_index"])
    for name in ("x_centered", "x_z"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, atol=0)


# ---- a moving window ---------------------------------------------------------------------------


def test_a_moved_window_reads_only_its_new_span_and_gives_the_from_scratch_graph(runs):
    first, moved, scratch = runs["first"], runs["moved"], runs["scratch"]
    assert (first.report.analyzed_spans, first.report.cached_spans) == ([1, 2, 3], [])
    assert (moved.report.analyzed_spans, moved.report.cached_spans) == ([4], [2, 3])
    assert (scratch.report.analyzed_spans, scratch.report.cached_spans) == ([2, 3, 4], [])
    assert any("span(s) 2, 3 from the cache, span(s) 4 analyzed" in line for line in moved.lines)
    assert_same_graph(moved, scratch)
    centered = moved.apply(RAW_BATCH)["x_centered"]
    np.testing.assert_allclose(centered, np.array(RAW_BATCH["x"]) - train_mean([2, 3, 4]), rtol=1e-5)
    assert b"d" in moved.vocabulary().split() and b"d" not in first.vocabulary().split()  # came with span 4


def test_the_updated_cache_holds_the_window_s_spans_only(runs):
    def spans_in(cache):
        return sorted(int(name.split("-")[1]) for name in os.listdir(cache))

    assert spans_in(runs["first"].cache) == [1, 2, 3]
    assert spans_in(runs["moved"].cache) == [2, 3, 4]


def test_a_window_wholly_in_the_cache_reads_no_data_for_analysis(runs, spans):
    again = Run(runs["root"], "again", [spans[2], spans[3], spans[4]], cache_in=runs["moved"].cache)
    assert (again.report.analyzed_spans, again.report.cached_spans) == ([], [2, 3, 4])
    assert_same_graph(again, runs["scratch"])


# ---- the transformed examples ------------------------------------------------------------------


def test_every_split_of_every_span_is_transformed_and_counted(runs):
    report, examples = runs["moved"].report, runs["moved"].examples
    assert report.span_counts == {(span, split): n for span in (2, 3, 4) for split, n in SPLITS.items()}
    assert report.counts == {split: 3 * n for split, n in SPLITS.items()}
    for split, n in SPLITS.items():
        rows = decode_examples(read_tfrecords(examples.split_uri(split)))
        assert len(rows) == 3 * n
        assert sorted(rows[0]) == ["s_index", "x_centered", "x_z"]
        for span in (2, 3, 4):
            files = glob.glob(os.path.join(examples.split_uri(split), f"data_tfrecord-span-{span}-*.gz"))
            assert files and sum(len(batch) for path in files for batch in read_gzipped(path)) == n


def test_a_window_of_one_span_without_a_cache_transforms_as_before(spans, tmp_path):
    run = Run(tmp_path, "one", [spans[1]])
    assert run.report.span_counts == {(1, split): n for split, n in SPLITS.items()}
    assert (run.report.analyzed_spans, run.report.cached_spans) == ([1], [])
    assert sorted(os.listdir(run.graph)) == ["metadata", "transform_fn", "transformed_metadata"]
    assert all(name.startswith("data_tfrecord-") for name in os.listdir(run.examples.split_uri("train")))


# ---- what a cache must never serve -------------------------------------------------------------


def test_a_changed_preprocessing_fn_with_the_old_cache_equals_no_cache(runs, spans):
    window, root = [spans[3], spans[4]], runs["root"]
    cached = Run(root, "changed", window, fn=changed_preprocessing_fn, cache_in=runs["moved"].cache)
    fresh = Run(root, "changed-scratch", window, fn=changed_preprocessing_fn)
    assert cached.report.analyzed_spans == [3, 4]
    assert_same_graph(cached, fresh)
    centered = cached.apply(RAW_BATCH)["x_centered"]  # x - mean(2 x): an old mean(x) entry would show
    np.testing.assert_allclose(centered, np.array(RAW_BATCH["x"]) - 2 * train_mean([3, 4]), rtol=1e-5)


def test_a_rewritten_span_or_another_schema_gets_another_cache_key(spans, tmp_path):
    schema = raw_schema()
    digest = hashlib.sha256(schema.SerializeToString(deterministic=True)).hexdigest()
    key = dataset_key(spans[3], "train", digest)
    assert key.is_cached and key.key.startswith("span-3-train-")
    assert dataset_key(spans[3], "train", digest) == key
    rewritten = write_span(tmp_path, 3, examples_id=33)  # span 3 again: another artifact
    assert dataset_key(rewritten, "train", digest) != key
    rewritten.id = spans[3].id
    rewritten.custom_properties["fingerprint"] = "content:0123"  # same id, other content
    assert dataset_key(rewritten, "train", digest) != key
    assert dataset_key(spans[3], "eval", digest) != key
    schema.feature[0].annotation.tag.append("changed")
    other = hashlib.sha256(schema.SerializeToString(deterministic=True)).hexdigest()
    assert dataset_key(spans[3], "train", other) != key
    anonymous = Examples(spans[3].uri)
    anonymous.set("span", 3)
    assert not dataset_key(anonymous, "train", digest).is_cached  # nothing tells it from a rewrite


def test_the_cache_directories_must_differ(spans, tmp_path):
    with pytest.raises(ValueError, match="cache_out must be a new directory"):
        Run(tmp_path, "same", [spans[1]], cache_in=str(tmp_path / "same" / "cache"), cache_out=True)
