"""The penguin pipeline's wiring: one pure function from settings to a Pipeline."""

from __future__ import annotations

import os

import schemas
from components.evaluator import Evaluator
from components.example_gen import ExampleGen, RollingWindow
from components.example_validator import ExampleValidator
from components.pusher import Pusher
from components.schema_gen import ImportSchemaGen
from components.statistics_gen import StatisticsGen
from components.trainer import Trainer
from components.transform import Transform
from pipeline import Pipeline

PIPELINE_NAME = "penguin"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINE_ROOT = os.path.join(REPO_ROOT, "runs", PIPELINE_NAME)
DATA_PATTERN = os.path.join(REPO_ROOT, "data", "penguins", "span-{SPAN}", "*.csv")
PREPROCESSING_MODULE = os.path.join(REPO_ROOT, "penguin", "module.py")
MODEL_MODULE = os.path.join(REPO_ROOT, "penguin", "model.py")
WINDOW = RollingWindow(3)  # the last three spans: every year the embedded data has


def create_pipeline(
    input_pattern: str = DATA_PATTERN,
    span: int | None = None,
    name: str = PIPELINE_NAME,
    beam_args: list[str] | None = None,
    schema_file: str = schemas.PENGUIN_SCHEMA,
    train_steps: int = 1000,
    window: RollingWindow | None = WINDOW,
) -> Pipeline:
    """The penguin pipeline over the CSV files of `input_pattern`, typed and validated by the
    curated schema in `schema_file`: trained on a rolling window of the last three spans (every
    year the embedded data has), ending at the latest span unless `span`."""
    schema_gen = ImportSchemaGen(schema_file=schema_file)
    example_gen = ExampleGen(
        input_pattern=input_pattern, span=span, window=window, schema=schema_gen.outputs["schema"]
    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        drift_exclude=("year",),
    )
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=PREPROCESSING_MODULE,
    )
    trainer = Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        module_file=MODEL_MODULE,
        label_key=schemas.LABEL_KEY,
        hyperparameters={"learning_rate": 0.01, "hidden_units": [16, 8]},
        train_steps=train_steps,
        eval_every_steps=50,
        # Early stopping needs a steady estimate, not the whole split: at most 40 x 256 examples.
        eval_steps=40,
        early_stopping_metric="loss",
        early_stopping_min_delta=0.001,
        early_stopping_patience=3,
    )
    # The Evaluator and the Pusher read the label from the Model the Trainer wrote. The candidate
    # and the baseline are evaluated on the newest span's eval split (spans="window": every span's).
    evaluator = Evaluator(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        slices=((), ("island",), ("sex",)),
        value_thresholds={"accuracy": 0.9},
        change_thresholds={"accuracy": 0.0},
    )
    pusher = Pusher(
        model=trainer.outputs["model"],
        blessing=evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
    )
    nodes = [
        schema_gen,
        example_gen,
        statistics_gen,
        example_validator,
        transform,
        trainer,
        evaluator,
        pusher,
    ]
    return Pipeline(name=name, nodes=nodes, beam_args=list(beam_args or []), pipeline_root=PIPELINE_ROOT)
