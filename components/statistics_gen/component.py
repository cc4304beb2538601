"""StatisticsGen: one Beam pass over every split of an Examples artifact, TFDV's statistics protos out
(on the DirectRunner below its multi-process size, the same stages in this process, without a pipeline)."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, UserInputError
from pipeline.artifacts import Examples, ExampleStatistics


@dataclass(frozen=True)
class StatisticsGenParams:
    """No parameters yet: every split of the input is summarized."""


# Records decoded and added as one batch (read across shard files): each batch costs about 0.1 ms
# per column whatever its rows, and wide rows make many small shards, so batching per shard made
# the time grow with columns squared.
BATCH_RECORDS = 8192
BATCH_BYTES = 64 * 1024 * 1024


def _shard_accumulator(item: tuple[str, list[str]]):
    """The statistics of a group of one split's shard files, in batches that span files."""
    from components.io.tfrecord import read_gzipped
    from components.statistics_gen.statistics import SplitAccumulator, decode_examples

    split, paths = item
    acc = SplitAccumulator()
    pending: list[bytes] = []
    size = 0
    try:
        for path in paths:
            for records in read_gzipped(path):
                pending += records
                size += sum(len(r) for r in records)
                if len(pending) >= BATCH_RECORDS or size >= BATCH_BYTES:
                    acc.add_batch(decode_examples(pending))
                    pending, size = [], 0
        if pending:
            acc.add_batch(decode_examples(pending))
    except ValueError as error:
        raise UserInputError(str(error)) from None
    return split, acc


def _groups(shards: list[tuple[str, str]], parts: int) -> list[tuple[str, list[str]]]:
    """Each split's shard files in up to `parts` groups of neighbouring files (one a thread)."""
    by_split: dict[str, list[str]] = {}
    for split, path in shards:
        by_split.setdefault(split, []).append(path)
    groups = []
    for split, paths in by_split.items():
        count = max(1, min(parts, len(paths)))
        for i in range(count):
            groups.append((split, paths[i::count]))
    return groups


def run_statistics_gen(
    ctx: ExecutionContext,
    params: StatisticsGenParams,
    examples: InputArtifact[Examples],
    statistics: OutputArtifact[ExampleStatistics],
) -> None:
    shards = [
        (split, path)
        for split in examples.split_names
        for path in sorted(glob.glob(os.path.join(examples.split_uri(split), "*.gz")))
    ]
    if not shards:
        raise UserInputError(f"{examples.uri} holds no TFRecord files; was it written by ExampleGen?")
    input_bytes = sum(os.path.getsize(path) for _, path in shards) * 5
    threads = ctx.threads_without_pipeline(input_bytes=input_bytes)
    if threads:
        _summarize_here(shards, statistics, threads)
    else:
        _summarize_with_beam(ctx, shards, input_bytes, statistics)
    missing = [s for s in examples.split_names if not os.path.exists(os.path.join(statistics.split_uri(s)))]
    if missing:
        raise UserInputError(f"no statistics were produced for split(s) {missing}")
    statistics.split_names = examples.split_names
    statistics.set("span", examples.get("span", 0))
    # Every column of the span's header (as features), empty ones too: the data gate tells a
    # column that is empty in every row from one that is not there.
    columns = json.loads(examples.custom_properties.get("column_types") or "{}")
    if columns:
        statistics.custom_properties["columns"] = json.dumps(sorted(columns))
    if examples.custom_properties.get("input_files"):  # which the data gate names
        statistics.custom_properties["input_files"] = examples.custom_properties["input_files"]
    if examples.custom_properties.get("span_date"):
        statistics.custom_properties["span_date"] = examples.custom_properties["span_date"]
    span = examples.get("span_date") or examples.get("span")
    ctx.log(f"statistics for splits {', '.join(examples.split_names)} of span {span}")


def _write(statistics: ExampleStatistics, split: str, accumulator) -> None:
    from components.statistics_gen.statistics import save_statistics, to_proto

    save_statistics(statistics.uri, split, to_proto(split, accumulator))


def _summarize_here(shards: list[tuple[str, str]], statistics: ExampleStatistics, threads: int = 1) -> None:
    """The pipeline's stages in this process on `threads` threads (the DirectRunner's inputs;
    decoding, zlib and the sketches release the GIL), merged in shard order."""
    from concurrent.futures import ThreadPoolExecutor

    from components.statistics_gen.statistics import SplitAccumulator

    per_split: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for split, accumulator in pool.map(_shard_accumulator, _groups(shards, threads)):
            per_split.setdefault(split, []).append(accumulator)
    for split, accumulators in per_split.items():
        _write(statistics, split, _merge(accumulators, SplitAccumulator))


def _summarize_with_beam(
    ctx: ExecutionContext, shards: list[tuple[str, str]], input_bytes: int, statistics: ExampleStatistics
) -> None:
    import apache_beam as beam

    from components.statistics_gen.statistics import SplitAccumulator

    with ctx.beam_pipeline(input_bytes=input_bytes, threads=True) as p:
        _ = (
            p
            | "Shards" >> beam.Create(_groups(shards, max(1, len(shards) // 8)))
            | "Spread" >> beam.Reshuffle()
            | "Summarize" >> beam.Map(_shard_accumulator)
            | "MergeShards" >> beam.CombinePerKey(lambda accs: _merge(accs, SplitAccumulator))
            | "WriteStats" >> beam.Map(lambda item: _write(statistics, *item))
        )


def _merge(accumulators, empty):
    merged = empty()
    for acc in accumulators:
        merged.merge(acc)
    return merged


StatisticsGen = Component(
    name="StatisticsGen",
    run=run_statistics_gen,
    parameters=StatisticsGenParams,
    version="1",
)
