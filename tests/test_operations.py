"""A cron-style soak: six runs of the penguin pipeline on one root, each with a new small span (one
year of the penguin data, about 110 rows), the third killed during training and resumed, then a
run with nothing new. One model per span; `models`, `runs`, `lineage --pushed` and `diff` answer
from MLMD as that history says; the last run's report renders in a browser; `gc` bounds the disk
and keeps the served model and its lineage."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.helpers import expect_exit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(root, *args, check=True):
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline-root", str(root), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        expect_exit(done.returncode, done.stdout + done.stderr, f"runner.py {' '.join(map(str, args))}")
    return done


SPANS = 6
KILLED = 3

# Runs spans one after another in one process, as `runner.py run` would in each (the commands'
# own code, without paying TensorFlow's import ten times); writes what each run printed and the
# root's size after it. A span of None runs with no new data.
DRIVER = """
import contextlib, io, json, os, shutil, sys
import runner
root, data, spans, repo, out = json.loads(sys.argv[1])
def size():
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
done = []
for span in spans:
    if span is not None:
        add_span = os.path.join(repo, 'data', 'penguins', 'span-%d' % (2007 + (span - 1) % 3))
        shutil.copytree(add_span, os.path.join(data, 'span-%d' % span))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = runner.main(['--pipeline-root', root, 'run', '--data', os.path.join(data, 'span-{SPAN}', '*.csv')])
    done.append({'span': span, 'code': code, 'stdout': printed.getvalue(), 'bytes': size()})
with open(out, 'w') as f:
    json.dump(done, f)
"""


def drive(root, data, spans: list) -> list[dict]:
    out = str(root) + ".driver.json"
    arguments = json.dumps([str(root), str(data), spans, REPO, out])
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, arguments], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out) as f:
        runs = json.load(f)
    # The first run must push a model; a later span may hold its model back (a smaller span can
    # train a model that does not beat the one in service), and then must say why.
    for i, run in enumerate(runs):
        expect_exit(run["code"], run["stdout"], f"run {i + 1} (span {run['span']})", allow_held_back=i > 0)
    return runs


def add_span(data, span: int) -> None:
    year = 2007 + (span - 1) % 3
    shutil.copytree(os.path.join(REPO, "data", "penguins", f"span-{year}"), data / f"span-{span}")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Runs the cron sequence once; returns (root, data pattern, last full run's stdout, runs)."""
    base = tmp_path_factory.mktemp("cron")
    root, data = base / "root", base / "data"
    os.makedirs(data)
    pattern = str(data / "span-{SPAN}" / "*.csv")
    runs = drive(root, data, list(range(1, KILLED)))

    add_span(data, KILLED)
    child = subprocess.Popen(
        [sys.executable, "runner.py", "--pipeline-root", str(root), "run", "--data", pattern],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in child.stdout:
        if "evaluation at step" in line:  # the Trainer is under way
            break
    child.send_signal(signal.SIGKILL)
    child.wait()

    runs += drive(root, data, [None, *range(KILLED + 1, SPANS + 1), None])
    resumed, last, nothing_new = runs[KILLED - 1], runs[-2], runs[-1]
    assert "was interrupted; marked FAILED" in resumed["stdout"]
    assert set(re.findall(r"^\w+\s+(COMPLETE|CACHED|FAILED)\s", nothing_new["stdout"], re.M)) == {"CACHED"}
    return root, pattern, last["stdout"], runs


def test_a_run_with_nothing_new_adds_almost_nothing_to_the_disk(history):
    *_, runs = history
    first, last, nothing_new = runs[0]["bytes"], runs[-2]["bytes"], runs[-1]["bytes"]
    assert last > 3 * first  # six spans' worth of artifacts, until gc
    assert nothing_new - last < 64 * 1024  # a pointer report and a few MLMD rows


def test_one_model_per_span_newest_first(history):
    root, *_ = history
    listing = cli(root, "models").stdout
    models = re.findall(r"^model #(\d+) .* span (\d+) ", listing, re.M)
    assert [int(span) for _, span in models] == list(range(SPANS, 0, -1))
    assert "BLESSED" in listing and "pushed as version 1" in listing


def test_runs_show_the_interrupted_one(history):
    root, *_ = history
    runs = cli(root, "runs", "--limit", "20").stdout
    assert runs.count("INTERRUPTED") == 1
    assert re.search(
        r"Trainer\s+FAILED\s+execution \d+\s+[\d.]+ s\s+interrupted: the process running it stopped", runs
    )


def test_lineage_of_the_pushed_model(history):
    root, *_ = history
    tree = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    # TFX's keys, as custom properties (PushedModel declares no property, as in TFX)
    assert tree["artifact"]["type"] == "PushedModel" and tree["artifact"]["custom_properties"]["pushed"] == 1
    found = {}

    def walk(node):
        found.setdefault(node["execution"]["component"] if "execution" in node else "-", node)
        for parent in node.get("inputs", {}).values():
            walk(parent)

    walk(tree)
    assert {"Pusher", "Evaluator", "Trainer", "Transform", "ExampleGen", "ImportSchemaGen"} <= set(found)
    examples = found["ExampleGen"]
    span = examples["artifact"]["properties"]["span"]
    resolved = json.loads(examples["execution"]["custom_properties"]["resolved"])
    assert [os.path.basename(os.path.dirname(f["path"])) for f in resolved["files"]] == [f"span-{span}"]
    assert examples["validations"][0]["decision"] == "PASSED"
    text = cli(root, "lineage", "--pushed", "latest").stdout
    assert "file " in text and "sha256" in text and "module_file: " in text and "reason=" in text


def test_diff_of_the_first_and_the_latest_model(history):
    root, *_, runs = history
    latest = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    version = int(latest["artifact"]["custom_properties"]["pushed_version"])  # a string, as TFX writes it
    outcomes = [(run["span"], run["code"]) for run in runs]
    assert version > 1, (
        f"six spans of real data pushed only version 1; (span, exit code) of each run: {outcomes}"
    )
    out = cli(root, "diff", "v1", f"v{version}").stdout
    assert re.search(r"\w+\.examples: span\n\s+1\n\s+\d+", out), out
    assert "input_fingerprint" in out
    assert "module_file sha256" not in out  # same preprocessing and model code


def test_the_last_report_renders_in_a_browser(history):
    from tests.browser import charts_rendered, chromium, rendered_dom

    _, _, stdout, _ = history
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    dom = rendered_dom(browser, re.search(r"run report: (\S+)", stdout).group(1))
    decoded, total = charts_rendered(dom)
    assert decoded == total >= 10
    for text in (f"Statistics of span {SPANS}", "Training", "BLESSED", "Lineage of the run"):
        assert text in dom


def test_gc_is_a_dry_run_until_applied_and_keeps_the_served_model_and_its_lineage(history):
    """Runs last in this module: it removes what the other tests looked at."""
    root, *_, runs = history

    def size():
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)

    before = size()
    dry = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1").stdout
    assert "would remove" in dry and "a dry run: nothing was removed" in dry and size() == before
    applied = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1", "--apply").stdout
    assert re.search(r"removed \d+ artifact\(s\), \d+ report\(s\) and \d+ pushed version\(s\)", applied)
    # What is left: the last run's lineage, the served model's (perhaps an older span's), the store.
    first_run = runs[0]["bytes"]
    assert size() < 3 * first_run < before, (size(), first_run, before)
    served = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    destination = served["artifact"]["custom_properties"]["pushed_destination"]
    assert os.path.exists(os.path.join(destination, "saved_model.pb"))
    assert len([d for d in os.listdir(os.path.dirname(destination)) if d.isdigit()]) == 1
    assert "ExampleGen" in cli(root, "lineage", "--pushed", "latest").stdout
    again = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1").stdout
    assert "would remove 0 artifact(s), 0 report(s) and 0 pushed version(s)" in again
    # The next run with nothing new still finds everything: all CACHED, the same baseline, no push.
    pattern = history[1]
    idle = cli(root, "run", "--data", pattern)
    steps = re.findall(r"^(\w+)\s+(COMPLETE|CACHED|FAILED|BLOCKED|SKIPPED)\s", idle.stdout, re.M)
    assert steps and {status for _, status in steps} == {"CACHED"}, idle.stdout
    assert len([d for d in os.listdir(os.path.dirname(destination)) if d.isdigit()]) == 1
