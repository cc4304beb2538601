"""The orchestration core: artifact types, component declaration, the DAG, metadata, the runner.

Nothing here imports TensorFlow or Apache Beam at module level, so the command line, lineage
queries and a fully cached run start quickly.

From `runner.py run` to a component and back: `local_runner.run_pipeline` orders the nodes and,
for each, `launcher.launch` resolves its inputs, looks up the cache, registers the execution and
calls the component's run function (here or in `step_worker`'s process), then publishes its
outputs. Modules:
- `component`: declaring a component (`Component`, `InputArtifact`, `OutputArtifact`), the
  `ExecutionContext` a step gets, its logging; `dag`: a `Pipeline` and its validation;
- `artifacts`: the artifact types and layout names; `resolvers`: inputs found in the store;
- `local_runner`: a run in this process; `launcher`: a step's phases (prepare, execute, publish);
  `step_worker`: the process that executes TensorFlow steps; `step`: one step as a task a
  scheduler runs (`runner.py step`); `runs`: a run's record across those tasks;
- `metadata`: ML Metadata (sqlite or PostgreSQL); `lease`, `lock`: one run per root;
- `cache`: cache keys and fingerprints; `usercode`: loading a user's module file;
- `lineage`, `history`, `retention`: lineage queries, model history, gc;
- `report`, `pages`, `templates/`, `charts`: the HTML pages and their SVG charts;
- `beam`: Beam options for a step; `beam_patches`: speed patches to Beam; `memory`, `quiet`,
  `text`: process memory, library noise, small text helpers; `export/`: Airflow and KFP.
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
