"""The files `runner.py init` writes: short, commented, and meant to be edited."""

from __future__ import annotations

PREPROCESSING = '''"""{name}: `preprocessing_fn` for Transform.

Transform runs it over the training split to learn means, deviations and vocabularies, then
applies the same graph to every split, and the served model embeds it: training and serving
cannot disagree. Written by `runner.py init` from schema.pbtxt; edit the lists to change what
the model sees.
"""

import math

import tensorflow as tf
import tensorflow_transform as tft

# Numbers: z-scores over the training split. A missing value becomes 0 (the mean), and
# `<name>_missing` is 1 for it (0 otherwise), so the model can tell.
NUMERIC_FEATURES = {numeric}

# Text with few distinct values: an index into a vocabulary of the training split, with one
# more index for missing values and values never seen in training.
CATEGORICAL_FEATURES = {categorical}

# Dates (YYYY-MM-DD, with or without a time of day; name -> True when it has one): the year as
# a z-score, and the month, the day of the week (and the hour) as points on a circle, so that
# December sits beside January. A missing or unreadable date is 0 in each, and 1 in `<name>_missing`.
DATE_FEATURES = {dates}
DATE_PATTERN = r"\\d{{4}}[-/]\\d{{1,2}}[-/]\\d{{1,2}}([ T]\\d{{1,2}}:\\d{{2}}.*)?"

# Not used, and why: ids, free text, text with many distinct values. Move one to
# CATEGORICAL_FEATURES to use its most frequent values, or derive a feature from it below.
UNUSED_FEATURES = {unused}

MISSING_SUFFIX = "_missing"
TOP_K = 1000  # the most frequent values kept in a vocabulary


def preprocessing_fn(inputs, custom_config):
    """Raw features (dense when required, sparse when optional) to model features; the label's
    name comes from the pipeline (Transform's custom_config)."""
    label = custom_config["label_key"]
    outputs = {{}}
    for name in NUMERIC_FEATURES:
        values = tf.cast(inputs[name], tf.float32)
        outputs[name] = _dense(tft.scale_to_z_score(values), default=0.0)
        outputs[name + MISSING_SUFFIX] = 1.0 - _dense(_ones_like(values), default=0.0)
    for name in CATEGORICAL_FEATURES:
        strings = _dense(inputs[name], default="")  # "" never enters a vocabulary: out of vocabulary
        outputs[name] = tft.compute_and_apply_vocabulary(
            strings, top_k=TOP_K, num_oov_buckets=1, vocab_filename=name
        )
    for name, with_time in DATE_FEATURES.items():
        parts, valid = _date_parts(_dense(inputs[name], default=""))
        outputs[name + "_year"] = _dense(tft.scale_to_z_score(_where(parts["year"], valid)), default=0.0)
        periods = {{"month": 12, "weekday": 7, **({{"hour": 24}} if with_time else {{}})}}
        for part, period in periods.items():
            angle = 2 * math.pi * parts[part] / period
            outputs[f"{{name}}_{{part}}_sin"] = tf.sin(angle) * valid
            outputs[f"{{name}}_{{part}}_cos"] = tf.cos(angle) * valid
        outputs[name + MISSING_SUFFIX] = 1.0 - valid
{label_code}
    return outputs


def _dense(values, default):
    """A [batch] tensor from a [batch, 1] dense or sparse one, `default` where a value is missing."""
    if isinstance(values, tf.SparseTensor):
        values = tft.sparse_tensor_to_dense_with_shape(values, [None, 1], default_value=default)
    return tf.reshape(values, [-1])


def _date_parts(strings):
    """The year, month (0-11), day of the week (0 = Monday) and hour of ISO dates, as float32
    [batch] tensors, and `valid`: 1.0 where the string is such a date, else 0 (and its parts 0)."""
    valid = tf.strings.regex_full_match(strings, DATE_PATTERN)
    digits = tf.strings.regex_replace(tf.where(valid, strings, "1970-01-01"), "[^0-9]+", " ")
    numbers = tf.strings.to_number(
        tf.strings.split(tf.strings.strip(digits)).to_tensor(default_value="0", shape=[None, 4]), tf.int64
    )
    year, month, day, hour = (numbers[:, i] for i in range(4))
    # Days since 1970-01-01 (a Thursday), by the proleptic Gregorian calendar's eras of 400 years.
    shifted = year - tf.cast(month <= 2, tf.int64)
    era = tf.math.floordiv(shifted, 400)
    year_of_era = shifted - era * 400
    day_of_year = tf.math.floordiv(153 * tf.math.floormod(month + 9, 12) + 2, 5) + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146097 + day_of_era - 719468
    valid = tf.cast(valid, tf.float32)
    parts = {{"year": year, "month": month - 1, "weekday": tf.math.floormod(days + 3, 7), "hour": hour}}
    return {{k: tf.cast(v, tf.float32) * valid for k, v in parts.items()}}, valid


def _where(values, valid):
    """`values` [batch] as a [batch, 1] SparseTensor holding only the valid ones: what an analyzer
    (a mean, a deviation) should see of a feature that is sometimes missing."""
    rows = tf.where(valid > 0)
    indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
    return tf.SparseTensor(indices, tf.gather_nd(values, rows), tf.stack([tf.size(values, out_type=tf.int64), 1]))


def _ones_like(values):
    if isinstance(values, tf.SparseTensor):
        return tf.sparse.map_values(tf.ones_like, values)
    return tf.ones_like(values)
'''

LABEL_CODE = {
    "classification": """    # The label: its index in the vocabulary named like it, most frequent class first; the
    # Trainer's classification head reads that vocabulary to name the classes it predicts.
    outputs[label] = tft.compute_and_apply_vocabulary(_dense(inputs[label], default=""), vocab_filename=label)""",
    "regression": """    # The label, as a number; the Trainer's regression head standardizes it while training and
    # predicts in its own units.
    outputs[label] = _dense(tf.cast(inputs[label], tf.float32), default=0.0)""",
}

MODEL = '''"""{name}: `build_fn` for the Trainer, a small dense network over Transform's outputs.

The Trainer calls `build_fn(features, params)` with the transformed features (the label left
out) and puts the logits it returns under a {task} head. `params` holds the Trainer's
hyperparameters plus `vocabulary_sizes` (Transform's vocabularies, name -> size){n_classes}.
"""

import keras
import tensorflow as tf

OOV_BUCKETS = 1  # preprocessing.py gives each vocabulary one index for unseen values


def build_fn(features, params):
    columns = []
    for name in sorted(features):
        if name in params["vocabulary_sizes"]:  # a vocabulary index: one-hot
            size = params["vocabulary_sizes"][name] + OOV_BUCKETS
            columns.append(tf.one_hot(tf.cast(features[name], tf.int32), size))
        else:  # a number
            columns.append(tf.reshape(tf.cast(features[name], tf.float32), [-1, 1]))
    hidden = tf.concat(columns, axis=1)
    for units in params.get("hidden_units", [32, 16]):
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    return keras.layers.Dense({outputs})(hidden)
'''

PIPELINE = '''"""The {name} pipeline: a {task} model of {label!r}, from CSV files to a blessed, pushed model.

    .venv/bin/python runner.py run --pipeline {path}    # the latest span
    .venv/bin/python runner.py runs --pipeline {path}   # past runs; also models, lineage --pushed latest

Written by `runner.py init`. Each new span is a folder matching DATA (span-2/, span-3/, ...); a
run trains on the latest WINDOW of them (each ingested once), and evaluates on the newest. Everything
here is yours to change: the schema (schema.pbtxt), the preprocessing (preprocessing.py), the model
(model.py), the window and the thresholds below. scoring.py scores new rows with the served model.
"""

import os

from components.evaluator import Evaluator
from components.example_gen import ExampleGen, RollingWindow
from components.example_validator import ExampleValidator
from components.pusher import Pusher
from components.schema_gen import ImportSchemaGen
from components.statistics_gen import StatisticsGen
from components.trainer import Trainer
from components.transform import Transform
from pipeline import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = {name!r}
DATA = {data}
LABEL = {label!r}  # the label's feature name; the Evaluator and Pusher read it from the model
TASK = {task!r}
# Train on the last three spans (RollingWindow(1): the newest alone; SpanRange(first, last): fixed).
WINDOW = RollingWindow(3)


def create_pipeline() -> Pipeline:
    schema_gen = ImportSchemaGen(schema_file=os.path.join(HERE, "schema.pbtxt"))
    # test: examples the Trainer never sees (its early stopping reads eval); the Evaluator blesses on them.
    example_gen = ExampleGen(
        input_pattern=DATA,
        window=WINDOW,
        schema=schema_gen.outputs["schema"],
        splits={{"train": 3, "eval": 1, "test": 1}},
{drop}    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    # The data gate: anomalies against the schema (and drift from the previous span) stop the run.
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "preprocessing.py"),
        custom_config={{"label_key": LABEL}},
    )
    trainer = Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "model.py"),
        label_key=LABEL,
        head=TASK,
        hyperparameters={{"learning_rate": 0.01, "hidden_units": [32, 16]}},
        train_steps=2000,
        eval_every_steps=50,
        eval_steps=40,  # early stopping on 40 batches of the eval split
        early_stopping_patience=3,
        early_stopping_min_delta=0.001,
{class_weights}    )
    evaluator = Evaluator(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        slices={slices},
        # Blessed only if it beats the trivial baseline ({trivial}) by removing
        # floor_margin of that guess's error (None: no floor), and, once a model is served, is no
        # worse than it. Add a bar such as value_thresholds={{{floor}}}{hint} once you know
        # what is good enough.
        floor_margin=0.1,
{floor_metric}        change_thresholds={{{change}: 0.0}},
    )
    pusher = Pusher(
        model=trainer.outputs["model"],
        blessing=evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
    )
    nodes = [schema_gen, example_gen, statistics_gen, example_validator, transform, trainer, evaluator, pusher]
    return Pipeline(name=NAME, nodes=nodes, pipeline_root=os.path.join(HERE, "runs"))
'''


SCORING = '''"""Scoring for the {name} pipeline: rows to score (a folder per span under to-score/, with or
without the label) through the data gate, then scored by the model the {name} pipeline serves.

    .venv/bin/python runner.py score --pipeline {path}                   # the latest span of DATA
    .venv/bin/python runner.py score --pipeline {path} --model blessed   # or --model 3: push version 3

Written by `runner.py init`. It shares the training pipeline's metadata store, where it finds the
model and records which version scored which span; its own runs go under runs-scoring/. The
predictions, `predictions.csv` (ids, prediction, model version) and TFX's PredictionLogs, are in
the BulkInferrer's output, printed at the end of each run.
"""

import os

from components.bulk_inferrer import BulkInferrer
from components.example_gen import ExampleGen
from components.example_validator import ExampleValidator
from components.schema_gen import ImportSchemaGen
from components.statistics_gen import StatisticsGen
from pipeline import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINING_PIPELINE = {name!r}
DATA = os.path.join(HERE, "to-score", "span-{{SPAN}}", "*.csv")
ID_COLUMNS = {ids}  # copied to each line of predictions.csv, to tell whose prediction it is


def create_pipeline() -> Pipeline:
    schema_gen = ImportSchemaGen(schema_file=os.path.join(HERE, "schema.pbtxt"))
    example_gen = ExampleGen(input_pattern=DATA, schema=schema_gen.outputs["schema"], splits={{"score": 1}})
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    # The data gate as served: the schema's SERVING environment does not expect the label.
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        environment="SERVING",
        extra_columns=ID_COLUMNS,
    )
    bulk_inferrer = BulkInferrer(
        examples=example_gen.outputs["examples"],
        training_pipeline=TRAINING_PIPELINE,
        which_model="served",  # or "blessed", or a push version number
        id_columns=ID_COLUMNS,
    )
    return Pipeline(
        name=TRAINING_PIPELINE + "-scoring",
        nodes=[schema_gen, example_gen, statistics_gen, example_validator, bulk_inferrer],
        pipeline_root=os.path.join(HERE, "runs-scoring"),
        metadata=os.path.join(HERE, "runs", "metadata.sqlite"),
    )
'''


def scoring(name: str, path: str, ids: list[str]) -> str:
    return SCORING.format(name=name, path=path, ids=repr(tuple(ids)))


def preprocessing(
    name: str,
    task: str,
    numeric: list[str],
    categorical: list[str],
    unused: dict[str, str],
    dates: dict[str, bool] | None = None,
) -> str:
    return PREPROCESSING.format(
        name=name,
        numeric=_names(numeric),
        categorical=_names(categorical),
        unused=_mapping(unused),
        dates=_mapping(dates or {}),
        label_code=LABEL_CODE[task],
    )


def model(name: str, task: str) -> str:
    classification = task == "classification"
    return MODEL.format(
        name=name,
        task=task,
        n_classes=" and `n_classes`" if classification else "",
        outputs='params["n_classes"]' if classification else "1",
    )


def pipeline(
    name: str,
    task: str,
    label: str,
    data: str,
    categorical: list[str],
    path: str,
    label_spread: float | None = None,
    gate: tuple[str, str] = ("accuracy", ""),
    drop_unlabeled: bool = False,
) -> str:
    """`data`: the input pattern as Python source; `path`: the file's path, for its docstring;
    `label_spread`: the standard deviation of a regression's label, which scales the hint."""
    headline = "accuracy" if task == "classification" else "root_mean_squared_error"
    floor_metric = ""
    if task == "classification":
        floor, hint, trivial = '"accuracy": 0.9', "", "always the most frequent class"
        if gate[0] != "accuracy":
            headline = gate[0]
            floor = f"{gate[0]!r}: 0.5"
            floor_metric = f"        # {gate[1]}.\n        floor_metric={gate[0]!r},\n"
    else:
        spread = label_spread if label_spread and label_spread > 0 else 1.0
        floor = f'"root_mean_squared_error": {0.5 * spread:.3g}'
        hint = f" (half the label's spread, {spread:.3g})" if label_spread else ""
        trivial = "always the mean label"
    slices = ["()", *(f"({c!r},)" for c in categorical[:2])]  # the whole split, then by category
    return PIPELINE.format(
        name=name,
        task=task,
        label=label,
        data=data,
        path=path,
        slices="((),)" if len(slices) == 1 else f"({', '.join(slices)})",
        change=repr(headline),
        floor=floor,
        hint=hint,
        trivial=trivial,
        floor_metric=floor_metric,
        class_weights=(
            "        # A rare class weighs as much as a common one in the loss (None: each example the same).\n"
            '        class_weights="balanced",\n'
            if task == "classification" and gate[0] != "accuracy"
            else ""
        ),
        drop=(
            "        # Rows without a label can neither train nor evaluate: left out, counted and named.\n"
            "        drop_rows_missing=[LABEL],\n"
            if drop_unlabeled
            else ""
        ),
    )


def _mapping(items: dict) -> str:
    if len(items) <= 1:
        return repr(dict(items))
    return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in items.items()) + "}"


def _names(names: list[str]) -> str:
    if len(names) <= 3:
        return repr(list(names))
    return "[\n" + "".join(f"    {n!r},\n" for n in names) + "]"
