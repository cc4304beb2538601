"""ExampleGen's Beam pipeline: read CSV batches, settle column types, encode, split, write TFRecords.

    files ─ReadCsv─▶ text batches ─Spread─▶ ─InferTypes─▶ types (side input, when not all declared)
                                          └─Encode─▶ one output per split ─Write[split]─▶ TFRecord.gz
    bad rows and per-split counts ─Report─▶ a JSON-lines report read back after the run

Bad rows never stop a worker midway: they flow to the report, and ExampleGen fails the whole
step afterwards, naming each one, so nothing is dropped silently and nothing half-written stays.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes

from components import csv_to_examples as csv2ex
from pipeline import ExecutionContext
from pipeline.artifacts import Examples

_ERRORS, _COUNTS = "errors", "counts"


@dataclass
class Report:
    errors: list[csv2ex.RowError]
    counts: dict[str, int]
    types: dict[str, str]


class _ReadCsv(beam.DoFn):
    def __init__(self, header: list[str], null_values: list[str]):
        self.header = header
        self.null_values = null_values

    def process(self, path: str):
        for item in csv2ex.read_batches(path, self.header, self.null_values):
            if isinstance(item, csv2ex.RowError):
                yield beam.pvalue.TaggedOutput(_ERRORS, item)
            else:
                yield item


class _Encode(beam.DoFn):
    def __init__(self, declared: dict[str, str], splits: list[str], weights: list[int]):
        self.declared = declared
        self.splits = splits
        self.weights = weights

    def process(self, batch: csv2ex.CsvBatch, inferred: dict[str, str] | None = None):
        types = {**(inferred or {}), **self.declared}
        parsed = csv2ex.parse_columns(batch, types)
        if isinstance(parsed, list):
            for error in parsed:
                yield beam.pvalue.TaggedOutput(_ERRORS, error)
            return
        examples = csv2ex.encode_examples(parsed)
        buckets = csv2ex.split_buckets(batch.table, self.weights)
        for index, split in enumerate(self.splits):
            rows = (buckets == index).nonzero()[0]
            yield beam.pvalue.TaggedOutput(_COUNTS, (split, len(rows)))
            for row in rows.tolist():
                yield beam.pvalue.TaggedOutput(split, examples[row])


class _MergeTypes(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, types):
        return csv2ex.merge_types([accumulator, types])

    def merge_accumulators(self, accumulators):
        return csv2ex.merge_types(list(accumulators))

    def extract_output(self, accumulator):
        return accumulator


def _report_line(item) -> str:
    if isinstance(item, csv2ex.RowError):
        return json.dumps({"error": [item.path, item.message, item.row, item.line]})
    split, count = item
    return json.dumps({"split": split, "count": count})


def write_examples(
    ctx: ExecutionContext,
    paths: list[str],
    header: list[str],
    declared: dict[str, str],
    null_values: list[str],
    splits: dict[str, int],
    examples: Examples,
) -> Report:
    """Runs the Beam pipeline; returns the bad rows, the rows per split and the column types."""
    split_names = list(splits)
    report_prefix = os.path.join(examples.uri, ".report", "lines")
    types_prefix = os.path.join(examples.uri, ".report", "types")
    input_bytes = sum(os.path.getsize(p) for p in paths)
    to_infer = [c for c in header if c not in declared]
    with ctx.beam_pipeline(input_bytes=input_bytes) as p:
        read = (
            p
            | "ListFiles" >> beam.Create(paths)
            | "ReadCsv" >> beam.ParDo(_ReadCsv(header, null_values)).with_outputs(_ERRORS, main="batches")
        )
        batches = read.batches | "Spread" >> beam.Reshuffle()
        side = {}
        if to_infer:
            inferred = (
                batches
                | "InferTypes" >> beam.Map(csv2ex.infer_types)
                | "MergeTypes" >> beam.CombineGlobally(_MergeTypes())
            )
            inferred | "KeepTypes" >> beam.Map(json.dumps) | "WriteTypes" >> beam.io.WriteToText(types_prefix)
            side["inferred"] = beam.pvalue.AsSingleton(inferred)
        encoded = batches | "Encode" >> beam.ParDo(
            _Encode(declared, split_names, list(splits.values())), **side
        ).with_outputs(_ERRORS, _COUNTS, *split_names)
        for split in split_names:
            encoded[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                os.path.join(examples.split_uri(split), "data_tfrecord"),
                file_name_suffix=".gz",
                compression_type=CompressionTypes.GZIP,
            )
        (
            (read[_ERRORS], encoded[_ERRORS], encoded[_COUNTS])
            | "Gather" >> beam.Flatten()
            | "Format" >> beam.Map(_report_line)
            | "WriteReport" >> beam.io.WriteToText(report_prefix)
        )
    return _read_report(report_prefix, types_prefix, declared, header)


def _read_report(report_prefix: str, types_prefix: str, declared: dict[str, str], header: list[str]) -> Report:
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
    errors.sort(key=lambda e: (e.path, e.row if e.row is not None else -1, e.line or 0))
    errors = [e.located() for e in errors[:20]] + errors[20:]
    shutil.rmtree(os.path.dirname(report_prefix), ignore_errors=True)
    return Report(errors, dict(counts), types)


def _lines(prefix: str):
    for path in sorted(glob.glob(prefix + "*")):
        with open(path) as f:
            yield from (line for line in f if line.strip())
