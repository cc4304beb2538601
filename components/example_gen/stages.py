"""ExampleGen's stages as plain functions, and the in-process path that calls them without Beam.

The Beam pipeline (`components.example_gen.beam`) applies these same functions to chunks spread
over its workers. Where the DirectRunner would run in this process anyway (see
`pipeline.beam.threads_without_pipeline`), `write_examples_here` calls them here, on a thread per
core for inputs over 4 MB: the same shards holding the same examples, and the same report,
without importing Beam or building a pipeline (1.5 s of a cold run on the embedded data; at 1M
rows 6.1 -> 4.1 s and 650 -> 470 MB).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from components.example_gen import csv_to_examples as csv2ex
from components.io.tfrecord import write_gzipped
from pipeline import ExecutionContext
from pipeline.artifacts import Examples

DROPPED_SHOWN = 5  # the lines of dropped rows a report names


@dataclass
class Report:
    errors: list[csv2ex.RowError]
    counts: dict[str, int]
    types: dict[str, str]
    dropped: dict[str, int] = field(default_factory=dict)  # column -> rows dropped for its empty cell
    dropped_rows: int = 0
    dropped_lines: list[tuple[str, int | None]] = field(default_factory=list)  # the first few


def plan(paths: list[str]) -> list[csv2ex.Chunk]:
    """The chunks of every file, in file order."""
    return [chunk for i, path in enumerate(paths) for chunk in csv2ex.plan_chunks(path, i)]


def infer_chunk(chunk: csv2ex.Chunk, header: list[str], null_values: list[str]) -> dict:
    batch, _ = csv2ex.read_chunk(chunk, header, null_values)
    return csv2ex.infer_types(batch)


def encode_chunk(
    chunk: csv2ex.Chunk,
    header: list[str],
    null_values: list[str],
    declared: dict[str, str],
    non_finite: dict[str, frozenset],
    splits: dict[str, int],
    examples_uri: str,
    inferred: dict[str, str] | None = None,
    drop_missing: list[str] | None = None,
) -> Iterator[dict]:
    """Reads one chunk and writes `Split-<split>/data_tfrecord-<file>-<chunk>.gz` for each split;
    yields report items: `{"error": [path, line, message]}` for each bad row (and then writes
    nothing), else `{"split": split, "count": rows}` per split, and `{"dropped": {column: rows},
    "rows": n, "lines": [[path, line], ...]}` for the rows left out because a column of
    `drop_missing` is empty in them (each row still checked like any other)."""
    batch, errors = csv2ex.read_chunk(chunk, header, null_values)
    parsed = csv2ex.parse_columns(batch, {**(inferred or {}), **declared}, non_finite)
    if isinstance(parsed, list) or errors:
        errors += parsed if isinstance(parsed, list) else []
        yield from ({"error": [e.path, e.line, e.message]} for e in errors)
        return
    text = batch.table
    if drop_missing:
        missing = {c: ~text.column(c).is_valid().to_numpy(zero_copy_only=False) for c in drop_missing}
        drop = np.logical_or.reduce(list(missing.values()))
        if drop.any():
            shown = [[chunk.path, batch.line_of_row(int(i))] for i in np.flatnonzero(drop)[:DROPPED_SHOWN]]
            yield {
                "dropped": {c: int(m.sum()) for c, m in missing.items() if m.any()},
                "rows": int(drop.sum()),
                "lines": shown,
            }
            keep = pa.array(~drop)
            parsed, text = parsed.filter(keep), text.filter(keep)
    examples = csv2ex.encode_examples(parsed)
    buckets = csv2ex.split_buckets(text, list(splits.values()))
    for index, split in enumerate(splits):
        records = examples[buckets == index]
        name = f"data_tfrecord-{chunk.file_index:05d}-{chunk.index:05d}.gz"
        write_gzipped(os.path.join(examples_uri, f"Split-{split}", name), records)
        yield {"split": split, "count": len(records)}


def summarize(
    items: Iterable[dict], inferred: dict[str, str], declared: dict[str, str], header: list[str]
) -> Report:
    """The report from the encoding's items: bad rows in file and line order, rows per split,
    and each column's type (declared, else inferred, else string)."""
    errors, dropped_rows, lines = [], 0, []
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for item in items:
        if "error" in item:
            errors.append(csv2ex.RowError(*item["error"]))
        elif "dropped" in item:
            dropped.update(item["dropped"])
            dropped_rows += item["rows"]
            lines += [tuple(line) for line in item["lines"]]
        else:
            counts[item["split"]] += item["count"]
    types = {c: declared.get(c) or inferred.get(c, csv2ex.STRING) for c in header}
    errors.sort(key=lambda e: (e.path, e.line or 0))
    lines = sorted(lines, key=lambda x: (x[0], x[1] or 0))[:DROPPED_SHOWN]
    return Report(errors, dict(counts), types, dict(dropped), dropped_rows, lines)


def needs_inference(header: list[str], declared: dict[str, str]) -> bool:
    return any(c not in declared for c in header)


def write_examples_here(
    ctx: ExecutionContext,
    paths: list[str],
    header: list[str],
    declared: dict[str, str],
    null_values: list[str],
    splits: dict[str, int],
    examples: Examples,
    non_finite: dict[str, frozenset] | None = None,
    threads: int = 1,
    drop_missing: list[str] | None = None,
) -> Report:
    """`beam.write_examples` without a pipeline: every stage in this process, chunk after chunk,
    on `threads` threads (the work, Arrow's parsing, the encoder and zlib, releases the GIL)."""
    chunks = plan(paths)
    where = f"on {threads} threads" if threads > 1 else "in this process"
    ctx.log(f"{len(chunks)} chunk(s) of up to {csv2ex.CHUNK_BYTES >> 20} MB, {where}")
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        inferred: dict[str, str] = {}
        if needs_inference(header, declared):
            inferred = csv2ex.merge_types(
                list(pool.map(lambda c: infer_chunk(c, header, null_values), chunks))
            )

        def encode(chunk):
            return list(
                encode_chunk(
                    chunk,
                    header,
                    null_values,
                    declared,
                    non_finite or {},
                    splits,
                    examples.uri,
                    inferred,
                    drop_missing,
                )
            )

        items = [item for chunk_items in pool.map(encode, chunks) for item in chunk_items]
    return summarize(items, inferred, declared, header)
