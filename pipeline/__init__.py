"""The orchestration core: artifact types, component declaration, the DAG, metadata, the runner.

Nothing here imports TensorFlow or Apache Beam at module level, so the command line, lineage
queries and a fully cached run start quickly.
"""

from pipeline.artifacts import (
    Artifact,
    ExampleAnomalies,
    Examples,
    ExampleStatistics,
    Model,
    ModelBlessing,
    ModelEvaluation,
    PushedModel,
    Schema,
    TransformGraph,
)
from pipeline.component import Component, ExecutionContext, Input, InputArtifact, OutputArtifact
from pipeline.dag import Pipeline
from pipeline.errors import DefinitionError, ExecutionError, LockHeldError, UserInputError

__all__ = [
    "Artifact",
    "Component",
    "DefinitionError",
    "ExampleAnomalies",
    "ExampleStatistics",
    "Examples",
    "ExecutionContext",
    "ExecutionError",
    "Input",
    "InputArtifact",
    "LockHeldError",
    "Model",
    "OutputArtifact",
    "ModelBlessing",
    "ModelEvaluation",
    "Pipeline",
    "PushedModel",
    "Schema",
    "TransformGraph",
    "UserInputError",
]
