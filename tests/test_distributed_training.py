"""The Trainer on two worker processes (MultiWorkerMirroredStrategy over 127.0.0.1 ports): both
workers take the same steps, the export is as good as one process's, and a worker killed mid-training
is reported by name with the checkpoint the next run resumes from, which it then does."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from pipeline.metadata import MetadataStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pipeline_file(tmp_path, name: str, **trainer) -> str:
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(f"""
            from penguin.pipeline import create_pipeline as penguin

            def create_pipeline():
                pipeline = penguin()
                pipeline.override(**{trainer!r})
                return pipeline
        """)
    )
    return str(path)


def command(root, pipeline):
    return [sys.executable, "runner.py", "--pipeline-root", str(root), "run", "--pipeline", pipeline]


def latest_model(root):
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    from pipeline.artifacts import Model, ModelBlessing

    model = store.live_artifacts(Model, "penguin")[-1]
    blessing = next(
        b for b in store.live_artifacts(ModelBlessing, "penguin") if b.get("current_model_id") == model.id
    )
    return model, blessing


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def two_workers(root, tmp_path_factory):
    pipeline = pipeline_file(
        tmp_path_factory.mktemp("pipelines"), "two.py", distribution="multi_worker", workers=2
    )
    done = subprocess.run(command(root, pipeline), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return done


def test_two_workers_take_the_same_steps_and_export_a_good_model(root, two_workers):
    assert re.search(
        r"training on 2 worker processes \(pids \d+, \d+; 127\.0\.0\.1 ports", two_workers.stdout
    )
    assert "worker 0: evaluation at step" in two_workers.stdout
    model, blessing = latest_model(root)
    steps = json.loads(model.get("worker_steps"))
    assert len(steps) == 2 and steps[0] == steps[1] == model.get("last_step")
    assert f"every worker stopped at step {steps[0]}" in two_workers.stdout
    assert model.get("distribution") == "multi_worker" and model.get("replicas") == 2
    # As accurate as one process (which reaches 1.0 on the penguin eval split), and served the same way.
    assert blessing.get("blessed") == 1 and blessing.get("accuracy") >= 0.95
    assert set(json.loads(model.get("signatures"))) == {
        "serving_default",
        "classification",
        "predict",
        "raw_serving_default",
    }
    # Only the chief wrote checkpoints and the export; each worker left its log and its outcome.
    run = os.path.join(model.uri, "run")
    assert {
        "worker-0.log",
        "worker-1.log",
        "job.pkl.outcome-0.json",
        "job.pkl.outcome-1.json",
        "best",
    } <= set(os.listdir(run))


def test_a_killed_worker_is_named_and_the_next_run_resumes(root, two_workers, tmp_path):
    # Another seed: a new training, with checkpoints every 20 steps and no early stop before 300.
    pipeline = pipeline_file(
        tmp_path,
        "kill.py",
        distribution="multi_worker",
        workers=2,
        random_seed=7,
        train_steps=300,
        eval_every_steps=20,
        early_stopping_patience=1000,
    )
    child = subprocess.Popen(
        command(root, pipeline), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pids = None
    for line in child.stdout:
        found = re.search(r"training on 2 worker processes \(pids (\d+), (\d+);", line)
        pids = pids or (found and (int(found.group(1)), int(found.group(2))))
        if "worker 0: evaluation at step 100" in line:
            os.kill(pids[1], signal.SIGKILL)
            break
    out, err = child.communicate(timeout=600)
    assert child.returncode == 1
    message = re.search(r"error: Trainer failed \(execution \d+\): (.*)", err).group(1)
    assert re.match(
        rf"training worker 1 \(pid {pids[1]}\) was killed by signal 9 \(SIGKILL\); the other workers were "
        r"stopped; the next run resumes from the checkpoint at step (\d+)",
        message,
    ), message
    checkpoint = int(re.search(r"step (\d+)$", message).group(1))
    assert checkpoint >= 100

    done = subprocess.run(command(root, pipeline), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert f"worker 0: resumed from the checkpoint at step {checkpoint}" in done.stdout
    assert "every worker stopped at step 300" in done.stdout
    model, _ = latest_model(root)
    assert model.get("resumed_from") == checkpoint and json.loads(model.get("worker_steps")) == [300, 300]


def test_a_cluster_named_by_tf_config_with_a_worker_that_follows(root, two_workers, tmp_path):
    """TF_CONFIG in the Trainer's environment, as on a cluster: the Trainer runs its own task and
    announces the job; the other worker, started on its own (as on another machine), follows it."""
    from components.trainer.workers import free_ports

    ports = free_ports(2)

    def env(index):
        cluster = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        return {**os.environ, "TF_CONFIG": json.dumps(cluster), "PYTHONPATH": REPO}

    follower = subprocess.Popen(
        [sys.executable, "-m", "components.trainer.training", "--follow", os.path.join(root, "Trainer")],
        cwd=tmp_path,
        env=env(1),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        pipeline = pipeline_file(tmp_path, "cluster.py", distribution="multi_worker", random_seed=11)
        done = subprocess.run(
            command(root, pipeline), cwd=REPO, env=env(0), capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
        assert f"this machine runs worker 0; the others follow {root}" in done.stdout
        out, _ = follower.communicate(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0 and "following the training job" in out and "as worker 1" in out
    model, _ = latest_model(root)
    steps = json.loads(model.get("worker_steps"))
    assert len(steps) == 2 and steps[0] == steps[1] == model.get("last_step")
