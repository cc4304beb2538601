"""The Kubeflow Pipelines v2 package of a pipeline, compiled by the kfp SDK.

One lightweight Python component, `pipeline_step`, runs `runner.py step STEP --run-id <the KFP
job's id>` in the image; the pipeline has one task of it per node, ordered by `.after()` on the
pipeline's edges, with the store, the root and where the project lives as pipeline parameters. No
resolver task: the step resolves its inputs, the baseline model included, from the store. The
component is a Python function rather than a container spec so that KFP's own local runner
(`kfp.local.SubprocessRunner`) runs the package as a cluster would.

Without `from __future__ import annotations`: the kfp SDK reads the component's annotations as
types.
"""

import os
from typing import Any

from kfp import compiler, dsl

from pipeline.dag import Pipeline
from pipeline.export import ExportSettings, edges


def _pipeline_step(
    step: str,
    run_id: str,
    project_dir: str,
    python: str,
    pipeline_file: str,
    pipeline_root: str,
    metadata: str,
) -> str:
    """Runs one step of the run; returns its outcome ("done" or "held back")."""
    import os
    import subprocess

    runner = os.path.join(project_dir, "runner.py")
    if not os.path.isfile(runner):
        raise RuntimeError(
            f"this image lacks the project: no {runner}. Build the image from the project "
            "(its requirements.lock and the project's files), or set the pipeline parameter "
            "project_dir to where they are"
        )
    env = dict(
        os.environ, PIPELINE_FILE=pipeline_file, PIPELINE_ROOT=pipeline_root, PIPELINE_METADATA=metadata
    )
    command = [python, runner, "step", step, "--run-id", run_id, "--orchestrator", "kfp"]
    code = subprocess.call(command, cwd=project_dir, env=env)
    if code == 3:  # held back: the model was not blessed or its push refused; the run goes on
        return "held back"
    if code != 0:
        meaning = {1: "failed, or the data gate stopped the run", 2: "a definition error", 75: "busy"}
        raise RuntimeError(f"step {step} exited with {code} ({meaning.get(code, 'see its log')})")
    return "done"


def compile_package(pipeline: Pipeline, settings: ExportSettings, path: str) -> None:
    if not settings.image:
        raise ValueError("export kfp needs --image IMAGE: the container image holding the project")
    step_component = dsl.component(base_image=settings.image, install_kfp_package=False)(_pipeline_step)
    order = [node.id for node in pipeline.validate()]
    upstream: dict[str, list[str]] = {step: [] for step in order}
    for up, down in edges(pipeline):
        upstream[down].append(up)

    @dsl.pipeline(name=pipeline.name.lower().replace("_", "-"), description=f"pipeline {pipeline.name}")
    def kfp_pipeline(
        project_dir: str = settings.project_dir,
        python: str = settings.python,
        pipeline_file: str = settings.pipeline_file,
        pipeline_root: str = settings.pipeline_root,
        metadata: str = settings.metadata,
    ):
        tasks: dict[str, Any] = {}
        for step in order:
            task = step_component(
                step=step,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                project_dir=project_dir,
                python=python,
                pipeline_file=pipeline_file,
                pipeline_root=pipeline_root,
                metadata=metadata,
            )
            task.set_display_name(step)
            task.set_caching_options(False)  # the step's own cache decides, from the store
            if settings.retries:
                task.set_retry(
                    num_retries=settings.retries, backoff_duration=f"{int(settings.retry_delay_seconds)}s"
                )
            for up in upstream[step]:
                task.after(tasks[up])
            tasks[step] = task

    compiler.Compiler().compile(kfp_pipeline, os.fspath(path))
