"""Training on several worker processes: one fresh Python process per worker, each told its place by
TF_CONFIG, the chief's progress relayed to the Trainer's log, and any worker that dies ending the
others with a message that says which and what happens next.

Where the workers run:
- no TF_CONFIG in the Trainer's environment: `workers` processes on this machine, on free
  127.0.0.1 ports;
- TF_CONFIG set (a cluster of `worker` tasks, as tf.estimator's RunConfig read it): this machine
  runs its own task, and every other machine runs
  `python -m components.trainer.training --follow <pipeline_root>/<Trainer id>` with its own
  TF_CONFIG; the job is announced in `<pipeline_root>/<Trainer id>/.runs/CURRENT_JOB` (the pipeline
  root must be on storage every machine mounts at the same path).

Each worker is a fresh process because tf.distribute's collectives must be set up before the
process runs any other TensorFlow op, and the Trainer's process has run Transform's.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from components.trainer.training import COLLECTIVE_TIMEOUT_SECONDS, TrainingJob, TrainingOutcome, outcome_path
from pipeline.errors import UserInputError
from pipeline.text import free_ports

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CURRENT_JOB = "CURRENT_JOB"


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def train_on_workers(job: TrainingJob, workers: int, log: Callable[[str], None]) -> TrainingOutcome:
    """Runs `job` with MultiWorkerMirroredStrategy on local worker processes, or on the cluster
    TF_CONFIG names; returns the chief's outcome. A worker that fails or is killed stops them all:
    UserInputError naming it, its exit, the last lines it wrote and the checkpoint the next run
    resumes from."""
    os.makedirs(job.run_dir, exist_ok=True)
    job_file = os.path.join(job.run_dir, "job.pkl")
    with open(job_file, "wb") as f:
        pickle.dump(job, f)
    cluster = os.environ.get("TF_CONFIG")
    if cluster:
        config = json.loads(cluster)
        workers = len(config["cluster"]["worker"])
        tasks = {config["task"]["index"]: cluster}
        where = f"this machine runs worker {config['task']['index']}; the others follow {os.path.dirname(os.path.dirname(job.run_dir))}"
    else:
        ports = free_ports(workers)
        tasks = {index: tf_config(ports, index) for index in range(workers)}
        where = f"127.0.0.1 ports {', '.join(map(str, ports))}"
    for index in range(workers):
        if os.path.exists(outcome_path(job_file, index)):
            os.remove(outcome_path(job_file, index))
    processes = {index: _start(job, job_file, index, config) for index, config in tasks.items()}
    log(
        f"training on {workers} worker processes (pids {', '.join(str(p.pid) for p in processes.values())}; "
        f"{where}); worker 0 is the chief"
    )
    if cluster:
        _announce(job, job_file)
    relay = None
    if 0 in processes:
        relay = threading.Thread(target=_relay, args=(processes[0].stdout, log), daemon=True)
        relay.start()
    try:
        failed = _wait(processes)
    finally:
        for process in processes.values():
            if process.poll() is None:
                _kill(process)
        if relay is not None:
            relay.join(timeout=5)
    if failed is not None:
        index, code = failed
        raise UserInputError(_failure(job, index, code, processes[index].pid))
    return _outcome(job, job_file, workers, log)


def _start(job: TrainingJob, job_file: str, index: int, config: str) -> subprocess.Popen:
    path = os.pathsep.join([REPO_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "TF_CONFIG": config, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(os.path.join(job.run_dir, f"worker-{index}.log"), "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "components.trainer.training", job_file],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE if index == 0 else subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )


def _announce(job: TrainingJob, job_file: str) -> None:
    """Names the job for the workers of other machines (see `follow`), atomically."""
    pointer = os.path.join(os.path.dirname(job.run_dir), CURRENT_JOB)
    with open(pointer + ".tmp", "w") as f:
        f.write(job_file)
    os.replace(pointer + ".tmp", pointer)


def follow(trainer_dir: str, index: int, poll_seconds: float = 1.0, timeout: float | None = None) -> str:
    """For a worker of another machine: waits until `<trainer_dir>/.runs/CURRENT_JOB` names a job
    this worker has not finished, and returns its job file."""
    pointer = os.path.join(trainer_dir, ".runs", CURRENT_JOB)
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        try:
            with open(pointer) as f:
                job_file = f.read().strip()
        except OSError:
            job_file = ""
        if job_file and os.path.exists(job_file) and not os.path.exists(outcome_path(job_file, index)):
            return job_file
        time.sleep(poll_seconds)
    raise TimeoutError(f"no training job was announced in {pointer} within {timeout} s")


def _outcome(job: TrainingJob, job_file: str, workers: int, log: Callable[[str], None]) -> TrainingOutcome:
    """The chief's outcome with every worker's last step; the workers of other machines write
    theirs to the shared run directory, which may take a moment to show."""
    deadline = time.monotonic() + COLLECTIVE_TIMEOUT_SECONDS
    paths = [outcome_path(job_file, index) for index in range(workers)]
    while not all(os.path.exists(p) for p in paths) and time.monotonic() < deadline:
        time.sleep(0.5)
    missing = [i for i, p in enumerate(paths) if not os.path.exists(p)]
    if missing:
        raise UserInputError(
            f"training worker(s) {missing} wrote no outcome to {job.run_dir}; see their logs"
        )
    outcomes = []
    for path in paths:
        with open(path) as f:
            outcomes.append(TrainingOutcome(**json.load(f)))
    chief = outcomes[0]
    chief.worker_steps = [o.last_step for o in outcomes]
    if len(set(chief.worker_steps)) != 1:
        raise UserInputError(
            f"the training workers stopped at different steps {chief.worker_steps}; see {job.run_dir}"
        )
    log(f"every worker stopped at step {chief.last_step}")
    return chief


def _relay(stream, log: Callable[[str], None]) -> None:
    for line in stream:
        log(f"worker 0: {line.rstrip()}")


def _wait(processes: dict[int, subprocess.Popen]) -> tuple[int, int] | None:
    """Waits until every worker exits 0, or one fails: then (its index, its exit code)."""
    while True:
        codes = {index: p.poll() for index, p in processes.items()}
        for index, code in codes.items():
            if code not in (None, 0):
                return index, code
        if all(code == 0 for code in codes.values()):
            return None
        time.sleep(0.2)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _failure(job: TrainingJob, index: int, code: int, pid: int) -> str:
    how = (
        f"was killed by signal {-code} ({signal.Signals(-code).name})"
        if code < 0
        else f"exited with code {code}"
    )
    try:
        with open(os.path.join(job.run_dir, f"worker-{index}.log")) as f:
            tail = [
                line.strip()
                for line in f
                if line.strip() and not line.startswith(("I0000", "W0000", "E0000"))
            ]
    except OSError:
        tail = []
    said = f"; it said: {' | '.join(tail[-3:])[-600:]}" if tail and code > 0 else ""
    from estimator.estimator import latest_checkpoint_step

    step = latest_checkpoint_step(job.run_dir)
    resume = (
        f"the next run resumes from the checkpoint at step {step}"
        if step
        else "no checkpoint was written yet"
    )
    return f"training worker {index} (pid {pid}) {how}{said}; the other workers were stopped; {resume}"
