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
    from components.statistics import load_statistics

    proto = infer_schema(load_statistics(statistics, params.split), max_domain_size=params.max_domain_size)
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


def infer_schema(dataset, max_domain_size: int = 20):
    """A Schema from one split's DatasetFeatureStatistics: each feature's type; presence (required
    when nothing is missing, otherwise optional with the observed fraction, rounded down); value
    counts; a string domain when there are at most `max_domain_size` distinct values; the observed
    range of numeric features."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_metadata.proto.v0 import statistics_pb2 as stats_pb

    from components.statistics import feature_stats

    types = {
        stats_pb.FeatureNameStatistics.INT: schema_pb2.INT,
        stats_pb.FeatureNameStatistics.FLOAT: schema_pb2.FLOAT,
    }
    schema = schema_pb2.Schema()
    for name, stats in sorted(feature_stats(dataset).items()):
        feature = schema.feature.add(name=name, type=types.get(stats.type, schema_pb2.BYTES))
        strings = stats.HasField("string_stats")
        common = stats.string_stats.common_stats if strings else stats.num_stats.common_stats
        fraction = common.num_non_missing / dataset.num_examples if dataset.num_examples else 0.0
        feature.presence.min_count = 1
        if common.num_missing == 0 and common.min_num_values == common.max_num_values == 1:
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add(size=1)
        else:
            feature.presence.min_fraction = int(fraction * 100) / 100
            feature.value_count.min = common.min_num_values
            feature.value_count.max = common.max_num_values
        if strings and 0 < stats.string_stats.unique <= max_domain_size:
            values = sorted(b.label for b in stats.string_stats.rank_histogram.buckets)
            schema.string_domain.add(name=name, value=values)
            feature.domain = name
        elif not strings and common.num_non_missing:
            if feature.type == schema_pb2.INT:
                feature.int_domain.min = int(stats.num_stats.min)
                feature.int_domain.max = int(stats.num_stats.max)
            else:
                feature.float_domain.min, feature.float_domain.max = stats.num_stats.min, stats.num_stats.max
    return schema
