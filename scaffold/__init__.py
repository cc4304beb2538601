"""`runner.py init` and `infer-schema`: a project for anyone's CSV, and a schema inferred from data.

`init_project(DIR, data, label)` reads the CSV files once (ExampleGen -> StatisticsGen ->
SchemaGen in a scratch root), decides the task from the label column when it is not given, and
writes a project that runs end to end with no edits:

    DIR/data/span-1/*.csv   the files, when `data` has no {SPAN} placeholder (else the pattern is kept)
    DIR/schema.pbtxt        the inferred schema, commented where a person tightens it
    DIR/preprocessing.py    preprocessing_fn: z-scores, vocabularies, missing-value flags, the label
    DIR/model.py            build_fn: a small dense network over whatever Transform outputs
    DIR/pipeline.py         create_pipeline(): the whole pipeline, with the label named once
    DIR/scoring.py          create_pipeline(): rows to score (DIR/to-score/span-N/) scored by the served model
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from components.schema_gen.schema_io import SERVING, TRAINING
from scaffold import templates

CLASSIFICATION, REGRESSION = "classification", "regression"
MAX_INT_CLASSES = 10  # an integer label with at most this many distinct values is a class id


class InitError(Exception):
    """The data or the request cannot make a project; the message says what to change."""


@dataclass
class InferredData:
    """What one pass over a span says: the schema (with its notes), the statistics of each
    split, each column's feature name, and the schema as commented text."""

    schema: object  # components.schema_gen.component.InferredSchema
    statistics: list
    feature_of_column: dict[str, str]
    text: str

    @property
    def explanation(self) -> list[str]:
        return self.schema.explanation()


def infer_schema_for(settings: dict, root: str, log: Callable[[str], None] = print) -> InferredData:
    """Runs ExampleGen (with `settings`, its parameters) -> StatisticsGen -> SchemaGen in `root`."""
    from components.example_gen.component import ExampleGen
    from components.schema_gen.component import SchemaGen
    from components.schema_gen.inference import infer_schema
    from components.schema_gen.schema_io import SCHEMA_FILE
    from components.statistics_gen.component import StatisticsGen
    from components.statistics_gen.statistics import load_statistics
    from pipeline import Pipeline
    from pipeline.errors import DefinitionError
    from pipeline.local_runner import RunOptions, run_pipeline

    try:
        example_gen = ExampleGen(**settings)
    except DefinitionError as error:
        raise InitError(str(error)) from None
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
    pipeline = Pipeline(name="infer-schema", nodes=[example_gen, statistics_gen, schema_gen])
    result = run_pipeline(pipeline, RunOptions(pipeline_root=root, log=log))
    if not result.ok:
        raise InitError(str(result.error))
    examples = result.step("ExampleGen").outputs["examples"]
    statistics = result.step("StatisticsGen").outputs["statistics"]
    datasets = [load_statistics(statistics, split) for split in statistics.split_names]
    renamed = json.loads(examples.custom_properties.get("column_names") or "{}")
    feature_of_column = {**{n: n for n in json.loads(examples.custom_properties["column_types"])}, **renamed}
    with open(os.path.join(result.step("SchemaGen").outputs["schema"].uri, SCHEMA_FILE)) as f:
        text = f.read()
    return InferredData(infer_schema(datasets), datasets, feature_of_column, text)


@dataclass
class Project:
    """A project written by `init_project`: where, what it predicts, and how its columns are used."""

    directory: str
    name: str
    label: str
    task: str
    data_pattern: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    unused: dict[str, str] = field(default_factory=dict)  # feature -> why it is left out
    explanation: list[str] = field(default_factory=list)
    gate: str = "accuracy"  # the metric the Evaluator's floor and change threshold use
    gate_reason: str = ""
    dates: dict[str, bool] = field(default_factory=dict)  # feature -> whether it has a time of day
    unlabeled: tuple[int, int] = (0, 0)  # (rows without a label, rows): ExampleGen drops those

    def summary(self) -> str:
        pipeline_file = _shown_path(self.directory)
        unused = ", ".join(f"{n} ({why})" for n, why in self.unused.items())
        dates = ", ".join(
            f"{n} (year, month, day of week{', hour' if t else ''})" for n, t in self.dates.items()
        )
        lines = [
            f"wrote project {self.name!r} in {self.directory}:",
            f"  {self.task} of {self.label!r} from {self.data_pattern}",
            f"  numbers (z-scores): {', '.join(self.numeric) or 'none'}",
            f"  categories (vocabularies): {', '.join(self.categorical) or 'none'}",
            *([f"  dates: {dates}"] if dates else []),
            f"  not used: {unused or 'none'}",
            *(
                [
                    f"  rows without a label: {self.unlabeled[0]} of {self.unlabeled[1]}; ExampleGen drops "
                    "them (drop_rows_missing=[LABEL] in pipeline.py) and every run says how many"
                ]
                if self.unlabeled[0]
                else []
            ),
            f"  blessed on: {self.gate}, beating the trivial baseline and the served model"
            + (f" ({self.gate_reason})" if self.gate_reason else ""),
            "  schema.pbtxt, preprocessing.py, model.py, pipeline.py, scoring.py: edit them, they are yours",
            "what the schema inference decided:",
            *(f"  {line}" for line in self.explanation),
            "run it:",
            f"  .venv/bin/python runner.py run --pipeline {pipeline_file}",
            f"score new rows (put them in {_shown_path(self.directory, 'to-score/span-1')}/) with the served model:",
            f"  .venv/bin/python runner.py score --pipeline {_shown_path(self.directory, 'scoring.py')}",
        ]
        return "\n".join(lines)


def init_project(
    directory: str,
    data: str,
    label: str,
    task: str | None = None,
    name: str | None = None,
    log: Callable[[str], None] = print,
) -> Project:
    """Writes a project for the CSV files of `data` predicting column `label` (its CSV header or
    feature name); `task` is inferred from the label when None. Raises InitError."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and os.listdir(directory):
        raise InitError(f"{directory} exists and is not empty; give a new folder")
    name = name or _pipeline_name(os.path.basename(directory))
    if not re.match(r"^[A-Za-z][A-Za-z0-9_.-]*$", name):
        raise InitError(f"pipeline name {name!r}: use letters, digits, '_', '-', '.', starting with a letter")
    pattern, copies = _data_layout(directory, data)
    scratch = tempfile.mkdtemp(prefix="init-")
    try:
        inferred = infer_schema_for({"input_pattern": pattern}, scratch, log)
    except InitError:
        _undo(directory, copies)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        project = _write_project(directory, name, pattern, copies, label, task, inferred)
    except InitError:
        _undo(directory, copies)
        raise
    return project


def _write_project(directory, name, pattern, copies, label, task, inferred) -> Project:
    from tensorflow_metadata.proto.v0 import schema_pb2

    label_feature = inferred.feature_of_column.get(label, label)
    features = {f.name: f for f in inferred.schema.proto.feature}
    if label_feature not in features:
        columns = ", ".join(repr(c) for c in inferred.feature_of_column)
        raise InitError(f"--label {label!r} is not a column of the data; columns: {columns}")
    feature = features[label_feature]
    unlabeled = _unlabeled_rows(label_feature, inferred)
    if unlabeled[0] == unlabeled[1]:
        raise InitError(
            f"the label {label!r} is empty or NA in every row; name the column that holds the label"
        )
    task = task or _infer_task(feature, label_feature, pattern, copies, inferred)
    if task == REGRESSION and feature.type == schema_pb2.BYTES:
        raise InitError(
            f"label {label!r} holds text, which a regression cannot predict; use --task classification"
        )
    classes = _label_values(label_feature, inferred)
    if task == CLASSIFICATION and classes is not None and len(classes) < 2:
        raise InitError(
            f"the label {label!r} holds one value in every labelled row ({', '.join(map(repr, sorted(classes)))}): "
            "a classifier needs at least two classes; check the label column of the export, or name "
            "another column with --label"
        )
    if task == CLASSIFICATION and feature.type != schema_pb2.BYTES:
        # Class names are strings: read the label column as text, so that the model's classes,
        # the Evaluator's labels and a client's answers all speak of the same values.
        feature.type = schema_pb2.BYTES
        feature.ClearField("int_domain")
        feature.ClearField("float_domain")
        inferred.schema.notes[label_feature] += "; read as text: the label of a classification"
    # Rows to score (the schema's SERVING environment, as TFDV's) need not have the label.
    inferred.schema.proto.default_environment.extend([TRAINING, SERVING])
    feature.not_in_environment.append(SERVING)
    inferred.schema.notes[label_feature] += (
        "; the label: not expected in rows to score (not_in_environment SERVING)"
    )
    if unlabeled[0]:
        # ExampleGen drops the rows without a label, so every example it writes has one.
        feature.presence.min_fraction = 1.0
        note = inferred.schema.notes[label_feature].split("; ", 1)[-1]
        inferred.schema.notes[label_feature] = (
            f"required (empty in {unlabeled[0]} of {unlabeled[1]} rows, which ExampleGen drops: "
            f"drop_rows_missing); {note}"
        )
    numeric, categorical, dates, unused = _uses(
        {n: f for n, f in features.items() if n != label_feature}, pattern, copies, inferred
    )
    if not numeric and not categorical and not dates:
        raise InitError(
            f"no column besides the label can feed a model (not used: "
            f"{', '.join(f'{n} ({why})' for n, why in unused.items()) or 'none'}); a project needs at least "
            "one numeric column, one text column with few distinct values, or a date"
        )
    from components.schema_gen.inference import schema_text

    gate = ("accuracy", "")
    if task == CLASSIFICATION:
        gate = gate_metric(_class_counts(label_feature, pattern, copies, inferred))
    os.makedirs(directory, exist_ok=True)
    ids = [n for n, why in unused.items() if "id" in why.split(":")[0].split()]
    files = {
        "schema.pbtxt": schema_text(inferred.schema, f"the data of {pattern}"),
        "preprocessing.py": templates.preprocessing(name, task, numeric, categorical, unused, dates),
        "model.py": templates.model(name, task),
        "pipeline.py": templates.pipeline(
            name,
            task,
            label_feature,
            _pattern_in_file(pattern, copies),
            categorical,
            _shown_path(directory),
            label_spread=_spread(label_feature, inferred) if task == REGRESSION else None,
            gate=gate,
            drop_unlabeled=bool(unlabeled[0]),
        ),
        "scoring.py": templates.scoring(name, _shown_path(directory, "scoring.py"), ids),
    }
    for file_name, text in files.items():
        with open(os.path.join(directory, file_name), "w") as f:
            f.write(text)
    return Project(
        directory,
        name,
        label_feature,
        task,
        pattern,
        numeric,
        categorical,
        unused,
        inferred.explanation,
        gate=gate[0] if task == CLASSIFICATION else "root_mean_squared_error",
        gate_reason=gate[1],
        dates=dates,
        unlabeled=unlabeled,
    )


def _spread(label_feature: str, inferred: InferredData) -> float | None:
    """The standard deviation of a numeric label over every file's statistics (pooled)."""
    from components.statistics_gen.statistics import feature_stats

    n = total = squares = 0.0
    for dataset in inferred.statistics:
        stats = feature_stats(dataset).get(label_feature)
        if stats is None or not stats.HasField("num_stats"):
            continue
        count = stats.num_stats.common_stats.num_non_missing
        mean, std = stats.num_stats.mean, stats.num_stats.std_dev
        n, total, squares = n + count, total + count * mean, squares + count * (std * std + mean * mean)
    if not n:
        return None
    return max(squares / n - (total / n) ** 2, 0.0) ** 0.5


def _unlabeled_rows(label_feature: str, inferred: InferredData) -> tuple[int, int]:
    """(rows whose label is empty or NA, rows), over every split."""
    from components.statistics_gen.statistics import feature_stats

    examples = sum(d.num_examples for d in inferred.statistics)
    present = 0
    for dataset in inferred.statistics:
        stats = feature_stats(dataset).get(label_feature)
        if stats is not None:
            present += _common(stats).num_non_missing
    return examples - present, examples


def _label_values(label_feature: str, inferred: InferredData) -> set[str] | None:
    """The label's distinct values over every split when the statistics saw them all (a column
    of few values), else None."""
    from components.statistics_gen.statistics import feature_stats

    values: set[str] = set()
    for dataset in inferred.statistics:
        stats = feature_stats(dataset).get(label_feature)
        if stats is None:
            continue
        if stats.HasField("string_stats"):
            values |= {b.label for b in stats.string_stats.rank_histogram.buckets}
        elif stats.num_stats.min == stats.num_stats.max and _common(stats).num_non_missing:
            values.add(f"{stats.num_stats.min:g}")
        else:
            return None
    return values


def _common(stats):
    return (stats.string_stats if stats.HasField("string_stats") else stats.num_stats).common_stats


# An integer column whose values are all distinct over at least this many rows is an id.
MIN_ROWS_FOR_UNIQUE_ID = 30


def _uses(features: dict, pattern: str, copies: list[str], inferred: InferredData):
    """How each feature feeds the model: (numbers, categories, dates {name: has a time of day},
    unused {name: why}). Ids (named like one, or an integer or text unique per row) and free text
    are left out, and so are text with many distinct values and dates init cannot read."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.schema_gen.columns import DATE, DATETIME, TEXT, named_like_id
    from components.statistics_gen.statistics import feature_stats

    stats: dict = {}
    for dataset in inferred.statistics:
        for name, s in feature_stats(dataset).items():
            stats.setdefault(name, []).append(s)
    integers = [n for n, f in features.items() if f.type == schema_pb2.INT and not named_like_id(n)]
    unique = _unique_per_row(integers, pattern, copies, inferred)
    numeric, categorical, dates, unused = [], [], {}, {}
    for name, feature in features.items():
        kind = inferred.schema.kinds.get(name)
        seen = stats.get(name, [])
        present = sum(_common(s).num_non_missing for s in seen)
        distinct = max([0, *(s.string_stats.unique for s in seen if s.HasField("string_stats"))])
        if kind in (DATE, DATETIME):
            dates[name] = kind == DATETIME
        elif named_like_id(name):
            unused[name] = "named like an id"
        elif name in unique or (feature.type == schema_pb2.BYTES and present and distinct >= 0.95 * present):
            unused[name] = "an id: unique per row"
        elif kind == TEXT:
            unused[name] = "free text"
        elif kind:
            unused[name] = f"{kind}s: write them as YYYY-MM-DD to have init use them"
        elif feature.type in (schema_pb2.INT, schema_pb2.FLOAT):
            numeric.append(name)
        elif feature.domain:
            categorical.append(name)
        else:
            unused[name] = f"{distinct} distinct values"
    return numeric, categorical, dates, unused


def _unique_per_row(names: list[str], pattern: str, copies: list[str], inferred: InferredData) -> set:
    """The integer columns among `names` whose every value is distinct over every file (at least
    MIN_ROWS_FOR_UNIQUE_ID of them): row numbers and record ids, which a z-score would read as a
    quantity."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not names:
        return set()
    columns = {_column_of(n, inferred): n for n in names}
    values: dict[str, list] = {n: [] for n in names}
    for path in copies or glob.glob(pattern.replace("{SPAN}", "*").replace("{VERSION}", "*")):
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(
                include_columns=list(columns), column_types={c: pa.string() for c in columns}
            ),
        )
        for column, name in columns.items():
            cells = table.column(column).drop_null().to_numpy(zero_copy_only=False)
            values[name].append(cells[(cells != "") & (cells != "NA")])
    unique = set()
    for name, parts in values.items():
        cells = np.concatenate(parts) if parts else np.array([])
        if len(cells) >= MIN_ROWS_FOR_UNIQUE_ID and len(np.unique(cells)) == len(cells):
            unique.add(name)
    return unique


def _infer_task(feature, label_feature: str, pattern: str, copies: list[str], inferred: InferredData) -> str:
    """Text labels are classes; integers with few distinct values are class ids; other numbers are
    a regression target."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    if feature.type == schema_pb2.BYTES:
        return CLASSIFICATION
    if feature.type == schema_pb2.FLOAT:
        return REGRESSION
    values = _distinct_label_values(label_feature, pattern, copies, inferred)
    return CLASSIFICATION if len(values) <= MAX_INT_CLASSES else REGRESSION


# A class rarer than this share of the rows makes the label imbalanced (see `gate_metric`).
RARE_SHARE = 0.2


def gate_metric(counts: dict[str, int]) -> tuple[str, str]:
    """The metric the Evaluator's floor and change threshold gate on, for a label with these class
    counts, and why: accuracy for balanced classes; for an imbalanced two-class label, the
    precision-recall AUC of its minority (positive) class; for a rare class among several, macro-F1."""
    total = sum(counts.values())
    if total == 0 or len(counts) < 2:
        return "accuracy", ""
    rarest = min(sorted(counts), key=lambda c: counts[c])
    share = counts[rarest] / total
    if len(counts) == 2 and share < RARE_SHARE:
        return (
            f"auc_precision_recall/{rarest}",
            f"{rarest!r} is {share:.1%} of the rows: the positive class, gated on its precision-recall AUC",
        )
    if share < RARE_SHARE / (len(counts) - 1):
        return (
            "macro_f1",
            f"{rarest!r} is {share:.1%} of the rows: gated on macro-F1, each class counting the same",
        )
    return "accuracy", ""


def _class_counts(label_feature: str, pattern: str, copies: list[str], inferred: InferredData) -> dict:
    """Rows per label value over every file (empty and NA cells left out)."""
    import collections

    import pyarrow as pa
    import pyarrow.csv as pcsv

    column = _column_of(label_feature, inferred)
    counts: collections.Counter = collections.Counter()
    for path in copies or glob.glob(pattern.replace("{SPAN}", "*").replace("{VERSION}", "*")):
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}),
        )
        counts.update(v for v in table.column(0).to_pylist() if v not in (None, "", "NA"))
    return dict(counts)


def _column_of(feature: str, inferred: InferredData) -> str:
    """The CSV header of a feature (a renamed column's original header)."""
    columns = [c for c, f in inferred.feature_of_column.items() if f == feature]
    return next((c for c in columns if c != feature), feature)


def _distinct_label_values(
    label_feature: str, pattern: str, copies: list[str], inferred: InferredData
) -> set:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    column = _column_of(label_feature, inferred)
    values: set = set()
    for path in copies or glob.glob(pattern.replace("{SPAN}", "*").replace("{VERSION}", "*")):
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}),
        )
        values.update(v for v in table.column(0).to_pylist() if v not in (None, "", "NA"))
        if len(values) > MAX_INT_CLASSES:
            break
    return values


def _data_layout(directory: str, data: str) -> tuple[str, list[str]]:
    """(the input pattern, the files copied): a pattern with {SPAN} is kept as it is (made
    absolute); the files of any other glob are copied into DIR/data/span-1/."""
    if "{SPAN}" in data:
        return os.path.abspath(data), []
    paths = sorted(p for p in glob.glob(data) if os.path.isfile(p))
    if not paths:
        raise InitError(f"no file matches --data {data!r}")
    span_dir = os.path.join(directory, "data", "span-1")
    os.makedirs(span_dir, exist_ok=True)
    copies = []
    for index, path in enumerate(paths):
        base = os.path.basename(path)
        target = os.path.join(span_dir, base if base.endswith(".csv") else base + ".csv")
        if os.path.exists(target):
            target = os.path.join(span_dir, f"{index}-{os.path.basename(target)}")
        shutil.copyfile(path, target)
        copies.append(target)
    return os.path.join(directory, "data", "span-{SPAN}", "*.csv"), copies


def _shown_path(directory: str, name: str = "pipeline.py") -> str:
    """A project file's path as a person types it: relative when below the current folder."""
    path = os.path.join(directory, name)
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _pattern_in_file(pattern: str, copies: list[str]) -> str:
    """The data pattern as pipeline.py writes it: beside the file when the data was copied there."""
    if copies:
        return 'os.path.join(HERE, "data", "span-{SPAN}", "*.csv")'
    return repr(pattern)


def _undo(directory: str, copies: list[str]) -> None:
    if copies:
        shutil.rmtree(os.path.join(directory, "data"), ignore_errors=True)
    if os.path.isdir(directory) and not os.listdir(directory):
        os.rmdir(directory)


def _pipeline_name(folder: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder).strip("-.")
    return name if name[:1].isalpha() else f"p-{name}" if name else "my-pipeline"
