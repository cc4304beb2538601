"""Training on several worker processes of this machine: one fresh Python process per worker, each
told its place by TF_CONFIG (127.0.0.1 ports), the chief's progress relayed to the Trainer's log,
and any worker that dies ending the others with a message that says which and what happens next.

Each worker is a fresh process because tf.distribute's collectives must be set up before the
process runs any other TensorFlow op, and the Trainer's process has run Transform's.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from components.trainer.training import TrainingJob, TrainingOutcome, outcome_path
from pipeline.errors import UserInputError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def train_on_workers(job: TrainingJob, workers: int, log: Callable[[str], None]) -> TrainingOutcome:
    """Runs `job` on `workers` local processes with MultiWorkerMirroredStrategy; returns the chief's
    outcome. A worker that fails or is killed stops them all: UserInputError naming it, its exit,
    the last lines it wrote and the checkpoint the next run resumes from."""
    os.makedirs(job.run_dir, exist_ok=True)
    job_file = os.path.join(job.run_dir, "job.pkl")
    with open(job_file, "wb") as f:
        pickle.dump(job, f)
    for index in range(workers):
        if os.path.exists(outcome_path(job_file, index)):
            os.remove(outcome_path(job_file, index))
    ports = free_ports(workers)
    path = os.pathsep.join([REPO_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    processes = []
    for index in range(workers):
        env = {
            **os.environ,
            "TF_CONFIG": tf_config(ports, index),
            "PYTHONPATH": path,
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        stderr = open(os.path.join(job.run_dir, f"worker-{index}.log"), "w")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "components.trainer.training", job_file],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE if index == 0 else subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        )
    log(
        f"training on {workers} worker processes (pids {', '.join(str(p.pid) for p in processes)}; "
        f"127.0.0.1 ports {', '.join(map(str, ports))}); worker 0 is the chief"
    )
    relay = threading.Thread(target=_relay, args=(processes[0].stdout, log), daemon=True)
    relay.start()
    try:
        failed = _wait(processes)
    finally:
        for process in processes:
            if process.poll() is None:
                _kill(process)
        relay.join(timeout=5)
    if failed is not None:
        index, code = failed
        raise UserInputError(_failure(job, index, code, processes[index].pid))
    outcomes = []
    for index in range(workers):
        with open(outcome_path(job_file, index)) as f:
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


def _wait(processes: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Waits until every worker exits 0, or one fails: then (its index, its exit code)."""
    while True:
        codes = [p.poll() for p in processes]
        for index, code in enumerate(codes):
            if code not in (None, 0):
                return index, code
        if all(code == 0 for code in codes):
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
    from components.estimator.estimator import latest_checkpoint_step

    step = latest_checkpoint_step(job.run_dir)
    resume = (
        f"the next run resumes from the checkpoint at step {step}"
        if step
        else "no checkpoint was written yet"
    )
    return f"training worker {index} (pid {pid}) {how}{said}; the other workers were stopped; {resume}"
