"""Schema: imported from a curated file under schemas/ (ImportSchemaGen) or inferred from statistics (SchemaGen)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from components.schema_gen.inference import infer_schema, schema_text
from components.schema_gen.schema_io import SCHEMA_FILE, read_schema_file, write_schema
from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, UserInputError
from pipeline.artifacts import ExampleStatistics, Schema


@dataclass(frozen=True)
class ImportSchemaParams:
    """schema_file: a Schema in text format; its content is part of the cache key."""

    schema_file: str = field(metadata={"module_file": True})


def run_import_schema(
    ctx: ExecutionContext, params: ImportSchemaParams, schema: OutputArtifact[Schema]
) -> None:
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
    parameters=ImportSchemaParams,
    version="1",
)


@dataclass(frozen=True)
class SchemaGenParams:
    """max_domain_size: a string feature with at most this many distinct values, each seen at
    least twice on average, gets a closed domain. splits: the splits whose statistics are read
    (default all of them, so the schema accepts every split of the span it came from)."""

    max_domain_size: int = 20
    splits: tuple | None = None


def run_schema_gen(
    ctx: ExecutionContext,
    params: SchemaGenParams,
    statistics: InputArtifact[ExampleStatistics],
    schema: OutputArtifact[Schema],
) -> None:
    from components.statistics_gen.statistics import load_statistics

    splits = list(params.splits or statistics.split_names)
    inferred = infer_schema([load_statistics(statistics, s) for s in splits], params.max_domain_size)
    with open(os.path.join(schema.uri, SCHEMA_FILE), "w") as f:
        f.write(schema_text(inferred, f"the statistics of split(s) {', '.join(splits)}"))
    schema.custom_properties["source"] = "inferred"
    ctx.log(
        f"inferred {len(inferred.proto.feature)} features from the statistics of {', '.join(splits)}; "
        f"what was decided for each is commented in {SCHEMA_FILE}"
    )


SchemaGen = Component(
    name="SchemaGen",
    run=run_schema_gen,
    parameters=SchemaGenParams,
    version="3",
)
