"""Transform's Beam pipeline: tensorflow-transform analyzes some splits of a window of spans and
transforms every split of every span.

    span s Split-train ─ReadAnalyzed[s][train]─▶ ┐  (not read when cache_in covers it)
                     cache_in ─ReadCache─▶       ├─Analyze─▶ transform_fn ─WriteTransformFn─▶ transform_fn/, transformed_metadata/
                                                 └─▶ accumulators of what was read ─WriteCache─▶ cache_out/<dataset key>/
    span s Split-x, every s and x ─Read─▶ batches tagged (s, x) ─Transform─▶ ─BySource─▶ ─Encode[s][x]─▶ ─Write[s][x]─▶
                                             Split-x/data_tfrecord-span-<s>-*.gz
                                                          └─Count[s][x]─▶ rows per (span, split) ─WriteCounts─▶ JSON lines

Records travel as Arrow record batches, read a shard at a time and decoded with the raw schema
(`example_batches`), and stay batches through the transform until they are encoded as tf.Examples
for writing. Every split of every span goes through one transform (its graph loaded once), each
batch carrying its (span, split) in a column TFT passes through, SOURCE_COLUMN.

**The analyzer cache** is tensorflow-transform's, as TFX's Transform uses it (its `analyzer_cache`
input and `updated_analyzer_cache` output). Analysis is split into datasets, one per (span,
analyzed split); TFT keeps each analyzer's accumulator per dataset under a key made of the
analyzer's fingerprint (its graph path from the raw features), and merges the window's
accumulators. A cache directory holds a directory per dataset:

    <cache>/span-<span>-<split>-<digest>/MANIFEST              entry key -> entry number (TFT's)
    <cache>/span-<span>-<split>-<digest>/<n>-00000-of-00001.gz  one accumulator, gzipped TFRecord

`digest` covers the span, the split, the Examples artifact (its id and its `fingerprint`) and the
raw schema: a span whose files changed, or a changed schema (whose defaults fill missing values
before any analyzer, outside the fingerprinted graph), never meets its old entries, and a changed
`preprocessing_fn` misses the entries of each analyzer whose graph path changed. A dataset whose
every accumulator is in `cache_in` is not read. `cache_out` gets the window's dataset directories
from `cache_in`, copied whole as TFX does (entries of an earlier `preprocessing_fn` ride along,
never read, until their span leaves the window), and the accumulators computed here. TFT writes
the manifests while the pipeline is built, before any data: `cache_out` is whole only once
`transform_spans` returns, and must not be `cache_in`. TFT's own entry reader and writer take two
or three Beam stages per entry, and its METADATA file (a dataset's size, for TFT's counters)
more to read back: entries are read and written here in one step each, without METADATA (absent
is fine for TFT), and a cache TFX wrote (`<n>-*-of-*.gz`, METADATA) reads the same.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.beam import analysis_graph_builder, analyzer_cache
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.coders import example_coder
from tfx_bsl.public import tfxio

from components.io.example_batches import BATCH_SIZE, ReadExampleBatches, read_shard, shard_files
from components.io.tfrecord import COMPRESS_LEVEL, frame, read_gzipped, write_gzipped
from pipeline import ExecutionContext, UserInputError
from pipeline.artifacts import Examples

EXAMPLES_GLOB = "data_tfrecord-*.gz"
EXAMPLES_PREFIX = "data_tfrecord"
# Which (span, split) a batch being transformed came from: its index, a column TFT passes through.
SOURCE_COLUMN = "__transform_source__"
_SOURCE_FIELD = pa.field(SOURCE_COLUMN, pa.list_(pa.int64()))


@dataclass(frozen=True)
class TransformReport:
    """What `transform_spans` did. span_counts: rows written per (span, split) (none when it wrote
    no examples). analyzed_spans:
    the spans whose analyzed splits the analyzers read; cached_spans: those whose analysis came
    whole from the cache, unread (oldest first, as given)."""

    span_counts: dict[tuple[int, str], int]
    analyzed_spans: list[int]
    cached_spans: list[int]

    @property
    def counts(self) -> dict[str, int]:
        """Rows written per split, all spans together."""
        counts: Counter[str] = Counter()
        for (_, split), rows in self.span_counts.items():
            counts[split] += rows
        return dict(counts)


@dataclass(frozen=True)
class _Dataset:
    """One (span, analyzed split): its files and its key in the analyzer cache."""

    span: int
    split: str
    pattern: str
    key: analyzer_cache.DatasetKey


def transform_spans(
    ctx: ExecutionContext,
    preprocessing_fn: Callable,
    raw_schema,
    spans: list[Examples],
    analyze_splits: list[str],
    output_dir: str,
    transformed_examples: Examples | None,
    temp_dir: str,
    cache_in: str | None = None,
    cache_out: str | None = None,
) -> TransformReport:
    """Analyzes `analyze_splits` of every span of the window `spans` (oldest first; each with its
    `span` property) with `preprocessing_fn`, reusing what `cache_in` (an earlier `cache_out`)
    holds, and transforms every split of every span.

    Writes TFT's output (`transform_fn/`, `transformed_metadata/`) and the raw schema (`metadata/`)
    to `output_dir`; each span's rows of each split to
    `transformed_examples/Split-<split>/data_tfrecord-span-<span>-*.gz` (readers of `*.gz` get the
    window), or nothing when `transformed_examples` is None (analysis only, TFX's
    `materialize=False`); and with `cache_out`, the updated analyzer cache of this window (layout
    in the module's docstring). Without either cache directory, analysis reads all the data in one
    pass, as TFT's AnalyzeDataset.

    Raises ValueError for an empty window, a span without a number or given twice, or
    `cache_in == cache_out` (TFT writes a cache's manifest before its data); UserInputError for a
    span that lacks an analyzed split."""
    datasets = _datasets(spans, analyze_splits, raw_schema)
    if cache_in and cache_out and os.path.abspath(cache_in) == os.path.abspath(cache_out):
        raise ValueError(f"cache_in and cache_out are both {cache_in}; cache_out must be a new directory")
    counts_prefix = os.path.join(temp_dir, "counts", "part")
    inputs = {
        (examples.get("span"), split): os.path.join(examples.split_uri(split), EXAMPLES_GLOB)
        for examples in spans
        for split in examples.split_names
    }
    input_bytes = sum(os.path.getsize(path) for pattern in inputs.values() for path in glob.glob(pattern))
    adapter_config = _tensor_adapter_config(list(inputs.values()), raw_schema)
    with ctx.beam_pipeline(input_bytes=input_bytes) as p, tft_beam.Context(temp_dir=temp_dir):
        if cache_in is None and cache_out is None:
            transform_fn = _analyze_together(p, preprocessing_fn, raw_schema, datasets, adapter_config)
            read = datasets
        else:
            transform_fn, read = _analyze_with_cache(
                p, preprocessing_fn, raw_schema, datasets, adapter_config, cache_in, cache_out
            )
            _log_cache_use(ctx, datasets, read, cache_in)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(output_dir)
        if transformed_examples is not None:
            counts = _transform_all(p, inputs, raw_schema, adapter_config, transform_fn, transformed_examples)
            _ = (
                counts
                | "AllSplits" >> beam.Flatten()
                | "SumCounts" >> beam.CombinePerKey(sum)
                | "CountsAsJson" >> beam.Map(json.dumps)
                | "WriteCounts" >> beam.io.WriteToText(counts_prefix)
            )
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(raw_schema),
        os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    analyzed = {d.span for d in read}
    span_counts: dict[tuple[int, str], int] = {}
    if transformed_examples is not None:
        written = _read_counts(counts_prefix)
        span_counts = {source: written.get(source, 0) for source in inputs}
    return TransformReport(
        span_counts=span_counts,
        analyzed_spans=[s.get("span") for s in spans if s.get("span") in analyzed],
        cached_spans=[s.get("span") for s in spans if s.get("span") not in analyzed],
    )


def _datasets(spans: list[Examples], analyze_splits: list[str], raw_schema) -> list[_Dataset]:
    if not spans:
        raise ValueError("transform_spans needs at least one span")
    numbers = [examples.get("span") for examples in spans]
    if None in numbers or len(set(numbers)) != len(numbers):
        raise ValueError(f"every span needs its own `span` number; got {numbers} for {spans}")
    schema_digest = hashlib.sha256(raw_schema.SerializeToString(deterministic=True)).hexdigest()
    datasets = []
    for examples in spans:
        missing = [split for split in analyze_splits if split not in examples.split_names]
        if missing:
            raise UserInputError(
                f"analyze_splits names {missing}, which span {examples.get('span')} does not have "
                f"(splits: {examples.split_names})"
            )
        for split in analyze_splits:
            pattern = os.path.join(examples.split_uri(split), EXAMPLES_GLOB)
            datasets.append(
                _Dataset(examples.get("span"), split, pattern, dataset_key(examples, split, schema_digest))
            )
    return datasets


def dataset_key(examples: Examples, split: str, schema_digest: str) -> analyzer_cache.DatasetKey:
    """The cache key of one analyzed split of one span: `span-<span>-<split>-<digest>` (see the
    module's docstring). An artifact with neither an id nor a fingerprint cannot be told from a
    rewritten one: its key is never cached."""
    identity = [examples.get("span"), split, examples.id, examples.get("fingerprint"), schema_digest]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", split)
    key = analyzer_cache.DatasetKey(f"span-{examples.get('span')}-{readable}-{digest}")
    if examples.id is None and examples.get("fingerprint") is None:
        return key.non_cacheable()
    return key


def _analyze_together(p, preprocessing_fn, raw_schema, datasets: list[_Dataset], adapter_config):
    """TFT's transform_fn from one read of every analyzed split of every span."""
    return (
        p | "ReadAnalyzed" >> ReadExampleBatches([d.pattern for d in datasets], raw_schema),
        adapter_config,
    ) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)


def _analyze_with_cache(
    p, preprocessing_fn, raw_schema, datasets: list[_Dataset], adapter_config, cache_in, cache_out
):
    """TFT's transform_fn from the accumulators in `cache_in` and a read of the datasets they do
    not cover; writes the window's accumulators to `cache_out` when given. Returns the transform_fn
    and the datasets read."""
    keys = [d.key for d in datasets]
    specs = tfxio.TensorAdapter(adapter_config).OriginalTypeSpecs()
    use_tf_compat_v1 = tft_beam.Context.get_use_tf_compat_v1()
    input_cache: dict = {}
    if cache_in is not None:
        # Only the entries the current preprocessing_fn can use: the others are never read.
        entry_keys = analysis_graph_builder.get_analysis_cache_entry_keys(
            preprocessing_fn, specs, keys, use_tf_compat_v1
        )
        input_cache = p | "ReadCache" >> analyzer_cache.ReadAnalysisCacheFromFS(
            cache_in, keys, cache_entry_keys=entry_keys, source=_ReadCacheEntry
        )
    needed = analysis_graph_builder.get_analysis_dataset_keys(
        preprocessing_fn, specs, keys, input_cache, use_tf_compat_v1
    )
    read = [d for d in datasets if d.key in needed]
    data = {
        d.key: (
            p | f"ReadAnalyzed[{d.span}][{d.split}]" >> ReadExampleBatches([d.pattern], raw_schema)
            if d in read
            else None
        )
        for d in datasets
    }
    transform_fn, cache_output = (data, input_cache, adapter_config) | "Analyze" >> (
        tft_beam.AnalyzeDatasetWithCache(preprocessing_fn, pipeline=p)
    )
    if cache_out is not None:
        os.makedirs(cache_out, exist_ok=True)
        # Before WriteAnalysisCacheToFS, which merges into the manifests it finds when applied.
        for key in keys if cache_in is not None else []:
            if os.path.isdir(os.path.join(cache_in, key.key)):
                shutil.copytree(os.path.join(cache_in, key.key), os.path.join(cache_out, key.key))
        if cache_output:
            accumulators = {key: cache._replace(metadata=None) for key, cache in cache_output.items()}
            _ = accumulators | "WriteCache" >> analyzer_cache.WriteAnalysisCacheToFS(
                p, cache_out, dataset_keys=keys, sink=_WriteCacheEntry
            )
    return transform_fn, read


class _ReadCacheEntry(beam.PTransform):
    """The records of one cache entry's files (`<n>-*-of-*.gz`), read in one step."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        return pbegin | beam.Create([self._pattern]) | beam.FlatMap(_records_matching)


def _records_matching(pattern: str):
    for path in sorted(glob.glob(pattern)):
        for records in read_gzipped(path):
            yield from records


class _WriteCacheEntry(beam.PTransform):
    """One cache entry's records as one file, `<n>-00000-of-00001.gz`, gzipped TFRecord."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pcoll):
        path = f"{self._path}-00000-of-00001.gz"
        return pcoll | beam.combiners.ToList() | beam.Map(lambda records: write_gzipped(path, records))


def _log_cache_use(ctx: ExecutionContext, datasets: list[_Dataset], read: list[_Dataset], cache_in) -> None:
    spans = list(dict.fromkeys(d.span for d in datasets))
    analyzed = list(dict.fromkeys(d.span for d in read))
    cached = [span for span in spans if span not in analyzed]
    ctx.log(
        f"analyzer cache {cache_in or '(none yet)'}: "
        f"span(s) {', '.join(map(str, cached)) or 'none'} from the cache, "
        f"span(s) {', '.join(map(str, analyzed)) or 'none'} analyzed"
    )


def _tensor_adapter_config(patterns: list[str], raw_schema):
    """How TFT turns the record batches into tensors: TFXIO's, for the raw schema."""
    return tfxio.TFExampleRecord(
        file_pattern=patterns, schema=raw_schema, telemetry_descriptors=["Transform"]
    ).TensorAdapterConfig()


def _transform_all(p, inputs: dict, raw_schema, adapter_config, transform_fn, transformed_examples: Examples):
    """Transforms every split of every span (`inputs`: (span, split) -> files) in one TFT
    transform, each batch tagged with its (span, split) in TFT's passthrough column
    SOURCE_COLUMN, and writes each apart; returns PCollections of ((span, split), rows in a batch).

    One transform loads the transform graph once, where one per split of each span loaded it 24
    times for 12 spans (most of a moved window's Transform on small spans); one read for all of
    them keeps the transform in the reading's Beam stage, where a Flatten of a read per split of
    each span had every batch buffered between stages."""
    sources = list(inputs)
    tagged_config = tfxio.TensorAdapterConfig(
        adapter_config.arrow_schema.append(_SOURCE_FIELD), adapter_config.tensor_representations
    )
    batches = p | "Read" >> _ReadTaggedBatches([inputs[source] for source in sources], raw_schema)
    with tft_beam.Context(passthrough_keys={SOURCE_COLUMN}):
        transformed, _ = ((batches, tagged_config), transform_fn) | "Transform" >> tft_beam.TransformDataset(
            output_record_batches=True
        )
    parts = transformed | "BySource" >> beam.Partition(_source_of, len(sources))
    counts = []
    for index, (span, split) in enumerate(sources):
        prefix = os.path.join(transformed_examples.split_uri(split), f"{EXAMPLES_PREFIX}-span-{span}")
        _ = (
            parts[index]
            | f"Encode[{span}][{split}]" >> beam.ParDo(_EncodeExamples())
            | f"Write[{span}][{split}]" >> beam.io.Write(_FramedRecordsSink(prefix))
        )
        counts.append(
            parts[index]
            | f"Count[{span}][{split}]"
            >> beam.Map(lambda batch, key: (key, batch[0].num_rows), (span, split))
        )
    return counts


@beam.ptransform_fn
def _ReadTaggedBatches(p, patterns: list[str], raw_schema):  # noqa: N802 - a PTransform
    """ReadExampleBatches over the files of every pattern at once, each batch tagged with its
    pattern's index in SOURCE_COLUMN."""
    shards = []
    for index, pattern in enumerate(patterns):
        files = shard_files([pattern])
        if not files:
            raise UserInputError(f"no TFRecord files match {pattern}")
        shards += [(index, path) for path in files]
    return (
        p
        | "Shards" >> beam.Create(shards)
        | "Spread" >> beam.Reshuffle()
        | "ReadShard" >> beam.FlatMap(_read_tagged_shard)
        | "Decode" >> beam.ParDo(_DecodeTagged(raw_schema.SerializeToString()))
    )


def _read_tagged_shard(shard: tuple[int, str]):
    index, path = shard
    for records in read_shard(path, BATCH_SIZE):
        yield index, records


class _DecodeTagged(beam.DoFn):
    """(source index, serialized tf.Examples) -> their record batch, tagged with the index."""

    def __init__(self, serialized_schema: bytes):
        self._schema = serialized_schema

    def setup(self):
        self._decoder = example_coder.ExamplesToRecordBatchDecoder(self._schema)

    def process(self, shard_records):
        index, records = shard_records
        yield _tag(self._decoder.DecodeBatch(records), index)


def _tag(batch: pa.RecordBatch, source: int) -> pa.RecordBatch:
    """`batch` with SOURCE_COLUMN: `[source]` in every row (TFT passes through lists of one value)."""
    rows = batch.num_rows
    column = pa.ListArray.from_arrays(
        pa.array(np.arange(rows + 1, dtype=np.int32)), pa.array(np.full(rows, source, dtype=np.int64))
    )
    return pa.RecordBatch.from_arrays([*batch.columns, column], schema=batch.schema.append(_SOURCE_FIELD))


def _source_of(transformed, partitions: int) -> int:
    """Which part of `partitions` a transformed batch goes to: its source's index."""
    batch, _ = transformed
    return batch.column(SOURCE_COLUMN).flatten()[0].as_py()


class _EncodeExamples(beam.DoFn):
    """(record batch, passthrough features) -> the batch's rows as tf.Examples (SOURCE_COLUMN
    left out), TFRecord-framed in one bytes element, so that Beam handles one element per batch
    rather than one per row."""

    def setup(self):
        self.encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, batch_and_passthrough):
        yield frame(self.encoder.encode(batch_and_passthrough[0].drop_columns([SOURCE_COLUMN])))


class _FramedRecordsSink(beam.io.filebasedsink.FileBasedSink):
    """Gzipped TFRecord files from elements that are already framed runs of records; Beam's file
    sink supplies the temporary files, the sharding and the rename into place on success. Gzip at
    ExampleGen's level (`tfrecord.COMPRESS_LEVEL`) rather than Beam's zlib default, which costs
    about three times as long for a quarter fewer bytes."""

    def __init__(self, prefix: str):
        super().__init__(
            prefix,
            coder=beam.coders.BytesCoder(),
            file_name_suffix=".gz",
            # not AUTO: the .gz suffix would have Beam compress what _GzipWriter already did
            compression_type=beam.io.filesystem.CompressionTypes.UNCOMPRESSED,
        )

    def open(self, temp_path: str):
        return _GzipWriter(super().open(temp_path))

    def write_encoded_record(self, file_handle, encoded_record: bytes) -> None:
        file_handle.write(encoded_record)


class _GzipWriter(gzip.GzipFile):
    """A gzip stream over Beam's file handle that closes the handle with itself."""

    def __init__(self, raw):
        super().__init__(fileobj=raw, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _read_counts(prefix: str) -> dict[tuple[int, str], int]:
    counts: Counter = Counter()
    for path in sorted(glob.glob(prefix + "*")):
        with open(path) as f:
            for line in f:
                (span, split), rows = json.loads(line)
                counts[span, split] += rows
    return dict(counts)
