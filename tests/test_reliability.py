"""Reliability of `runner.py run` as cron runs it: SIGKILL in the middle of each component, and bad
input across the pipeline. After each: metadata truthful, nothing damaged, the last good model
still in service."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline.local_runner import damage
from pipeline.metadata import MetadataStore, custom, state_name
from tests.helpers import expect_exit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = [
    "ExampleGen",
    "StatisticsGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
]


def runner(root, *args, check=True, data=None):
    extra = ["--data", data] if data else []
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline-root", str(root), "run", *extra, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        expect_exit(done.returncode, done.stdout + done.stderr, f"runner.py run {' '.join(args)}")
    return done


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A pipeline root with one complete run (and, when the pipeline pushes, a model in service)."""
    path = tmp_path_factory.mktemp("reliability")
    runner(path)
    return path


def pushed_model_dirs(root) -> list[str]:
    """Every pushed version's folder, in version order."""
    serving = os.path.join(root, "serving")
    found = [(dp, d) for dp, dirs, _ in os.walk(serving) for d in dirs if d.isdigit()]
    return [os.path.join(dp, d) for dp, d in sorted(found, key=lambda pair: (pair[0], int(pair[1])))]


def assert_truthful_and_serving(root) -> None:
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    assert not [e.id for e in store.mlmd.get_executions() if state_name(e) == "RUNNING"]
    live = [a for a in store.artifacts_by_id([a.id for a in store.mlmd.get_artifacts()]) if a.state == "LIVE"]
    assert live and not [(a.id, damage(a)) for a in live if damage(a)]
    for version in pushed_model_dirs(root):
        assert os.path.exists(os.path.join(version, "saved_model.pb")), version
    if pushed_model_dirs(root):
        serve_latest(pushed_model_dirs(root)[-1])


def serve_latest(model_dir: str) -> None:
    """The newest version loads and answers (in this process: the files are what is checked)."""
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    features = {"island": b"Biscoe", "sex": b"female"}
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for k, v in features.items()
            }
        )
    )
    out = model.signatures["serving_default"](examples=tf.constant([example.SerializeToString()]))
    assert out["classes"].numpy()[0].decode() in ("Adelie", "Chinstrap", "Gentoo")


def rerun_from(component: str) -> str:
    """The first step a kill test runs again: the component itself, reusing the outputs before it;
    for the Evaluator and the Pusher, the Trainer, so that they judge and push a new model (the
    one already served would be a comparison with itself and a push of nothing)."""
    return "Trainer" if component in ("Evaluator", "Pusher") else component


def killed_in(root, component: str, rerun: str) -> list[str]:
    """Starts `run --rerun-from rerun`, SIGKILLs it a moment after `component` starts (its header
    line); returns what it printed until then."""
    child = subprocess.Popen(
        [sys.executable, "runner.py", "--pipeline-root", str(root), "run", "--rerun-from", rerun],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    printed = []
    for line in child.stdout:
        printed.append(line)
        if line.rstrip().endswith(f"] {component}"):
            break
    else:
        child.wait()
        pytest.fail(f"the run ended before step {component} started; it printed:\n{''.join(printed)[-4000:]}")
    time.sleep(random.Random(component).uniform(0.0, 2.0))
    child.send_signal(signal.SIGKILL)
    child.wait()
    return printed


def ran_whole(printed: str, component: str) -> bool:
    """Whether the step `component` completed in a run's output: a `COMPLETE in` line (one per
    span for a step that runs per span) between its header and the next step's."""
    section = re.split(rf"\] {component}\n", printed, maxsplit=1)
    if len(section) < 2:
        return False
    step = re.split(r"^\d\d:\d\d:\d\d \[\d+/\d+\] ", section[1], maxsplit=1, flags=re.M)[0]
    return "COMPLETE in" in step and "FAILED" not in step


def test_sigkill_in_each_component_then_the_next_run_completes(root):
    """A run SIGKILLed in the middle of each component in turn, as a chain: each run starts again
    from the component the run before it was killed in (the Evaluator's and the Pusher's: from the
    Trainer, so that they judge and push a new model), which it closes FAILED and runs again whole,
    and is killed in the next component; the last run completes. Then the metadata is truthful,
    nothing is damaged, and no version in service was replaced."""
    before = pushed_model_dirs(root)
    killed = None
    for component in COMPONENTS:
        printed = killed_in(root, component, rerun_from(killed or component))
        if killed is not None:
            assert ran_whole("".join(printed), killed), "".join(printed)[-4000:]
        killed = component
    done = runner(root, "--rerun-from", rerun_from(killed))
    assert re.search(rf"^{killed} +COMPLETE ", done.stdout, re.M), done.stdout  # ran again, whole
    assert_truthful_and_serving(root)
    assert pushed_model_dirs(root)[: len(before)] == before  # versions in service never replaced


def test_a_signal_stops_the_step_records_it_and_the_next_run_completes(root):
    """What systemd, Airflow and Kubernetes send (SIGTERM; SIGINT is tested on a step task in
    tests/test_step.py), during the Trainer, which executes in the run's worker process: one line, 128 + the signal, the step
    FAILED with the signal's name and nothing of it staged, the run INTERRUPTED, the worker and
    its children gone, and the next run completes."""
    signal_number, code = signal.SIGTERM, 143
    before = pushed_model_dirs(root)
    child = subprocess.Popen(
        [sys.executable, "runner.py", "--pipeline-root", str(root), "run", "--rerun-from", "Trainer"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed = []
    for line in child.stdout:
        printed.append(line)
        if "evaluation at step" in line:  # the Trainer is training in the worker process
            break
    else:
        pytest.fail(f"the run ended before the Trainer evaluated; it printed:\n{''.join(printed)[-4000:]}")
    from pipeline.signals import descendants

    workers = descendants(child.pid)
    assert workers, "the run has no worker process"
    child.send_signal(signal_number)
    rest, error = child.communicate(timeout=120)
    name = signal.Signals(signal_number).name
    assert child.returncode == code, error
    # TensorFlow's C++ start-up lines in the worker are the README's known exception.
    library = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl)")
    lines = [x for x in error.splitlines() if x.strip() and not library.match(x)]
    assert len(lines) == 1, error
    [line] = lines
    assert re.fullmatch(
        rf"run \S+ INTERRUPTED by {name}: Trainer stopped \(execution \d+; what it staged removed\), the next run starts again there",
        line,
    ), line
    assert "FAILED after" in rest and f"(interrupted by {name})" in rest
    assert not [
        pid
        for pid in workers
        if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    ]
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    [run] = store.pipeline_runs("penguin")[:1]
    assert custom(run, "status") == "INTERRUPTED"
    trainer = max(
        (e for e in store.mlmd.get_executions() if custom(e, "node_id") == "Trainer"), key=lambda e: e.id
    )
    assert state_name(trainer) == "FAILED" and custom(trainer, "error") == f"interrupted by {name}"
    staged = [
        d for d, _, _ in os.walk(os.path.join(root, "Trainer")) if os.path.basename(d).startswith(".staging-")
    ]
    assert staged == []
    done = runner(root, "--rerun-from", "Trainer")
    assert re.search(r"^Trainer +COMPLETE ", done.stdout, re.M), done.stdout
    assert_truthful_and_serving(root)
    assert pushed_model_dirs(root)[: len(before)] == before


def test_empty_span_is_refused_and_the_model_stays(root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(os.path.join(REPO, "data", "penguins"), data)
    os.makedirs(data / "span-2010")
    with open(data / "span-2010" / "penguins.csv", "w") as f:
        f.write("species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n")
    before = pushed_model_dirs(root)
    done = runner(root, check=False, data=str(data / "span-{SPAN}" / "*.csv"))
    assert done.returncode == 1 and "span 2010 has no data rows" in done.stderr
    assert pushed_model_dirs(root) == before
    assert_truthful_and_serving(root)


def test_span_with_a_new_column_is_stopped_by_the_gate(root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(os.path.join(REPO, "data", "penguins"), data)
    os.makedirs(data / "span-2010")
    with open(os.path.join(REPO, "data", "penguins", "span-2009", "penguins.csv")) as f:
        header, *rows = f.read().splitlines()
    with open(data / "span-2010" / "penguins.csv", "w") as f:
        f.write("\n".join([header + ",tag", *(r.replace(",2009", ",2010") + ",x" for r in rows)]) + "\n")
    before = pushed_model_dirs(root)
    done = runner(root, check=False, data=str(data / "span-{SPAN}" / "*.csv"))
    assert done.returncode == 1 and "new_column: feature 'tag'" in done.stderr
    assert pushed_model_dirs(root) == before
    assert_truthful_and_serving(root)


def test_truncated_examples_are_rebuilt_not_used(root):
    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    from penguin.pipeline import DATA_PATTERN
    from pipeline.artifacts import Examples

    raw = [
        a
        for a in store.live_artifacts(Examples, "penguin")
        if "/ExampleGen/" in a.uri and a.get("span") == 2009 and a.get("input_pattern") == DATA_PATTERN
    ][-1]
    shard = sorted(os.listdir(raw.split_uri("train")))[0]
    path = os.path.join(raw.split_uri("train"), shard)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    done = runner(root)
    assert "cache miss: an output of execution" in done.stdout and "changed on disk" in done.stdout
    assert_truthful_and_serving(root)


def test_module_with_a_syntax_error_names_file_and_line(root, tmp_path):
    from penguin.pipeline import PREPROCESSING_MODULE

    broken = tmp_path / "module.py"
    broken.write_text(open(PREPROCESSING_MODULE).read() + "\ndef oops(:\n")
    pipeline_file = tmp_path / "pipeline.py"
    pipeline_file.write_text(
        "import dataclasses\n"
        "from penguin.pipeline import create_pipeline as penguin\n\n"
        "def create_pipeline():\n"
        "    pipeline = penguin()\n"
        "    transform = pipeline.node('Transform')\n"
        f"    transform.params = dataclasses.replace(transform.params, module_file={str(broken)!r})\n"
        "    return pipeline\n"
    )
    script = (
        "import sys, runner\n"
        f"sys.exit(runner.main(['--pipeline-root', {str(root)!r}, 'run', '--pipeline', {str(pipeline_file)!r}]))\n"
    )
    before = pushed_model_dirs(root)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1
    assert f"{broken}, line " in done.stderr and "syntax error" in done.stderr
    assert pushed_model_dirs(root) == before
    assert_truthful_and_serving(root)
