"""Airflow 3 for the tests: its own environment (.venv-airflow, from requirements-airflow.lock via
`make venv-airflow`), a home with a sqlite database, and its command line."""

from __future__ import annotations

import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIRFLOW = os.path.join(REPO, ".venv-airflow", "bin", "airflow")


def installed() -> bool:
    return os.access(AIRFLOW, os.X_OK)


class Airflow:
    """An Airflow home under `home`: DAG files go in `self.dags`."""

    def __init__(self, home: str):
        self.home = home
        self.dags = os.path.join(home, "dags")
        os.makedirs(self.dags, exist_ok=True)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": self.dags,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
        self.env.pop("PIPELINE_FILE", None)
        self.env.pop("PIPELINE_ROOT", None)
        self.env.pop("PIPELINE_METADATA", None)
        self.cli("db", "migrate")

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home
        )
        if done.returncode != 0 and args[:2] != ("dags", "test"):
            raise RuntimeError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def dags_test(self, dag_id: str) -> subprocess.Popen:
        """Starts `airflow dags test DAG_ID`: one DAG run, its tasks run one after another in this
        process, retries included."""
        return subprocess.Popen(
            [AIRFLOW, "dags", "test", dag_id],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def json(self, *args: str) -> list[dict]:
        """A listing command's `-o json` table; Airflow may log lines before it on stdout."""
        out = self.cli(*args, "-o", "json").stdout
        table = next((line for line in out.splitlines() if line.startswith("[")), "[]")
        return json.loads(table)

    def runs(self, dag_id: str) -> list[dict]:
        """The DAG's runs, newest first, with run_id and state."""
        runs = self.json("dags", "list-runs", dag_id)
        return sorted(runs, key=lambda r: r.get("start_date") or "", reverse=True)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, dict]:
        """task id -> its row (state, start and end dates) in run `run_id`."""
        return {row["task_id"]: row for row in self.json("tasks", "states-for-dag-run", dag_id, run_id)}
