"""CSV rows to tf.Example, in Arrow record batches: reading, type inference, parsing, encoding, splitting.

Everything here works on whole batches (pyarrow compute kernels and tfx-bsl's C++ encoder); no
Python code runs per cell. Bad input is reported, never dropped: each function returns or raises
`RowError`s naming the file, the line, the column and the value.
"""

from __future__ import annotations

import hashlib
import csv
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
BATCH_BYTES = 4 << 20


@dataclass(frozen=True)
class RowError:
    """One bad row or cell. `row` is the 0-based index of the data row in its file, `line` the
    1-based physical line when known (the reader knows it for rows of the wrong width; for the
    others `located()` finds it, on the error path only)."""

    path: str
    message: str
    row: int | None = None
    line: int | None = None

    def located(self) -> RowError:
        if self.line is not None or self.row is None:
            return self
        return RowError(self.path, self.message, self.row, line_of_data_row(self.path, self.row))

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass
class CsvBatch:
    """Some consecutive data rows of one file, every column still text (nulls already nulls)."""

    path: str
    first_row: int
    table: pa.RecordBatch


def read_batches(path: str, header: list[str], null_values: list[str], block_size: int = BATCH_BYTES):
    """Yields CsvBatch for every block of `path`, then the RowErrors of rows of the wrong width."""
    bad_rows: list[RowError] = []

    def on_invalid_row(row) -> str:
        bad_rows.append(RowError(
            path,
            f"expected {row.expected_columns} cells as in the header, found {row.actual_columns}: "
            f"{row.text[:120]!r}",
            line=row.number,
        ))
        return "skip"

    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=header, skip_rows=1, use_threads=False, block_size=block_size),
        parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid_row, ignore_empty_lines=True),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=null_values,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    first_row = 0
    for batch in reader:
        batch = pa.RecordBatch.from_arrays(
            [_clean(column, null_values) for column in batch.columns], names=header
        )
        yield CsvBatch(path, first_row, batch)
        first_row += batch.num_rows
    yield from bad_rows


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


def merge_types(per_batch: list[dict[str, str | None]]) -> dict[str, str]:
    """The widest type per column over all batches; a column null everywhere is a string."""
    merged: dict[str, str | None] = {}
    for types in per_batch:
        for name, kind in types.items():
            current = merged.get(name)
            if current is None or (kind is not None and _ORDER[kind] > _ORDER[current]):
                merged[name] = kind
    return {name: kind or STRING for name, kind in merged.items()}


def parse_columns(batch: CsvBatch, types: dict[str, str]) -> pa.RecordBatch | list[RowError]:
    """Casts each text column to its type (int64, float32, binary), or returns the bad cells."""
    arrays, errors = [], []
    for name, column in zip(batch.table.schema.names, batch.table.columns):
        kind = types[name]
        if kind == STRING:
            arrays.append(column.cast(pa.binary()))
            continue
        pattern = _INT_RE if kind == INT else _FLOAT_RE
        ok = pc.fill_null(pc.match_substring_regex(column, pattern), True)
        if not pc.all(ok).as_py():
            bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
            for index in bad[:3]:
                errors.append(RowError(
                    batch.path,
                    f"column {name!r} is {kind}, but the value is {column[int(index)].as_py()!r}; "
                    f"fix the value, or declare the column as string",
                    row=batch.first_row + int(index),
                ))
            continue
        unsigned = pc.replace_substring_regex(column, r"^\+", "")
        arrays.append(pc.cast(unsigned, ARROW_TYPES[kind]))
    if errors:
        return errors
    return pa.RecordBatch.from_arrays(arrays, names=batch.table.schema.names)


def encode_examples(table: pa.RecordBatch) -> list[bytes]:
    """Serialized tf.Example per row, in row order. A null cell becomes an absent feature: rows
    are encoded in groups that share the same null columns, each group without those columns."""
    from tfx_bsl.coders import example_coder

    n = table.num_rows
    valid = np.stack([c.is_valid().to_numpy(zero_copy_only=False) for c in table.columns], axis=1)
    patterns, group_of_row = np.unique(np.packbits(valid, axis=1), axis=0, return_inverse=True)
    group_of_row = group_of_row.reshape(-1)
    examples: list[bytes] = [b""] * n
    for group in range(len(patterns)):
        rows = np.flatnonzero(group_of_row == group)
        present = np.unpackbits(patterns[group])[: table.num_columns].astype(bool)
        columns = [i for i in range(table.num_columns) if present[i]]
        subset = table.take(pa.array(rows)) if len(rows) < n else table
        lists = [_as_list_array(subset.column(i)) for i in columns]
        encoded = example_coder.RecordBatchToExamples(
            pa.RecordBatch.from_arrays(lists, names=[table.schema.names[i] for i in columns])
        ) if columns else [b""] * len(rows)
        for row, example in zip(rows.tolist(), encoded):
            examples[row] = example
    return examples


def _as_list_array(values: pa.Array) -> pa.Array:
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def split_buckets(text: pa.RecordBatch, weights: list[int]) -> np.ndarray:
    """The split index of each row, from a hash of its cells as written in the file: the same row
    lands in the same split on every run and every runner."""
    joined = pc.binary_join_element_wise(
        *text.columns, "\x1f", null_handling="replace", null_replacement="\x00"
    ).cast(pa.binary())
    total = sum(weights)
    bounds = np.cumsum(weights)
    buckets = np.fromiter(
        (int.from_bytes(hashlib.md5(cell).digest()[:8], "little") % total for cell in joined.to_pylist()),
        dtype=np.int64,
        count=len(joined),
    )
    return np.searchsorted(bounds, buckets, side="right")


def line_of_data_row(path: str, row: int) -> int | None:
    """The 1-based physical line of data row `row`, counting rows as the reader does (header,
    empty lines and rows of the wrong width skipped). Only used to word an error."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        width = len(next(csv.reader([next(f, "")]), []))
        seen = -1
        for number, line in enumerate(f, start=2):
            if line.strip() and len(next(csv.reader([line]))) == width:
                seen += 1
                if seen == row:
                    return number
    return None

