"""Artifact types, named and laid out as TFX's standard artifacts.

An artifact is a directory (its `uri`) plus typed properties recorded in ML Metadata. Every
artifact lives at `<pipeline_root>/<component_id>/<output_key>/<execution_id>/`; while its
execution runs it is written under a staging name beside that path and renamed into place only
when complete, so a directory at a final path is always whole.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

INT = "INT"
DOUBLE = "DOUBLE"
STRING = "STRING"

_PY_TYPES: dict[str, type | tuple[type, ...]] = {INT: int, DOUBLE: (int, float), STRING: str}
SERVING_DIR = "Format-Serving"  # under a Model: the SavedModel export that serves
# A folder being written (an artifact's output, a pushed version) starts with this: readers,
# TF Serving and retention ignore it, and one rename publishes it.
STAGING_PREFIX = ".staging-"


class Artifact:
    """A typed directory with properties; subclasses set TYPE_NAME and PROPERTIES.

    `properties` are the type's declared properties (checked on assignment); `custom_properties`
    hold anything else worth recording (row counts, fingerprints, reasons).
    """

    TYPE_NAME: ClassVar[str] = "Artifact"
    PROPERTIES: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        uri: str = "",
        *,
        id: int | None = None,
        properties: dict[str, Any] | None = None,
        custom_properties: dict[str, Any] | None = None,
        state: str = "PENDING",
    ):
        self.uri = uri
        self.id = id
        self.state = state
        self.properties: dict[str, Any] = {}
        self.custom_properties: dict[str, Any] = dict(custom_properties or {})
        for name, value in (properties or {}).items():
            self.set(name, value)

    def set(self, name: str, value: Any) -> None:
        """Sets a declared property, checking its name and type."""
        kind = self.PROPERTIES.get(name)
        if kind is None:
            raise KeyError(
                f"{self.TYPE_NAME} has no property {name!r}; declared: {sorted(self.PROPERTIES)}. "
                "Use custom_properties for anything else."
            )
        if not isinstance(value, _PY_TYPES[kind]) or isinstance(value, bool):
            raise TypeError(f"{self.TYPE_NAME}.{name} must be {kind}, got {value!r}")
        self.properties[name] = value

    @property
    def stored_id(self) -> int:
        """The ML Metadata id of an artifact read from the store or published to it."""
        if self.id is None:
            raise ValueError(f"{self.TYPE_NAME} at {self.uri} is not in the metadata store yet")
        return self.id

    def get(self, name: str, default: Any = None) -> Any:
        """A declared property, else a custom property, else `default`."""
        if name in self.properties:
            return self.properties[name]
        return self.custom_properties.get(name, default)

    def __repr__(self) -> str:
        return f"{self.TYPE_NAME}(id={self.id}, uri={self.uri!r})"


class _SplitArtifact(Artifact):
    """An artifact holding one sub-directory per split, `Split-<name>/`."""

    @property
    def split_names(self) -> list[str]:
        return json.loads(self.properties.get("split_names", "[]"))

    @split_names.setter
    def split_names(self, names: list[str]) -> None:
        self.set("split_names", json.dumps(list(names)))

    def split_uri(self, split: str) -> str:
        return os.path.join(self.uri, f"Split-{split}")


class Examples(_SplitArtifact):
    """tf.Example records of one span, split.

    Layout: `Split-<split>/data_tfrecord-*.gz`, gzipped TFRecord files of serialized tf.Example
    (read them all with that glob). Properties: span, version, split_names (a JSON list, as in TFX).
    Custom properties: `row_count_<split>`, `input_fingerprint`, `input_pattern`.
    """

    TYPE_NAME = "Examples"
    PROPERTIES = {"span": INT, "version": INT, "split_names": STRING}


class ExampleStatistics(_SplitArtifact):
    """Per-split statistics: `Split-<split>/FeatureStats.pb`, a DatasetFeatureStatisticsList."""

    TYPE_NAME = "ExampleStatistics"
    PROPERTIES = {"span": INT, "split_names": STRING}


class Schema(Artifact):
    """A tensorflow-metadata Schema: `schema.pbtxt` in text format."""

    TYPE_NAME = "Schema"


class ExampleAnomalies(_SplitArtifact):
    """Per-split anomalies: `Split-<split>/SchemaDiff.pb`, an Anomalies proto."""

    TYPE_NAME = "ExampleAnomalies"
    PROPERTIES = {"span": INT, "split_names": STRING}


class TransformGraph(Artifact):
    """tensorflow-transform's output directory: `transform_fn/`, `transformed_metadata/`,
    `metadata/` (the raw schema)."""

    TYPE_NAME = "TransformGraph"


class TransformCache(Artifact):
    """tensorflow-transform's analyzer cache after a Transform: per span analyzed, the analyzers'
    accumulated state, so that a window moving by one span analyzes only the new span (TFX's
    `updated_analyzer_cache`, which its next Transform takes as `analyzer_cache`)."""

    TYPE_NAME = "TransformCache"


class Model(Artifact):
    """A trained model: `Format-Serving/` (the SavedModel export, inference only) and
    `run/` (checkpoints, early-stopping state, TensorBoard events)."""

    TYPE_NAME = "Model"


class ModelEvaluation(Artifact):
    """TensorFlow Model Analysis results (metrics, plots, validation) as TFMA writes them."""

    TYPE_NAME = "ModelEvaluation"


class ModelBlessing(Artifact):
    """The Evaluator's verdict: an empty `BLESSED` or `NOT_BLESSED` file.

    No declared properties, as TFX's; custom properties under TFX's keys: blessed (1 or 0),
    current_model (URI), current_model_id, baseline_model (URI) and baseline_model_id (0 when
    none). Stores written before kept them as properties: `get` reads either.
    """

    TYPE_NAME = "ModelBlessing"


class PushedModel(Artifact):
    """The Pusher's record: `push_record.json` (what was pushed, from which run) when it pushed.

    No declared properties, as TFX's; custom properties as TFX's Pusher writes them: pushed (1 or
    0), and when pushed, pushed_destination and pushed_version (a string, TFX's value type; read it
    with `pushed_version()`). The model itself lives at `<destination>/<model_name>/<version>/`,
    TF Serving's layout.
    """

    TYPE_NAME = "PushedModel"

    def pushed_version(self) -> int:
        """The version pushed, 0 when none (stores written before hold it as an int property)."""
        return pushed_version(self)


def pushed_version(artifact: Artifact) -> int:
    """A PushedModel's version (TFX records it as a string), 0 when none; for any Artifact read
    from the store, whatever its class."""
    return int(artifact.get("pushed_version") or 0)


class InferenceResult(Artifact):
    """Batch predictions (the BulkInferrer's): `prediction_logs-*.gz`, gzipped TFRecord files of
    TF Serving's PredictionLog, one per example, as TFX's BulkInferrer writes them; and
    `predictions.csv`, the same predictions for a person: the id columns, the prediction, the
    model version. Custom properties: `span`, `model_id`, `model_version`, `row_count`."""

    TYPE_NAME = "InferenceResult"


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    cls.TYPE_NAME: cls
    for cls in (
        Examples,
        ExampleStatistics,
        Schema,
        ExampleAnomalies,
        TransformGraph,
        TransformCache,
        Model,
        ModelEvaluation,
        ModelBlessing,
        PushedModel,
        InferenceResult,
    )
}
