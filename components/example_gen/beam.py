"""ExampleGen's Beam pipeline: chunks of CSV lines in, gzipped TFRecord shards and a report out.

    chunks ─Spread─▶ ─InferTypes─▶ ─MergeTypes─▶ types (a side input; skipped when all declared)
                   └─Encode─▶ (reads, types, encodes and splits a chunk; writes one shard per split)
                              ─▶ bad rows and per-split counts ─WriteReport─▶ JSON lines

Only chunk descriptions, column types and report lines cross a stage boundary: the rows stay
inside the fused Encode step, so memory is bounded by the chunk size, not the data size. Bad rows
never stop a worker midway: they flow to the report, and ExampleGen fails the whole step
afterwards, naming each one, so nothing is dropped silently.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam

from components.example_gen import csv_to_examples as csv2ex
from components.io.tfrecord import write_gzipped
from pipeline import ExecutionContext
from pipeline.artifacts import Examples


@dataclass
class Report:
    errors: list[csv2ex.RowError]
    counts: dict[str, int]
    types: dict[str, str]


def _infer_chunk(chunk: csv2ex.Chunk, header: list[str], null_values: list[str]) -> dict:
    batch, _ = csv2ex.read_chunk(chunk, header, null_values)
    return csv2ex.infer_types(batch)


class _Encode(beam.DoFn):
    """Reads one chunk and writes `Split-<split>/data_tfrecord-<file>-<chunk>.gz` for each split."""

    def __init__(self, header, null_values, declared, non_finite, splits: dict[str, int], examples_uri: str):
        self.header = header
        self.non_finite = non_finite
        self.null_values = null_values
        self.declared = declared
        self.splits = splits
        self.examples_uri = examples_uri

    def process(self, chunk: csv2ex.Chunk, inferred: dict[str, str] | None = None):
        batch, errors = csv2ex.read_chunk(chunk, self.header, self.null_values)
        parsed = csv2ex.parse_columns(batch, {**(inferred or {}), **self.declared}, self.non_finite)
        if isinstance(parsed, list):
            errors += parsed
        if errors:
            yield from ({"error": [e.path, e.line, e.message]} for e in errors)
            return
        examples = csv2ex.encode_examples(parsed)
        buckets = csv2ex.split_buckets(batch.table, list(self.splits.values()))
        for index, split in enumerate(self.splits):
            records = examples[buckets == index]
            name = f"data_tfrecord-{chunk.file_index:05d}-{chunk.index:05d}.gz"
            write_gzipped(os.path.join(self.examples_uri, f"Split-{split}", name), records)
            yield {"split": split, "count": len(records)}


class _MergeTypes(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, types):
        return csv2ex.merge_types([accumulator, types])

    def merge_accumulators(self, accumulators):
        return csv2ex.merge_types(list(accumulators))

    def extract_output(self, accumulator):
        return accumulator


def write_examples(
    ctx: ExecutionContext,
    paths: list[str],
    header: list[str],
    declared: dict[str, str],
    null_values: list[str],
    splits: dict[str, int],
    examples: Examples,
    non_finite: dict[str, frozenset] | None = None,
) -> Report:
    """Runs the Beam pipeline (`non_finite`: column -> the non-finite values its schema allows); returns the bad rows, the rows per split and the column types."""
    chunks = [chunk for i, path in enumerate(paths) for chunk in csv2ex.plan_chunks(path, i)]
    report_prefix = os.path.join(examples.uri, ".report", "lines")
    types_prefix = os.path.join(examples.uri, ".report", "types")
    input_bytes = sum(os.path.getsize(p) for p in paths)
    ctx.log(f"{len(chunks)} chunk(s) of up to {csv2ex.CHUNK_BYTES >> 20} MB")
    with ctx.beam_pipeline(input_bytes=input_bytes, threads=True) as p:
        spread = p | "Chunks" >> beam.Create(chunks) | "Spread" >> beam.Reshuffle()
        side = {}
        if any(c not in declared for c in header):
            inferred = (
                spread
                | "InferTypes" >> beam.Map(_infer_chunk, header, null_values)
                | "MergeTypes" >> beam.CombineGlobally(_MergeTypes())
            )
            _ = (
                inferred
                | "TypesAsJson" >> beam.Map(json.dumps)
                | "WriteTypes" >> beam.io.WriteToText(types_prefix)
            )
            side["inferred"] = beam.pvalue.AsSingleton(inferred)
        _ = (
            spread
            | "Encode"
            >> beam.ParDo(
                _Encode(header, null_values, declared, non_finite or {}, splits, examples.uri), **side
            )
            | "ReportAsJson" >> beam.Map(json.dumps)
            | "WriteReport" >> beam.io.WriteToText(report_prefix)
        )
    return _read_report(report_prefix, types_prefix, declared, header)


def _read_report(
    report_prefix: str, types_prefix: str, declared: dict[str, str], header: list[str]
) -> Report:
    errors, counts = [], Counter()
    for line in _lines(report_prefix):
        item = json.loads(line)
        if "error" in item:
            errors.append(csv2ex.RowError(*item["error"]))
        else:
            counts[item["split"]] += item["count"]
    inferred = {}
    for line in _lines(types_prefix):
        inferred.update(json.loads(line))
    types = {c: declared.get(c) or inferred.get(c, csv2ex.STRING) for c in header}
    errors.sort(key=lambda e: (e.path, e.line or 0))
    shutil.rmtree(os.path.dirname(report_prefix), ignore_errors=True)
    return Report(errors, dict(counts), types)


def _lines(prefix: str):
    for path in sorted(glob.glob(prefix + "*")):
        with open(path) as f:
            yield from (line for line in f if line.strip())
