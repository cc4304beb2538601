"""The pipeline on real schedulers: the DAG that `runner.py export airflow` writes, run by Airflow 3
(`airflow dags test`, from .venv-airflow), and the package `runner.py export kfp` compiles, run by
KFP's own local runner. Each step is its own task (`runner.py step`); the record they leave in the
store must be the one a local `runner.py run` leaves: the same executions, events and lineage, the
same caching, and recovery of a task killed mid-step when the scheduler retries it.

One module, one local penguin run and one Airflow penguin run shared by its tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.metadata import MetadataStore, custom, state_name
from tests import airflow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = [sys.executable, os.path.join(REPO, "runner.py")]

pytestmark = pytest.mark.skipif(
    not airflow.installed(), reason="Airflow's environment is missing: run `make venv-airflow`"
)


def runner(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return subprocess.run(
        [*RUNNER, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=900, **kwargs
    )


def store_of(root) -> MetadataStore:
    return MetadataStore(os.path.join(root, "metadata.sqlite"))


def runs_of(root, pipeline: str) -> list[pb.Context]:
    """The pipeline's runs in the store, oldest first."""
    return sorted(store_of(root).pipeline_runs(pipeline), key=lambda c: c.id)


def run_shape(root, run: pb.Context) -> list[tuple]:
    """Per node of the run: its state and how many INPUT and OUTPUT events it has, by key."""
    store = store_of(root)
    shape = []
    for execution in store.executions_in(run):
        events = store.mlmd.get_events_by_execution_ids([execution.id])
        keys = sorted(
            (pb.Event.Type.Name(e.type), e.path.steps[0].key if e.path.steps else "") for e in events
        )
        shape.append((custom(execution, "node_id"), state_name(execution), tuple(keys)))
    return sorted(shape)


# What differs between two roots by nature: ids, places, times, processes, and numbers that
# training does not reproduce exactly from one process to another.
_VOLATILE = {"id", "host", "seconds", "pid", "run_id", "cache_key", "fingerprint", "pipeline_root"}
_TRAINING = {"best_step", "last_step", "eval_metrics"}  # early stopping's path varies between processes


def normalized(tree, root: str):
    if isinstance(tree, dict):
        return {
            key: "<training>" if key in _TRAINING else normalized(value, root)
            for key, value in tree.items()
            if key not in _VOLATILE and not key.endswith("_id")
        }
    if isinstance(tree, list):
        return [normalized(value, root) for value in tree]
    if isinstance(tree, float):
        return "<number>"
    if isinstance(tree, str):
        text = tree.replace(root, "<root>")
        text = re.sub(r"(<root>/[^\s\"]*?)/\d+\b", r"\1/<n>", text)  # execution ids in URIs
        return re.sub(r"-?\d+\.\d+(e-?\d+)?", "<number>", text)
    return tree


def pushed_lineage(root) -> dict:
    done = runner("lineage", "--pushed", "latest", "--json", "--pipeline-root", str(root))
    assert done.returncode == 0, done.stderr
    return normalized(json.loads(done.stdout), str(root))


def wait(process: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-5000:]
    return out


@pytest.fixture(scope="module")
def local_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    done = runner("run", "--pipeline-root", str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return airflow.Airflow(str(tmp_path_factory.mktemp("airflow")))


@pytest.fixture(scope="module")
def airflow_root(home, tmp_path_factory):
    """The penguin DAG exported and run once by Airflow."""
    root = tmp_path_factory.mktemp("on-airflow")
    dag = os.path.join(home.dags, "penguin_dag.py")
    done = runner("export", "airflow", "--out", dag, "--pipeline-root", str(root), "--retry-delay", "1")
    assert done.returncode == 0 and "with 8 tasks" in done.stdout, done.stderr
    wait(home.dags_test("penguin"))
    return root


def test_the_exported_dag_runs_every_step_as_its_own_task(home, airflow_root):
    [dag_run] = home.runs("penguin")
    assert dag_run["state"] == "success"
    states = home.task_states("penguin", dag_run["run_id"])
    assert sorted(states) == sorted(
        [
            "ExampleGen",
            "ImportSchemaGen",
            "StatisticsGen",
            "ExampleValidator",
            "Transform",
            "Trainer",
            "Evaluator",
            "Pusher",
        ]
    )
    assert {row["state"] for row in states.values()} == {"success"}
    # The scheduler's run id is the run's id in the store, and the run knows who scheduled it.
    [run] = runs_of(airflow_root, "penguin")
    assert run.name == dag_run["run_id"]
    assert custom(run, "status") == "COMPLETE"
    assert custom(run, "orchestrator") == "airflow"
    assert os.path.isdir(os.path.join(airflow_root, "serving", "penguin", "1"))


def test_airflow_leaves_the_record_a_local_run_leaves(local_root, airflow_root):
    [local] = runs_of(local_root, "penguin")
    [scheduled] = runs_of(airflow_root, "penguin")
    assert run_shape(airflow_root, scheduled) == run_shape(local_root, local)
    assert pushed_lineage(airflow_root) == pushed_lineage(local_root)


def test_a_second_dag_run_with_nothing_new_reuses_every_step(home, airflow_root):
    wait(home.dags_test("penguin"))
    assert [row["state"] for row in home.runs("penguin")] == ["success", "success"]
    first, second = runs_of(airflow_root, "penguin")
    assert custom(second, "status") == "COMPLETE" and custom(second, "orchestrator") == "airflow"
    shape = run_shape(airflow_root, second)
    # Eight steps; ExampleGen, StatisticsGen and the validator once per span of the window of three.
    assert len({node for node, _, _ in shape}) == 8 and len(shape) == 14
    assert {state for _, state, _ in shape} == {"CACHED"}
    assert [node for node, _, _ in shape] == [node for node, _, _ in run_shape(airflow_root, first)]


def test_the_kfp_package_runs_on_kfps_local_runner_to_the_model_a_local_run_pushes(local_root, tmp_path):
    """Compiled with --image, read back by the kfp SDK, run by kfp.local's SubprocessRunner on a
    fresh root: the record and the pushed model's lineage a local run leaves."""
    root, package = tmp_path / "on-kfp", tmp_path / "penguin.yaml"
    done = runner(
        "export", "kfp", "--out", str(package), "--image", "penguin:test", "--pipeline-root", str(root),
        "--project-dir", REPO, "--python", sys.executable,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = f"""
from kfp import components, local
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root={str(tmp_path / "kfp-root")!r})
job = components.load_component_from_file({str(package)!r})
job()
print("KFP-DONE")
"""
    kfp = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=str(tmp_path), timeout=600
    )
    assert kfp.returncode == 0 and "KFP-DONE" in kfp.stdout, (kfp.stdout + kfp.stderr)[-5000:]
    [run] = runs_of(root, "penguin")
    assert custom(run, "status") == "COMPLETE" and custom(run, "orchestrator") == "kfp"
    [local] = runs_of(local_root, "penguin")
    assert run_shape(root, run) == run_shape(local_root, local)
    assert pushed_lineage(root) == pushed_lineage(local_root)
    assert os.path.isdir(os.path.join(root, "serving", "penguin", "1"))


TOY_PIPELINE = """
import os

from tests.toy_components import toy_pipeline

# Write sleeps while the flag exists (the first try, killed by the test), and holds its model back.
FLAG = os.path.join({root!r}, "sleep-once")
pipeline = toy_pipeline(sleep=60.0 if os.path.exists(FLAG) else 0.0, hold_back="not blessed: a test")
"""


def test_a_task_killed_mid_step_is_recovered_by_airflows_retry(home, tmp_path):
    root = tmp_path / "toy-root"
    root.mkdir()
    (root / "sleep-once").write_text("")
    pipeline_file = tmp_path / "toy_pipeline.py"
    pipeline_file.write_text(TOY_PIPELINE.replace("{root!r}", repr(str(root))))
    done = runner(
        "export", "airflow", "--pipeline", str(pipeline_file), "--pipeline-root", str(root),
        "--out", os.path.join(home.dags, "toy_dag.py"), "--retry-delay", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dag_test = home.dags_test("toy")
    try:
        deadline = time.time() + 120
        while not (root / "write-started").exists():
            assert dag_test.poll() is None and time.time() < deadline, "Write never started"
            time.sleep(0.2)
        [running] = store_of(root).running_executions("toy")
        pid = custom(running, "pid")
        (root / "sleep-once").unlink()
        os.kill(pid, signal.SIGKILL)
        out = wait(dag_test)
    finally:
        if dag_test.poll() is None:
            dag_test.kill()
    [dag_run] = home.runs("toy")
    assert dag_run["state"] == "success", out[-3000:]
    states = home.task_states("toy", dag_run["run_id"])
    assert states["Write"]["state"] == "skipped"  # held back: exit 3, the retry that recovered it
    assert states["Read"]["state"] == "success"
    [run] = runs_of(root, "toy")
    assert custom(run, "status") == "HELD_BACK"
    store = store_of(root)
    assert store.running_executions("toy") == []
    writes = [e for e in store.executions_in(run) if custom(e, "node_id") == "Write"]
    assert [state_name(e) for e in sorted(writes, key=lambda e: e.id)] == ["FAILED", "COMPLETE"]
    assert "interrupted" in custom(sorted(writes, key=lambda e: e.id)[0], "error", "")
    assert not any(name.startswith(".staging") for name in os.listdir(root / "Write" / "examples"))
