"""Schema: imported from a curated file under schemas/ (ImportSchemaGen) or inferred from statistics (SchemaGen)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pipeline import Component, ExecutionContext, Input, UserInputError
from pipeline.artifacts import ExampleStatistics, Schema

SCHEMA_FILE = "schema.pbtxt"


def load_schema(schema: Schema):
    """The Schema artifact's proto (tensorflow_metadata schema_pb2.Schema)."""
    return read_schema_file(os.path.join(schema.uri, SCHEMA_FILE))


def read_schema_file(path: str):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        with open(path) as f:
            return text_format.Parse(f.read(), schema_pb2.Schema())
    except OSError as error:
        raise UserInputError(f"cannot read schema file {path}: {error.strerror}") from None
    except text_format.ParseError as error:
        raise UserInputError(f"{path}: not a valid Schema in text format: {error}") from None


def write_schema(schema: Schema, proto) -> None:
    from google.protobuf import text_format

    with open(os.path.join(schema.uri, SCHEMA_FILE), "w") as f:
        f.write(text_format.MessageToString(proto))


@dataclass(frozen=True)
class ImportSchemaParams:
    """schema_file: a Schema in text format; its content is part of the cache key."""

    schema_file: str = field(metadata={"module_file": True})


def run_import_schema(ctx: ExecutionContext, params: ImportSchemaParams, schema: Schema) -> None:
    proto = read_schema_file(params.schema_file)
    if not proto.feature:
        raise UserInputError(f"{params.schema_file}: the schema declares no feature")
    domains = {d.name for d in proto.string_domain}
    for feature in proto.feature:
        if feature.HasField("domain") and feature.domain not in domains:
            raise UserInputError(
                f"{params.schema_file}: feature {feature.name!r} uses string_domain {feature.domain!r}, "
                "which the schema does not define"
            )
    write_schema(schema, proto)
    schema.custom_properties["source"] = "curated"
    schema.custom_properties["schema_file"] = os.path.abspath(params.schema_file)
    ctx.log(f"imported {len(proto.feature)} features from {params.schema_file}")


ImportSchemaGen = Component(
    name="ImportSchemaGen",
    run=run_import_schema,
    outputs={"schema": Schema},
    parameters=ImportSchemaParams,
    version="1",
)


@dataclass(frozen=True)
class SchemaGenParams:
    """max_domain_size: a string feature with at most this many distinct values gets a domain."""

    max_domain_size: int = 20
    split: str = "train"


def run_schema_gen(
    ctx: ExecutionContext, params: SchemaGenParams, statistics: ExampleStatistics, schema: Schema
) -> None:
    from components.statistics import infer_schema, load_statistics

    stats = load_statistics(statistics, params.split)
    proto = infer_schema(stats, max_domain_size=params.max_domain_size)
    write_schema(schema, proto)
    schema.custom_properties["source"] = "inferred"
    ctx.log(f"inferred {len(proto.feature)} features from the {params.split} split's statistics")


SchemaGen = Component(
    name="SchemaGen",
    run=run_schema_gen,
    inputs={"statistics": Input(ExampleStatistics)},
    outputs={"schema": Schema},
    parameters=SchemaGenParams,
    version="1",
)
