"""ExampleGen's Beam pipeline: chunks of CSV lines in, gzipped TFRecord shards and a report out.

    chunks ─Spread─▶ ─InferTypes─▶ ─MergeTypes─▶ types (a side input; skipped when all declared)
                   └─Encode─▶ (reads, types, encodes and splits a chunk; writes one shard per split)
                              ─▶ bad rows and per-split counts ─WriteReport─▶ JSON lines

Only chunk descriptions, column types and report lines cross a stage boundary: the rows stay
inside the fused Encode step, so memory is bounded by the chunk size, not the data size. Bad rows
never stop a worker midway: they flow to the report, and ExampleGen fails the whole step
afterwards, naming each one, so nothing is dropped silently. The stages are `stages`' functions;
where the DirectRunner would run in-process, ExampleGen calls them without a pipeline.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import apache_beam as beam

from components.example_gen import csv_to_examples as csv2ex
from components.example_gen import stages
from pipeline import ExecutionContext
from pipeline.artifacts import Examples


class _Encode(beam.DoFn):
    """`stages.encode_chunk` on each chunk, with the merged inferred types as a side input."""

    def __init__(
        self,
        header,
        null_values,
        declared,
        non_finite,
        splits: dict[str, int],
        examples_uri: str,
        drop_missing,
    ):
        self.args = (header, null_values, declared, non_finite, splits, examples_uri)
        self.drop_missing = drop_missing

    def process(self, chunk: csv2ex.Chunk, inferred: dict[str, str] | None = None):
        yield from stages.encode_chunk(chunk, *self.args, inferred, self.drop_missing)


class _MergeTypes(beam.CombineFn):
    """`csv2ex.merge_types` over the chunks in any order: a column null in every chunk seen so
    far stays untyped until the end (typing it string early would outrank a later chunk's float)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, types):
        return csv2ex.widest_types([accumulator, types])

    def merge_accumulators(self, accumulators):
        return csv2ex.widest_types(list(accumulators))

    def extract_output(self, accumulator):
        return csv2ex.merge_types([accumulator])


def write_examples(
    ctx: ExecutionContext,
    paths: list[str],
    header: list[str],
    declared: dict[str, str],
    null_values: list[str],
    splits: dict[str, int],
    examples: Examples,
    non_finite: dict[str, frozenset] | None = None,
    drop_missing: list[str] | None = None,
) -> stages.Report:
    """Runs the Beam pipeline (`non_finite`: column -> the non-finite values its schema allows); returns the bad rows, the rows per split and the column types."""
    chunks = stages.plan(paths)
    report_prefix = os.path.join(examples.uri, ".report", "lines")
    types_prefix = os.path.join(examples.uri, ".report", "types")
    input_bytes = sum(os.path.getsize(p) for p in paths)
    ctx.log(f"{len(chunks)} chunk(s) of up to {csv2ex.CHUNK_BYTES >> 20} MB")
    with ctx.beam_pipeline(input_bytes=input_bytes, threads=True) as p:
        spread = p | "Chunks" >> beam.Create(chunks) | "Spread" >> beam.Reshuffle()
        side = {}
        if stages.needs_inference(header, declared):
            inferred = (
                spread
                | "InferTypes" >> beam.Map(stages.infer_chunk, header, null_values)
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
                _Encode(header, null_values, declared, non_finite or {}, splits, examples.uri, drop_missing),
                **side,
            )
            | "ReportAsJson" >> beam.Map(json.dumps)
            | "WriteReport" >> beam.io.WriteToText(report_prefix)
        )
    return _read_report(report_prefix, types_prefix, declared, header)


def _read_report(
    report_prefix: str, types_prefix: str, declared: dict[str, str], header: list[str]
) -> stages.Report:
    inferred = {}
    for line in _lines(types_prefix):
        inferred.update(json.loads(line))
    report = stages.summarize(
        (json.loads(line) for line in _lines(report_prefix)), inferred, declared, header
    )
    shutil.rmtree(os.path.dirname(report_prefix), ignore_errors=True)
    return report


def _lines(prefix: str):
    for path in sorted(glob.glob(prefix + "*")):
        with open(path) as f:
            yield from (line for line in f if line.strip())
