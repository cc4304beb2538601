"""`runner.py export`'s bad input, and a task whose worker or image lacks the project: each says what
is wrong and where, with no traceback. The exported files themselves run in tests/test_schedulers.py."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.export.airflow import _COMMAND
from pipeline.export.kfp import _pipeline_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BROKEN = """from pipeline import Pipeline
from tests.toy_components import Read, Write

def create_pipeline():
    write = Write(text="x")
    return Pipeline(name="broken", nodes=[Read(examples=write.outputs["examples"])])  # Write left out
"""


def cli(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PYTHONPATH"] = REPO
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "runner.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
    )


def test_a_pipeline_with_a_definition_error_is_refused_at_export_as_run_refuses_it(tmp_path):
    pipeline_file = tmp_path / "pipeline.py"
    pipeline_file.write_text(BROKEN)
    common = ("--pipeline", str(pipeline_file), "--pipeline-root", str(tmp_path / "root"))
    run = cli(*common, "run")
    for target in ("airflow", "kfp"):
        out = tmp_path / f"broken.{target}"
        export = cli(*common, "export", target, "--image", "img:1", "--out", str(out))
        assert export.returncode == run.returncode == 2, export.stderr
        assert export.stderr.strip() == run.stderr.strip() and "Read" in export.stderr
        assert "Traceback" not in export.stderr
        assert not out.exists()


def test_export_kfp_without_an_image_says_so(tmp_path):
    done = cli("export", "kfp", "--out", str(tmp_path / "p.yaml"))
    assert done.returncode == 2
    assert "export kfp needs --image IMAGE" in done.stderr and "Traceback" not in done.stderr
    kubernetes = cli("export", "airflow", "--operator", "kubernetes", "--out", str(tmp_path / "d.py"))
    assert kubernetes.returncode == 2 and "--operator kubernetes needs --image IMAGE" in kubernetes.stderr


def test_a_kfp_task_in_an_image_without_the_project_says_what_is_missing(tmp_path):
    try:
        _pipeline_step("Trainer", "r1", str(tmp_path), "python", "p.py", "", "")
    except RuntimeError as error:
        assert f"this image lacks the project: no {tmp_path}/runner.py" in str(error)
        assert "requirements.lock" in str(error)
    else:
        raise AssertionError("a task without the project ran")


def test_an_airflow_task_on_a_worker_without_the_project_says_what_is_missing(tmp_path):
    command = (
        _COMMAND.replace("{{ params.project_dir }}", str(tmp_path))
        .replace("{{ params.python }}", sys.executable)
        .replace("{{ run_id }}", "r1")
        .replace("{{ dag_run.logical_date or '' }}", "")
        % "Trainer"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.returncode == 1
    assert (
        f"{tmp_path} holds no runner.py: install the project there, or set the DAG param project_dir"
        in done.stderr
    )
