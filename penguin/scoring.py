"""The penguin scoring pipeline: rows to score (with or without the species) through the data gate,
then the penguin model in service scores them: `runner.py score`.

    .venv/bin/python runner.py score                                  # the latest span of DATA, the served model
    .venv/bin/python runner.py score --data 'new/span-{SPAN}/*.csv' --model blessed

It shares the training pipeline's metadata store (where it finds the model, and records which
version scored which span) and keeps its own root, `runs/penguin-scoring`.
"""

from __future__ import annotations

import os

import schemas
from components.bulk_inferrer import BulkInferrer
from components.example_gen import ExampleGen
from components.example_validator import ExampleValidator
from components.schema_gen import ImportSchemaGen
from components.statistics_gen import StatisticsGen
from penguin.pipeline import PIPELINE_NAME, PIPELINE_ROOT, REPO_ROOT
from pipeline import Pipeline

NAME = f"{PIPELINE_NAME}-scoring"
ROOT = os.path.join(REPO_ROOT, "runs", NAME)
DATA = os.path.join(REPO_ROOT, "data", "penguins-to-score", "span-{SPAN}", "*.csv")
ID_COLUMNS = ("penguin_id",)


def create_pipeline(
    input_pattern: str = DATA, span: int | None = None, model: str | int = "served"
) -> Pipeline:
    """Scores the latest span of `input_pattern` (or `span`) with the penguin pipeline's served
    model (or `model`: "blessed", or a push version)."""
    schema_gen = ImportSchemaGen(schema_file=schemas.PENGUIN_SCHEMA)
    example_gen = ExampleGen(
        input_pattern=input_pattern, span=span, schema=schema_gen.outputs["schema"], splits={"score": 1}
    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    # The data gate as served: the schema's SERVING environment does not expect the label (a
    # species column present is ignored), and the ids are not the model's business.
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        environment="SERVING",
        extra_columns=ID_COLUMNS,
        drift_exclude=("year",),
    )
    bulk_inferrer = BulkInferrer(
        examples=example_gen.outputs["examples"],
        training_pipeline=PIPELINE_NAME,
        which_model=model,
        id_columns=ID_COLUMNS,
    )
    return Pipeline(
        name=NAME,
        nodes=[schema_gen, example_gen, statistics_gen, example_validator, bulk_inferrer],
        pipeline_root=ROOT,
        metadata=os.path.join(PIPELINE_ROOT, "metadata.sqlite"),
    )
