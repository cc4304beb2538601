"""The Airflow 3 DAG file of a pipeline: one task per node running `runner.py step`.

The file imports only Airflow (`airflow.sdk`, the standard provider's BashOperator, or the
Kubernetes provider's KubernetesPodOperator), never this project: Airflow's scheduler parses it in
its own environment, and each task calls the project's Python. What the tasks need to find comes
from the DAG's params (project_dir, python, pipeline_file, pipeline_root, metadata), editable per
run in Airflow's trigger form, or the store URL from an Airflow connection (`--metadata-conn`).
"""

from __future__ import annotations

import json
import string
import time

from pipeline.dag import Pipeline
from pipeline.export import EXIT_HELD_BACK, ExportSettings, edges

_TEMPLATE = string.Template('''"""Airflow DAG of pipeline $name_repr: one task per step, each `runner.py step STEP --run-id <run id>`.

Written by `runner.py export airflow` on $written. Exit codes of a step: 0 success; $held_back held
back (model not blessed, push refused): the task is skipped and the steps after it still run;
75 busy (another run holds the root): failed, retried; 1 failed or the data gate stopped the run.
Each step is idempotent, so a retry of a task that was killed recovers it and runs it again.
"""

import datetime

from airflow.sdk import DAG, Param
$operator_import

PIPELINE = $name_repr
STEPS = $steps
EDGES = $edges

# Where the project is on the workers and what it runs on. Change them here or per run in the
# trigger form; an empty pipeline_root / metadata means the pipeline's own root and its sqlite file.
PARAMS = {
    "project_dir": Param($project_dir, type="string"),
    "python": Param($python, type="string"),
    "pipeline_file": Param($pipeline_file, type="string"),
    "pipeline_root": Param($pipeline_root, type="string"),
    "metadata": Param($metadata, type="string"),
    # For dated spans ({YYYY}-{MM}...): each run ingests the span of its logical date (a backfill
    # of past dates ingests theirs); a run without one (triggered by hand) takes the latest span.
    "span_of_logical_date": Param($span_of_logical_date, type="boolean"),
}

with DAG(
    dag_id=PIPELINE,
    schedule=$schedule,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,  # one active run per pipeline root
    params=PARAMS,
    default_args={
        "retries": $retries,
        "retry_delay": datetime.timedelta(seconds=$retry_delay),
    },
    tags=["ml-pipeline"],
) as dag:
    tasks = {}
    for step in STEPS:
        tasks[step] = $operator
    for upstream, downstream in EDGES:
        tasks[upstream] >> tasks[downstream]
''')

_COMMAND = (
    'cd "{{ params.project_dir }}" && '
    '{ test -f runner.py || { echo "{{ params.project_dir }} holds no runner.py: install the project '
    'there, or set the DAG param project_dir" >&2; exit 1; }; } && '
    'exec "{{ params.python }}" runner.py step %s --run-id "{{ run_id }}" --orchestrator airflow'
    " --logical-date \"{{ dag_run.logical_date or '' }}\""
    "{{ ' --span-of-logical-date' if params.span_of_logical_date else '' }}"
)

_BASH = """BashOperator(
            task_id=step,
            bash_command=COMMAND % step,
            env=ENV,
            append_env=True,
            skip_on_exit_code=$held_back,
            trigger_rule="none_failed",  # after a held-back (skipped) step, the next still runs
        )"""

_KUBERNETES = """KubernetesPodOperator(
            task_id=step,
            name=f"{PIPELINE}-{step}".lower(),
            image=$image,
            cmds=["bash", "-c"],
            arguments=[COMMAND % step],
            env_vars=ENV,
            skip_on_exit_code=$held_back,
            trigger_rule="none_failed",
            get_logs=True,
        )"""


def _dated(pipeline: Pipeline) -> bool:
    """Whether the pipeline's spans are dates (an ExampleGen pattern with {YYYY})."""
    return any("{YYYY}" in str(getattr(n.params, "input_pattern", "")) for n in pipeline.nodes)


def dag_source(pipeline: Pipeline, settings: ExportSettings) -> str:
    if settings.operator == "kubernetes" and not settings.image:
        raise ValueError("--operator kubernetes needs --image IMAGE, the image holding the project")
    metadata_env = (
        f"{{{{ conn.get({settings.metadata_conn!r}).get_uri() }}}}"
        if settings.metadata_conn
        else "{{ params.metadata }}"
    )
    env = {
        "PIPELINE_FILE": "{{ params.pipeline_file }}",
        "PIPELINE_ROOT": "{{ params.pipeline_root }}",
        "PIPELINE_METADATA": metadata_env,
    }
    if settings.operator == "kubernetes":
        operator_import = "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator"
        operator = string.Template(_KUBERNETES).substitute(
            image=repr(settings.image), held_back=EXIT_HELD_BACK
        )
    else:
        operator_import = "from airflow.providers.standard.operators.bash import BashOperator"
        operator = string.Template(_BASH).substitute(held_back=EXIT_HELD_BACK)
    operator_import += f"\n\nCOMMAND = {_COMMAND!r}\nENV = {json.dumps(env, indent=4)}"
    order = [node.id for node in pipeline.validate()]
    return _TEMPLATE.substitute(
        name_repr=repr(pipeline.name),
        written=time.strftime("%Y-%m-%d %H:%M"),
        held_back=EXIT_HELD_BACK,
        operator_import=operator_import,
        steps=repr(order),
        edges=repr(edges(pipeline)),
        project_dir=repr(settings.project_dir),
        python=repr(settings.python),
        pipeline_file=repr(settings.pipeline_file),
        pipeline_root=repr(settings.pipeline_root),
        metadata=repr(settings.metadata),
        span_of_logical_date=repr(_dated(pipeline)),
        schedule=repr(settings.schedule),
        retries=settings.retries,
        retry_delay=settings.retry_delay_seconds,
        operator=operator,
    )
