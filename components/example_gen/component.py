"""ExampleGen: the CSV files of one span to gzipped TFRecord tf.Examples, split by a stable hash, on Beam."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import glob
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import (
    Component,
    DefinitionError,
    ExecutionContext,
    InputArtifact,
    OutputArtifact,
    UserInputError,
)
from pipeline.artifacts import Examples, Schema
from pipeline.component import FanOut, Item

CODE_VERSION = "1"
GZIP_MAGIC = b"\x1f\x8b"
COLUMN_TYPES = ("int", "float", "string")


@dataclass(frozen=True)
class RollingWindow:
    """The last `spans` spans that have files, ending at the run's span (the latest, or the one
    `run --span` / `--date` names): TFX's RollingRange. A window moving by one span ingests only
    the new span; the others are CACHED executions that reuse what was ingested before."""

    spans: int

    def __post_init__(self):
        if not isinstance(self.spans, int) or isinstance(self.spans, bool) or self.spans < 1:
            raise DefinitionError(
                f"RollingWindow: spans must be a whole number of at least 1, got {self.spans!r}"
            )

    def describe(self) -> str:
        return f"a rolling window of the last {self.spans} span(s)"


@dataclass(frozen=True)
class SpanRange:
    """Every span with files from `first` to `last` (None: no end), TFX's StaticRange: span
    numbers, or dates (`"2024-01-01"`) for a dated pattern. A run for a given span (`--span`,
    `--date`, a backfill) takes the range's spans up to it, as a schedule would have then."""

    first: int | str
    last: int | str | None = None

    def __post_init__(self):
        for value in (self.first, self.last):
            if value is not None and _bound(value) is None:
                raise DefinitionError(
                    f"SpanRange: {value!r} is neither a span number nor a date (YYYY-MM-DD)"
                )
        last = _bound(self.last) if self.last is not None else None
        if last is not None and last < _bound(self.first):
            raise DefinitionError(f"SpanRange: first {self.first!r} comes after last {self.last!r}")

    def bounds(self) -> tuple[int, int | None]:
        return _bound(self.first), (_bound(self.last) if self.last is not None else None)  # type: ignore[return-value]

    def describe(self) -> str:
        return f"spans {self.first} to {self.last if self.last is not None else 'the latest'}"


def _bound(value: int | str) -> int | None:
    """A span number, or a date's span (days since 1970-01-01); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return span_of_date(datetime.date.fromisoformat(value))
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class ExampleGenParams:
    """input_pattern: a glob with a `{SPAN}` placeholder (and optionally `{VERSION}`), such as
    `data/span-{SPAN}/*.csv`. span / version: which to read; None means the latest.
    splits: split name -> hash-bucket weight. column_types: column (its CSV header or its feature
    name) -> int, float or string, which wins over the schema input; other columns take the
    schema's type, or are inferred. null_values: cells that mean "missing" (an empty cell always
    does). drop_rows_missing: columns (headers or feature names) whose empty cell leaves the row
    out, as a label's must: the run counts such rows, names their first lines, and records the
    counts on the Examples (`rows_dropped`); every other row with an empty cell is kept. Each column becomes the feature named by `feature_names(header)`: the header itself when
    it is a valid name, else a lower-case name of letters, digits and '_' (recorded on the
    Examples as `column_names`)."""

    input_pattern: str
    span: int | None = None
    version: int | None = None
    splits: dict = field(default_factory=lambda: {"train": 2, "eval": 1})
    column_types: dict = field(default_factory=dict)
    null_values: tuple = ("NA",)
    drop_rows_missing: tuple | list = ()
    window: RollingWindow | SpanRange | None = None

    def __post_init__(self):
        pattern = self.input_pattern
        if "{SPAN}" not in pattern and not is_dated(pattern):
            raise DefinitionError(
                f"ExampleGen: input pattern {pattern!r} needs a {{SPAN}} placeholder, e.g. "
                "data/span-{SPAN}/*.csv (one folder per span; a single span is span-1), or a date: "
                "data/{YYYY}-{MM}-{DD}/*.csv (or {YYYY}-{MM} for months)"
            )
        if is_dated(pattern) and ("{SPAN}" in pattern or "{MM}" not in pattern):
            raise DefinitionError(
                f"ExampleGen: input pattern {pattern!r}: a dated pattern has {{YYYY}} and {{MM}} (and "
                "{DD} for days), and no {SPAN}"
            )


def window_items(params: ExampleGenParams) -> tuple[list[Item], str]:
    """The spans of the params' window that have files, oldest first, each an item of its own
    (the params with that span and no window), and a line saying which were chosen. Nothing in
    the window, or a requested span without files, is a UserInputError naming where it looked."""
    window, pattern = params.window, params.input_pattern
    available = available_spans(pattern)
    if params.span is not None and params.span not in available:
        find_span(pattern, params.span, None)  # raises, naming the folder looked for and the spans found
    if isinstance(window, RollingWindow):
        end = params.span if params.span is not None else (available[-1] if available else None)
        chosen = [s for s in available if end is not None and s <= end][-window.spans :]
    else:
        assert isinstance(window, SpanRange)
        first, last = window.bounds()
        if params.span is not None and not (first <= params.span and (last is None or params.span <= last)):
            raise UserInputError(
                f"span {span_text(params.span, pattern)} is outside the pipeline's window, {window.describe()}"
            )
        end = params.span if params.span is not None else last
        chosen = [s for s in available if first <= s and (end is None or s <= end)]
    if not chosen:
        found = ", ".join(span_text(s, pattern) for s in available) or "none"
        raise UserInputError(
            f"no span of {window.describe()} has files matching {pattern!r} (spans found: {found})"
        )
    texts = [span_text(s, pattern) for s in chosen]
    short = texts if len(texts) <= 6 else [*texts[:2], "...", *texts[-2:]]
    note = f"window: {len(chosen)} span(s), {', '.join(short)} ({window.describe()})"
    if isinstance(window, RollingWindow) and len(chosen) < window.spans:
        note += f"; only {len(chosen)} of {window.spans} have files so far"
    waiting = [s for s in empty_span_folders(pattern) if params.span is None and s > chosen[-1]]
    if waiting:
        note += (
            f"; span folder(s) {', '.join(span_text(s, pattern) for s in waiting)} hold no file matching "
            "the pattern yet, and are left out"
        )
    items = [
        Item(str(s), f"span {span_text(s, pattern)}", dataclasses.replace(params, span=s, window=None))
        for s in chosen
    ]
    return items, note


def available_spans(pattern: str) -> list[int]:
    """Every span with at least one file matching `pattern`, in order."""
    regex = re.compile(_pattern_regex(pattern))
    found = set()
    for path in glob.glob(_glob_of(pattern)):
        match = regex.fullmatch(path)
        number = _span_of(match, path) if match else None
        if number is not None and os.path.isfile(path):
            found.add(number)
    return sorted(found)


def resolve_span(ctx: ExecutionContext, params: ExampleGenParams, schema: Schema | None) -> dict:
    """Finds the span's files and checks what can be checked cheaply before Beam starts: that
    files match, are non-empty UTF-8, and share one header. The result (span, version, each file's
    sha256) is part of the cache key, so a changed or added file means a new run."""
    _check_params(params)
    span, version, paths = find_span(params.input_pattern, params.span, params.version)
    skipped = [s for s in empty_span_folders(params.input_pattern) if params.span is None and s > span]
    for broken, path in broken_span_folders(params.input_pattern):
        ctx.warn(
            f"span {span_text(broken, params.input_pattern)}'s folder {path} is a symbolic link to nothing readable (a loop, or its "
            "target is gone); it is skipped: fix or remove the link"
        )
    for empty in skipped:
        ctx.warn(
            f"span {span_text(empty, params.input_pattern)}'s folder holds no file matching "
            f"{params.input_pattern!r}; span {span_text(span, params.input_pattern)}, the latest with files, is used"
        )
    files: list[dict[str, Any]] = []
    header: list[str] | None = None
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        file_header = _header_of(path, data)
        if header is None:
            header, first = file_header, path
        elif file_header != header:
            raise UserInputError(
                f"the header of {path} differs from that of {first}:\n  {file_header}\n  {header}\n"
                "all files of a span must have the same columns in the same order"
            )
        files.append({"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    assert header is not None, "a resolved span has at least one file"
    features = feature_names(header, first)
    ctx.log(
        f"span {span_text(span, params.input_pattern)}"
        + (f" (span {span})" if is_dated(params.input_pattern) else "")
        + f", version {version}: {len(files)} file(s), "
        f"{sum(f['bytes'] for f in files) / 1e6:.1f} MB, columns {', '.join(header)}"
    )
    renamed = {c: f for c, f in zip(header, features) if c != f}
    if renamed:
        ctx.log(
            "columns renamed to valid feature names: "
            + ", ".join(f"{c!r} -> {f}" for c, f in renamed.items())
        )
    fingerprint = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {
        "span": span,
        "version": version,
        "files": files,
        "header": header,
        "features": features,
        "input_fingerprint": fingerprint,
        "skipped_spans": skipped,
    }


def find_span(pattern: str, span: int | None, version: int | None) -> tuple[int, int, list[str]]:
    """(span, version, sorted file paths) for the requested or latest span and version."""
    if "{SPAN}" not in pattern and not is_dated(pattern):
        raise UserInputError(
            f"input pattern {pattern!r} needs a {{SPAN}} placeholder, e.g. data/span-{{SPAN}}/*.csv, "
            "or a date: {YYYY}, {MM} and {DD}"
        )
    regex = re.compile(_pattern_regex(pattern))
    found: dict[tuple[int, int], list[str]] = {}
    for path in glob.glob(_glob_of(pattern)):
        match = regex.fullmatch(path)
        number = _span_of(match, path) if match else None
        if number is not None and os.path.isfile(path):
            key = (number, int(match.groupdict().get("version") or 0))  # type: ignore[union-attr]
            found.setdefault(key, []).append(path)
    if not found:
        raise UserInputError(
            f"no file matches input pattern {pattern!r}; check the path and the {{SPAN}} placeholder"
        )
    spans = sorted({s for s, _ in found})
    chosen_span = spans[-1] if span is None else span
    versions = sorted(v for s, v in found if s == chosen_span)
    if not versions:
        asked = _glob_of(pattern) if span is None else _pattern_for(pattern, span)
        raise UserInputError(
            f"no file matches input pattern {pattern!r} for span {span_text(chosen_span, pattern)} "
            f"({asked}); spans found: {', '.join(span_text(s, pattern) for s in spans)}"
        )
    chosen_version = versions[-1] if version is None else version
    if (chosen_span, chosen_version) not in found:
        raise UserInputError(f"span {chosen_span} has no version {version}; versions: {versions}")
    return chosen_span, chosen_version, sorted(found[(chosen_span, chosen_version)])


def _pattern_for(pattern: str, span: int) -> str:
    """The pattern with one span's placeholders filled in, to name what was looked for."""
    if not is_dated(pattern):
        return pattern.replace("{SPAN}", str(span)).replace("{VERSION}", "*")
    day = EPOCH + datetime.timedelta(days=span)
    return (
        pattern.replace("{YYYY}", f"{day.year:04d}")
        .replace("{MM}", f"{day.month:02d}")
        .replace("{DD}", f"{day.day:02d}")
        .replace("{VERSION}", "*")
    )


def empty_span_folders(pattern: str) -> list[int]:
    """Spans whose folder exists (the pattern's part up to `{SPAN}`'s path component) but holds no
    file matching the pattern: a new span still being copied, or one left empty by mistake."""
    folder = _span_folder(pattern)
    if folder is None:
        return []
    regex, file_regex = re.compile(_pattern_regex(folder)), re.compile(_pattern_regex(pattern))
    with_files = set()
    for path in glob.glob(_glob_of(pattern)):
        match = file_regex.fullmatch(path)
        if match and os.path.isfile(path):
            with_files.add(_span_of(match, path))
    spans = set()
    for span, path in _span_folders(folder, regex):
        if os.path.isdir(path) and span not in with_files:
            spans.add(span)
    return sorted(spans)


def broken_span_folders(pattern: str) -> list[tuple[int, str]]:
    """(span, path) of span folders that are symbolic links to nothing readable: a loop, or a
    target that is gone. Globbing skips them without a word; ExampleGen says so."""
    folder = _span_folder(pattern)
    if folder is None:
        return []
    return sorted(
        (span, path)
        for span, path in _span_folders(folder, re.compile(_pattern_regex(folder)))
        if os.path.islink(path) and not os.path.exists(path)
    )


def _span_folder(pattern: str) -> str | None:
    """The pattern up to the path component of its last span placeholder, when files sit in span
    folders (`data/span-{SPAN}` of `data/span-{SPAN}/*.csv`), else None."""
    parts = pattern.split(os.sep)
    marks = [
        i for i, part in enumerate(parts) if any(p in part for p in ("{SPAN}", "{YYYY}", "{MM}", "{DD}"))
    ]
    if not marks or marks[-1] == len(parts) - 1:
        return None
    return os.sep.join(parts[: marks[-1] + 1])


def _span_folders(folder: str, regex) -> list[tuple[int, str]]:
    found = []
    for path in glob.glob(_glob_of(folder)):
        match = regex.fullmatch(path)
        number = _span_of(match, path) if match else None
        if number is not None:
            found.append((number, path))
    return found


def _pattern_regex(pattern: str) -> str:
    parts = re.split(r"(\{SPAN\}|\{VERSION\}|\{YYYY\}|\{MM\}|\{DD\}|\*\*|\*|\?)", pattern)
    table = {
        "{SPAN}": r"(?P<span>\d+)",
        "{VERSION}": r"(?P<version>\d+)",
        "{YYYY}": r"(?P<yyyy>\d{4})",
        "{MM}": r"(?P<mm>\d{2})",
        "{DD}": r"(?P<dd>\d{2})",
        "**": ".*",
        "*": "[^/]*",
        "?": "[^/]",
    }
    return "".join(table.get(part, re.escape(part)) for part in parts)


EPOCH = datetime.date(1970, 1, 1)


def is_dated(pattern: str) -> bool:
    """Whether spans are dates (`{YYYY}`, `{MM}`, optionally `{DD}`) rather than `{SPAN}` numbers."""
    return "{YYYY}" in pattern


def span_of_date(day: datetime.date) -> int:
    """A date's span, as TFX's ExampleGen numbers them: days since 1970-01-01."""
    return (day - EPOCH).days


def span_for_date(pattern: str, day: datetime.date) -> int:
    """The span a dated pattern gives the files of `day`: that day's, or with no {DD} in the
    pattern (monthly exports) the first of its month's."""
    return span_of_date(day if "{DD}" in pattern else day.replace(day=1))


def span_text(span: int, pattern: str) -> str:
    """A span as a person reads it: the date for a dated pattern (`2024-03-01`), else the number."""
    if not is_dated(pattern):
        return str(span)
    return (EPOCH + datetime.timedelta(days=span)).isoformat()


def _glob_of(pattern: str) -> str:
    for placeholder in ("{SPAN}", "{VERSION}", "{YYYY}", "{MM}", "{DD}"):
        pattern = pattern.replace(placeholder, "*")
    return pattern


def _span_of(match: re.Match, path: str) -> int | None:
    """The span a matched path names: its {SPAN} number, or its date's day number (None for a
    name that is no calendar date, such as month 13)."""
    groups = match.groupdict()
    if groups.get("span") is not None:
        return int(groups["span"])
    try:
        day = datetime.date(int(groups["yyyy"]), int(groups["mm"]), int(groups.get("dd") or 1))
    except ValueError:
        return None
    return span_of_date(day)


def _header_of(path: str, data: bytes) -> list[str]:
    if not data.strip():
        raise UserInputError(f"{path} is empty; remove it, or give it a header line and rows")
    if data[:2] == GZIP_MAGIC:
        raise UserInputError(
            f"{path} looks gzip-compressed (it starts with gzip's magic bytes), not CSV text; "
            f"decompress it first (gunzip -c {os.path.basename(path)} > plain.csv)"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserInputError(
            f"{path}, line {line}: bytes that are not UTF-8 ({data[error.start : error.start + 4]!r}); "
            "save the file as UTF-8"
        ) from None
    first_line = data.split(b"\n", 1)[0].decode("utf-8").strip("\r\ufeff")
    csv.field_size_limit(max(csv.field_size_limit(), len(first_line) + 1))
    header = [name.strip() for name in next(csv.reader([first_line]))]
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates or "" in header:
        raise UserInputError(
            f"{path}, line 1: the header has {'duplicate columns ' + str(duplicates) if duplicates else 'an empty column name'}"
        )
    return header


_VALID_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def feature_name(column: str) -> str:
    """A CSV header as a feature name valid everywhere a name must be (SavedModel signature
    arguments, TensorFlow node names): the header itself when it is already one, else its letters
    (accents dropped) and digits, lower case, joined by '_', with `f_` before a leading digit.
    `Culmen Length (mm)` -> `culmen_length_mm`; `2nd/try` -> `f_2nd_try`; "" when nothing is left.
    A name longer than MAX_FEATURE_NAME keeps its start and ends with 8 hex digits of its hash
    (stable, distinct): TF Transform names files after features, and file names have a limit."""
    if _VALID_NAME.match(column):
        name = column
    else:
        ascii_text = unicodedata.normalize("NFKD", column).encode("ascii", "ignore").decode()
        name = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_").lower()
        name = f"f_{name}" if name[:1].isdigit() else name
    if len(name) > MAX_FEATURE_NAME:
        suffix = hashlib.sha256(column.encode()).hexdigest()[:8]
        name = f"{name[: MAX_FEATURE_NAME - 9].rstrip('_')}_{suffix}"
    return name


MAX_FEATURE_NAME = 64


def feature_names(header: list[str], path: str = "") -> list[str]:
    """The feature name of each column; a column with no letter or digit that maps to something
    becomes `column_<n>`. Two columns that map to one name are an error naming both."""
    names = [feature_name(c) or f"column_{i}" for i, c in enumerate(header, 1)]
    first: dict[str, str] = {}
    for column, name in zip(header, names):
        if name in first:
            raise UserInputError(
                f"{path}, line 1: columns {first[name]!r} and {column!r} both become feature {name!r}; "
                "rename one of them in the CSV header"
            )
        first[name] = column
    return names


def _check_params(params: ExampleGenParams) -> None:
    if not params.splits or not all(isinstance(w, int) and w > 0 for w in params.splits.values()):
        raise UserInputError(f"splits must map split names to positive integer weights, got {params.splits}")
    bad = {c: t for c, t in params.column_types.items() if t not in COLUMN_TYPES}
    if bad:
        raise UserInputError(f"column_types: {bad}; each type must be one of {', '.join(COLUMN_TYPES)}")


def schema_column_types(schema: Schema | None) -> dict[str, str]:
    """Column types declared by a Schema artifact (INT -> int, FLOAT -> float, BYTES -> string)."""
    if schema is None:
        return {}
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.schema_gen.schema_io import load_schema

    names = {schema_pb2.INT: "int", schema_pb2.FLOAT: "float", schema_pb2.BYTES: "string"}
    return {f.name: names[f.type] for f in load_schema(schema).feature if f.type in names}


def schema_non_finite(schema: Schema | None) -> dict[str, frozenset]:
    """Column -> the non-finite values ("nan", "inf") the Schema artifact allows in it; every
    other column refuses them."""
    if schema is None:
        return {}
    from components.schema_gen.schema_io import allowed_non_finite, load_schema

    allowed = {f.name: allowed_non_finite(f) for f in load_schema(schema).feature}
    return {name: kinds for name, kinds in allowed.items() if kinds}


def run_example_gen(
    ctx: ExecutionContext,
    params: ExampleGenParams,
    schema: InputArtifact[Schema | None],
    examples: OutputArtifact[Examples],
) -> None:
    resolved = ctx.resolved
    header, features = resolved["header"], resolved["features"]
    by_header = dict(zip(header, features))
    given = {by_header.get(c, c): t for c, t in params.column_types.items()}
    declared = {**schema_column_types(schema), **given}
    declared = {c: t for c, t in declared.items() if c in features}
    drop = [by_header.get(c, c) for c in params.drop_rows_missing]
    unknown = [c for c, f in zip(params.drop_rows_missing, drop) if f not in features]
    if unknown:
        raise UserInputError(
            f"drop_rows_missing names {', '.join(map(repr, unknown))}, not a column of span "
            f"{resolved['span']}; its columns: {', '.join(header)}"
        )
    paths = [f["path"] for f in resolved["files"]]
    threads = ctx.threads_without_pipeline(input_bytes=sum(os.path.getsize(p) for p in paths))
    from components.example_gen import beam, stages

    write_examples: Callable[..., stages.Report] = (
        functools.partial(stages.write_examples_here, threads=threads) if threads else beam.write_examples
    )
    report = write_examples(
        ctx,
        paths,
        features,
        declared,
        list(params.null_values),
        dict(params.splits),
        examples,
        schema_non_finite(schema),
        drop_missing=drop,
    )
    if report.errors:
        shown = "\n  ".join(str(e) for e in report.errors[:10])
        more = f"\n  ... and {len(report.errors) - 10} more" if len(report.errors) > 10 else ""
        raise UserInputError(
            f"{len(report.errors)} bad row(s) in span {resolved['span']}; nothing was written:\n  {shown}{more}"
        )
    total = sum(report.counts.values())
    if report.dropped_rows:
        where = ", ".join(f"{os.path.basename(path)} line {line}" for path, line in report.dropped_lines)
        more = " ..." if report.dropped_rows > len(report.dropped_lines) else ""
        ctx.warn(
            f"dropped {report.dropped_rows} of {total + report.dropped_rows} row(s) without "
            + " or ".join(f"{c!r} ({n})" for c, n in report.dropped.items())
            + f" (drop_rows_missing): {where}{more}"
        )
        examples.custom_properties["rows_dropped"] = json.dumps(report.dropped)
    if total == 0:
        raise UserInputError(f"span {resolved['span']} has no data rows (files: {', '.join(paths)})")
    examples.set("span", resolved["span"])
    examples.set("version", resolved["version"])
    # TFX's ExampleGen writes both as custom properties too, where its span resolvers read them.
    examples.custom_properties.update(span=resolved["span"], version=resolved["version"])
    if is_dated(params.input_pattern):
        examples.custom_properties["span_date"] = span_text(resolved["span"], params.input_pattern)
    examples.split_names = list(params.splits)
    for split in params.splits:
        examples.custom_properties[f"row_count_{split}"] = report.counts.get(split, 0)
    examples.custom_properties["input_fingerprint"] = resolved["input_fingerprint"]
    examples.custom_properties["input_files"] = json.dumps(paths)
    examples.custom_properties["input_pattern"] = params.input_pattern
    if resolved.get("skipped_spans"):
        examples.custom_properties["skipped_spans"] = json.dumps(resolved["skipped_spans"])
    examples.custom_properties["column_types"] = json.dumps(report.types)
    renamed = {c: f for c, f in by_header.items() if c != f}
    if renamed:
        examples.custom_properties["column_names"] = json.dumps(renamed)
    counts = ", ".join(f"{s} {report.counts.get(s, 0)}" for s in params.splits)
    ctx.log(
        f"wrote {total} examples ({counts}); types: {', '.join(f'{k}={v}' for k, v in report.types.items())}"
    )


ExampleGen = Component(
    name="ExampleGen",
    run=run_example_gen,
    parameters=ExampleGenParams,
    version=CODE_VERSION,
    resolve=resolve_span,
    fan_out=FanOut(applies=lambda params: params.window is not None, items=window_items),
)
