"""A Schema artifact's file: `schema.pbtxt`, tensorflow_metadata's Schema in text format, read and
written here for every component that needs it, and what a schema feature allows."""

from __future__ import annotations

import os

from pipeline.artifacts import Schema
from pipeline.errors import UserInputError

SCHEMA_FILE = "schema.pbtxt"


def load_schema(schema: Schema):
    """The Schema artifact's proto (tensorflow_metadata schema_pb2.Schema)."""
    return read_schema_file(os.path.join(schema.uri, SCHEMA_FILE))


def allowed_non_finite(feature) -> frozenset:
    """The non-finite values ("nan", "inf") a schema Feature allows. Stricter than TFDV, whose
    unset `disallow_nan`/`disallow_inf` mean allowed: here a value is allowed only where the
    schema says so explicitly, `float_domain { disallow_nan: false disallow_inf: false }`."""
    domain = feature.float_domain
    if not feature.HasField("float_domain"):
        return frozenset()
    return frozenset(
        kind
        for kind, flag in (("nan", "disallow_nan"), ("inf", "disallow_inf"))
        if domain.HasField(flag) and not getattr(domain, flag)
    )


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


TRAINING, SERVING = "TRAINING", "SERVING"


def in_environment(feature, schema, environment: str | None) -> bool:
    """Whether `feature` is expected in `environment`, as TFDV decides it: a feature that names
    environments (`in_environment`) is in those; any other is in the schema's
    `default_environment`s (every environment when the schema names none) except those its
    `not_in_environment` names. No environment: every feature is."""
    if environment is None:
        return True
    if feature.in_environment:
        return environment in feature.in_environment
    defaults = list(schema.default_environment)
    return (not defaults or environment in defaults) and environment not in feature.not_in_environment


def environments(schema) -> set[str]:
    """Every environment the schema names."""
    named = set(schema.default_environment)
    for feature in schema.feature:
        named |= set(feature.in_environment) | set(feature.not_in_environment)
    return named
