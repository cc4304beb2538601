"""Export a pipeline for a scheduler: an Airflow 3 DAG file or a Kubeflow Pipelines v2 package.

Either way each node becomes one task running `runner.py step NODE --run-id <the scheduler's run
id>` (pipeline.step), in the pipeline's dependency order; the store and the root are parameters
of the DAG or the pipeline, never fixed to the machine that exported it. The step resolves its
inputs itself, the baseline model included, so no resolver task is emitted.

Exit codes of a step and what each scheduler makes of them: 0 done -> success; 3 held back (the
model was not blessed, or its push refused) -> Airflow: skipped, and the steps after it still run
(trigger rule none_failed); KFP: success; 75 busy (another run holds the root, or the step runs
elsewhere) -> failed, then retried; 1 failed or the data gate stopped the run -> failed; the steps
after it do not run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.dag import Pipeline

EXIT_HELD_BACK = 3


@dataclass
class ExportSettings:
    pipeline_file: str
    pipeline_root: str = ""  # default at run time: the pipeline's own root
    metadata: str = ""  # default at run time: <root>/metadata.sqlite
    project_dir: str = ""  # where runner.py is on the workers or in the image
    python: str = "python"  # the project's interpreter there
    image: str | None = None
    schedule: str | None = None
    operator: str = "bash"  # Airflow: bash or kubernetes
    metadata_conn: str | None = None  # Airflow: a connection id holding the store URL
    retries: int = 2
    retry_delay_seconds: float = 60.0


def edges(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(upstream, downstream) node ids, in the pipeline's order."""
    found = []
    for node in pipeline.validate():
        for up in dict.fromkeys(u.id for u in node.upstream):
            found.append((up, node.id))
    return found


def export_pipeline(pipeline: Pipeline, target: str, settings: ExportSettings, out: str | None = None) -> str:
    """Writes the DAG file (airflow) or the compiled pipeline package (kfp); returns its path."""
    if out and os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    if target == "airflow":
        from pipeline.export.airflow import dag_source

        path = out or f"{pipeline.name}_dag.py"
        text = dag_source(pipeline, settings)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        return path
    if target == "kfp":
        from pipeline.export.kfp import compile_package

        path = out or f"{pipeline.name}.yaml"
        compile_package(pipeline, settings, path)
        return path
    raise ValueError(f"unknown export target {target!r}: airflow or kfp")
