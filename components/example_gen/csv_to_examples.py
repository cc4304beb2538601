"""CSV rows to tf.Example, in Arrow record batches: reading, type inference, parsing, encoding, splitting.

A file is cut into chunks of whole lines; each chunk is parsed, typed, encoded and split as one
Arrow record batch (pyarrow compute kernels and tfx-bsl's C++ encoder), so no Python code runs per
cell. Bad input is reported, never dropped: `RowError`s name the file, the line, the column and
the value.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

INT, FLOAT, STRING = "int", "float", "string"
ARROW_TYPES = {INT: pa.int64(), FLOAT: pa.float32(), STRING: pa.binary()}
_ORDER = {INT: 0, FLOAT: 1, STRING: 2}
_INT_RE = r"^[+-]?\d+$"
_FLOAT_RE = r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|(?i:inf|infinity|nan))$"
CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class RowError:
    """One bad row or cell: the file, its 1-based physical line, and what is wrong."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Chunk:
    """Whole lines `[start, end)` (bytes) of one file, the first of them physical line `first_line`."""

    path: str
    file_index: int
    index: int
    start: int
    end: int
    first_line: int


def plan_chunks(path: str, file_index: int, target_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cuts a file's data lines (the header excluded) into chunks of about `target_bytes`, each
    ending at a newline, reading the file in blocks so memory stays bounded."""
    size = os.path.getsize(path)
    chunks: list[Chunk] = []
    with open(path, "rb") as f:
        header = f.readline()
        start, line = len(header), 2
        while start < size:
            f.seek(min(start + target_bytes, size))
            f.readline()
            end = min(f.tell(), size) if start + target_bytes < size else size
            f.seek(start)
            lines = f.read(end - start).count(b"\n")
            chunks.append(Chunk(path, file_index, len(chunks), start, end, line))
            start, line = end, line + lines
    return chunks


@dataclass
class CsvBatch:
    """The rows of one chunk, every column still text (null markers already nulls)."""

    chunk: Chunk
    table: pa.RecordBatch
    raw: bytes

    def line_of_row(self, row: int) -> int | None:
        """The physical line of data row `row` (empty lines and rows of the wrong width are not
        rows, as the reader counts). Only used to word an error."""
        width = self.table.num_columns
        # A cell may be as long as the chunk (the csv module refuses fields over 128 KB by default).
        csv.field_size_limit(max(csv.field_size_limit(), len(self.raw) + 1))
        seen = -1
        for number, line in enumerate(self.raw.decode("utf-8").splitlines(), start=self.chunk.first_line):
            if line.strip() and len(next(csv.reader([line]))) == width:
                seen += 1
                if seen == row:
                    return number
        return None


def read_chunk(chunk: Chunk, header: list[str], null_values: list[str]) -> tuple[CsvBatch, list[RowError]]:
    """Parses a chunk's lines into text columns; rows of the wrong width come back as errors."""
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        raw = f.read(chunk.end - chunk.start)
    if len(raw) < chunk.end - chunk.start:
        from pipeline.errors import UserInputError

        raise UserInputError(
            f"{chunk.path} changed while ExampleGen read it: it is now {os.path.getsize(chunk.path):,} bytes, "
            f"not the {chunk.end:,} or more it had at line {chunk.first_line}; nothing was written. Let the "
            "copy or export finish (write it under another name, then rename it into the span folder), "
            "then run again"
        )
    errors: list[RowError] = []

    def on_invalid_row(row) -> str:
        errors.append(
            RowError(
                chunk.path,
                chunk.first_line + row.number - 1 if row.number is not None else None,
                f"expected {row.expected_columns} cells as in the header, found {row.actual_columns}: "
                f"{row.text[:120]!r}",
            )
        )
        return "skip"

    table = pcsv.read_csv(
        io.BytesIO(raw),
        read_options=pcsv.ReadOptions(column_names=header, use_threads=False, block_size=len(raw) + 1),
        parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid_row, ignore_empty_lines=True),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=null_values,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    columns = [_clean(column.combine_chunks(), null_values) for column in table.columns]
    return CsvBatch(chunk, pa.RecordBatch.from_arrays(columns, names=header), raw), errors


def _clean(column: pa.Array, null_values: list[str]) -> pa.Array:
    """Trims blanks around a cell; a cell that is then empty or a null marker becomes null."""
    trimmed = pc.utf8_trim_whitespace(column)
    is_null = pc.or_kleene(pc.is_in(trimmed, value_set=pa.array([*null_values, ""])), pc.is_null(trimmed))
    return pc.if_else(is_null, pa.scalar(None, pa.string()), trimmed)


def infer_types(batch: CsvBatch) -> dict[str, str | None]:
    """The narrowest type of each column in this batch: int, float, string; None if all null."""
    types: dict[str, str | None] = {}
    for name, column in zip(batch.table.schema.names, batch.table.columns):
        values = column.drop_null()
        if len(values) == 0:
            types[name] = None
        elif pc.all(pc.match_substring_regex(values, _INT_RE)).as_py():
            types[name] = INT
        elif pc.all(pc.match_substring_regex(values, _FLOAT_RE)).as_py():
            types[name] = FLOAT
        else:
            types[name] = STRING
    return types


def widest_types(per_batch: list[dict[str, str | None]]) -> dict[str, str | None]:
    """The widest type per column over the batches; None where the column was null in all of them
    (so far: a later batch may still type it)."""
    merged: dict[str, str | None] = {}
    for types in per_batch:
        for name, kind in types.items():
            current = merged.get(name)
            if current is None or (kind is not None and _ORDER[kind] > _ORDER[current]):
                merged[name] = kind
    return merged


def merge_types(per_batch: list[dict[str, str | None]]) -> dict[str, str]:
    """The widest type per column over all batches; a column null everywhere is a string."""
    return {name: kind or STRING for name, kind in widest_types(per_batch).items()}


def parse_columns(
    batch: CsvBatch, types: dict[str, str], non_finite: dict[str, frozenset] | None = None
) -> pa.RecordBatch | list[RowError]:
    """Casts each text column to its type (int64, float32, binary), or returns the bad cells: a value
    that does not parse, an integer beyond 64 bits, and a float that is not finite (NaN, an
    infinity, or a number beyond float32's range, which would become one) unless `non_finite`
    allows it for that column ({"nan", "inf"}, from the schema's float_domain): such a value would
    reach statistics and Transform unannounced."""
    non_finite = non_finite or {}
    arrays, errors = [], []
    for name, column in zip(batch.table.schema.names, batch.table.columns):
        kind = types[name]
        if kind == STRING:
            arrays.append(column.cast(pa.binary()))
            continue
        pattern = _INT_RE if kind == INT else _FLOAT_RE
        ok = pc.fill_null(pc.match_substring_regex(column, pattern), True)
        if not pc.all(ok).as_py():
            errors += _cell_errors(
                batch,
                name,
                kind,
                column,
                ~ok.to_numpy(zero_copy_only=False),
                "fix the value, or declare the column as string",
            )
            continue
        unsigned = pc.replace_substring_regex(column, r"^\+", "")
        try:
            parsed = pc.cast(unsigned, ARROW_TYPES[kind])
        except pa.ArrowInvalid:  # an integer beyond 64 bits
            too_big = np.array(
                [v is not None and not -(2**63) <= int(v) < 2**63 for v in unsigned.to_pylist()]
            )
            errors += _cell_errors(
                batch,
                name,
                kind,
                column,
                too_big,
                "it does not fit in a 64-bit integer; declare the column as float or string",
            )
            continue
        if kind == FLOAT:
            allowed = non_finite.get(name, frozenset())
            refused = pc.is_nan(parsed) if "nan" not in allowed else pa.array([False] * len(parsed))
            if "inf" not in allowed:
                refused = pc.or_(refused, pc.is_inf(parsed))
            refused = pc.fill_null(refused, False)
            if pc.any(refused).as_py():
                errors += _cell_errors(
                    batch,
                    name,
                    kind,
                    column,
                    refused.to_numpy(zero_copy_only=False),
                    "it is not a finite number (NaN, an infinity, or beyond float32's range of 3.4e38); "
                    "fix the value, or leave the cell empty (or NA) for a missing one, or allow it in the "
                    f"schema: feature {{ name: {name!r} float_domain {{ disallow_nan: false disallow_inf: false }} }}",
                )
                continue
        arrays.append(parsed)
    if errors:
        return errors
    return pa.RecordBatch.from_arrays(arrays, names=batch.table.schema.names)


def _cell_errors(
    batch: CsvBatch, name: str, kind: str, column: pa.Array, bad: np.ndarray, fix: str
) -> list[RowError]:
    """The first three bad cells of a column, each with its file, line, column and value."""
    return [
        RowError(
            batch.chunk.path,
            batch.line_of_row(int(index)),
            f"column {name!r} is {kind}, but the value is {_shown(column[int(index)].as_py())}; {fix}",
        )
        for index in np.flatnonzero(bad)[:3]
    ]


def _shown(value: str, limit: int = 80) -> str:
    """A cell's value for a message: whole up to `limit` characters, else cut, with its length."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def encode_examples(table: pa.RecordBatch) -> np.ndarray:
    """Serialized tf.Example per row, in row order, as an object array of bytes. A null cell
    becomes an absent feature: rows are encoded in groups that share the same null columns, each
    group without those columns."""
    from tfx_bsl.coders import example_coder

    n = table.num_rows
    valid = np.stack([c.is_valid().to_numpy(zero_copy_only=False) for c in table.columns], axis=1)
    patterns, group_of_row = np.unique(np.packbits(valid, axis=1), axis=0, return_inverse=True)
    group_of_row = group_of_row.reshape(-1)
    examples = np.empty(n, dtype=object)
    for group, pattern in enumerate(patterns):
        present = np.unpackbits(pattern)[: table.num_columns].astype(bool)
        rows = np.flatnonzero(group_of_row == group) if len(patterns) > 1 else np.arange(n)
        subset = table.take(pa.array(rows)) if len(patterns) > 1 else table
        names = [name for name, keep in zip(table.schema.names, present) if keep]
        lists = [_as_list_array(subset.column(name)) for name in names]
        encoded = (
            example_coder.RecordBatchToExamples(pa.RecordBatch.from_arrays(lists, names=names))
            if names
            else [b""] * len(rows)
        )
        examples[rows] = encoded
    return examples


def _as_list_array(values: pa.Array) -> pa.Array:
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def split_buckets(text: pa.RecordBatch, weights: list[int]) -> np.ndarray:
    """The split index of each row, from a 64-bit hash of its cells as written in the file: the
    same row lands in the same split on every run, machine and runner."""
    joined = pc.binary_join_element_wise(
        *text.columns, "\x1f", null_handling="replace", null_replacement="\x00"
    ).cast(pa.binary())
    hashes = row_hashes(joined)
    return np.searchsorted(np.cumsum(weights), hashes % np.uint64(sum(weights)), side="right")


_PRIME = np.uint64(0x100000001B3)
_HASH_BLOCK_BYTES = 1 << 20


def row_hashes(values: pa.BinaryArray) -> np.ndarray:
    """A polynomial hash of each value's bytes (mod 2**64), finished with splitmix64's mixer.
    Vectorized with numpy, in blocks of about 1 MB so temporaries stay small. No value is empty."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=n + 1, offset=values.offset * 4)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    out = np.empty(n, dtype=np.uint64)
    longest = int(np.max(np.diff(offsets))) if n else 0
    powers = np.concatenate([[np.uint64(1)], np.cumprod(np.full(longest, _PRIME, dtype=np.uint64))])
    first = 0
    while first < n:
        last = int(np.searchsorted(offsets, offsets[first] + _HASH_BLOCK_BYTES, side="right")) - 1
        last = min(max(last, first + 1), n)
        starts = offsets[first:last]
        lengths = np.diff(offsets[first : last + 1])
        block = data[starts[0] : offsets[last]].astype(np.uint64) + np.uint64(1)
        position = np.arange(len(block)) - np.repeat(starts - starts[0], lengths)
        out[first:last] = np.add.reduceat(block * powers[position], starts - starts[0])
        first = last
    return _mix64(out)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
