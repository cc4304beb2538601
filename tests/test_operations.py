"""A cron-style history: span 2007, then 2008 (killed once during training), then 2009. One model
per span; `models`, `runs`, `lineage --pushed` and `diff` answer from MLMD as that history says;
the last run's report renders in a browser."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.helpers import COMPLETED

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(root, *args, check=True):
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline-root", str(root), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and done.returncode not in COMPLETED:
        raise AssertionError(
            f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def add_span(data, span: int) -> None:
    shutil.copytree(os.path.join(REPO, "data", "penguins", f"span-{span}"), data / f"span-{span}")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Runs the cron sequence once; returns (root, data pattern, last run's stdout)."""
    base = tmp_path_factory.mktemp("cron")
    root, data = base / "root", base / "data"
    os.makedirs(data)
    pattern = str(data / "span-{SPAN}" / "*.csv")
    add_span(data, 2007)
    cli(root, "run", "--data", pattern)

    add_span(data, 2008)
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
    resumed = cli(root, "run", "--data", pattern)
    assert "was interrupted; marked FAILED" in resumed.stdout

    add_span(data, 2009)
    last = cli(root, "run", "--data", pattern)
    nothing_new = cli(root, "run", "--data", pattern)
    assert set(re.findall(r"^\w+\s+(COMPLETE|CACHED|FAILED)\s", nothing_new.stdout, re.M)) == {"CACHED"}
    return root, pattern, last.stdout


def test_one_model_per_span_newest_first(history):
    root, _, _ = history
    listing = cli(root, "models").stdout
    models = re.findall(r"^model #(\d+) .* span (\d+) ", listing, re.M)
    assert [span for _, span in models] == ["2009", "2008", "2007"]
    assert "BLESSED" in listing and "pushed as version 1" in listing


def test_runs_show_the_interrupted_one(history):
    root, _, _ = history
    runs = cli(root, "runs", "--limit", "10").stdout
    assert runs.count("INTERRUPTED") == 1
    assert re.search(
        r"Trainer\s+FAILED\s+execution \d+\s+[\d.]+ s\s+interrupted: the process running it stopped", runs
    )


def test_lineage_of_the_pushed_model(history):
    root, _, _ = history
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
    root, _, _ = history
    latest = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    version = int(latest["artifact"]["custom_properties"]["pushed_version"])  # a string, as TFX writes it
    if version == 1:
        pytest.skip("only the first model was pushed")
    out = cli(root, "diff", "v1", f"v{version}").stdout
    assert re.search(r"ExampleGen\.examples: span\n\s+2007\n\s+(2008|2009)", out) or "span" in out
    assert "input_fingerprint" in out
    assert "module_file sha256" not in out  # same preprocessing and model code


def test_the_last_report_renders_in_a_browser(history):
    from tests.browser import chromium, images_rendered, rendered_dom

    _, _, stdout = history
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    dom = rendered_dom(browser, re.search(r"run report: (\S+)", stdout).group(1))
    decoded, total = images_rendered(dom)
    assert decoded == total >= 10
    for text in ("Statistics of span 2009", "Training", "BLESSED", "Lineage of the run"):
        assert text in dom


def test_gc_is_a_dry_run_until_applied_and_keeps_the_served_model_and_its_lineage(history):
    """Runs last in this module: it removes what the other tests looked at."""
    root, _, _ = history

    def size():
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)

    before = size()
    dry = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1").stdout
    assert "would remove" in dry and "a dry run: nothing was removed" in dry and size() == before
    applied = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1", "--apply").stdout
    assert re.search(r"removed \d+ artifact\(s\), \d+ report\(s\) and \d+ pushed version\(s\)", applied)
    assert size() < before
    served = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    destination = served["artifact"]["custom_properties"]["pushed_destination"]
    assert os.path.exists(os.path.join(destination, "saved_model.pb"))
    assert len([d for d in os.listdir(os.path.dirname(destination)) if d.isdigit()]) == 1
    assert "ExampleGen" in cli(root, "lineage", "--pushed", "latest").stdout
    again = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1").stdout
    assert "would remove 0 artifact(s), 0 report(s) and 0 pushed version(s)" in again
