"""A cron-style soak on monthly exports: six months of the penguin data, `{YYYY}-{MM}` folders (one
year of the data each, about 110 rows), the penguin pipeline's rolling window of three spans. A
backfill of the first two months, then of the four that arrived since, then a run with nothing new
(a run killed in each step, and resumed, is tests/test_reliability.py's). One model per month, each trained on its
window; `models`, `runs`, `lineage --pushed` and `diff` answer from MLMD as that history says; each
span is ingested once (later runs reuse it, CACHED) and Transform analyzes only the new month; the
last run's report renders in a browser; `gc` bounds the disk and keeps the served model, its
window and its lineage."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import expect_exit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The penguin pipeline with Transform's analyzer cache on whatever the size of the data (by
# default it is used from 500,000 analyzed rows, where it pays), so that the soak sees it work.
PIPELINE = """
import dataclasses
from penguin.pipeline import create_pipeline as penguin

def create_pipeline():
    pipeline = penguin()
    transform = pipeline.node("Transform")
    transform.params = dataclasses.replace(transform.params, analyzer_cache=True)
    return pipeline
"""


def cli(root, *args, check=True, allow_held_back=False):
    pipeline_file = os.path.join(os.path.dirname(str(root)), "pipeline.py")
    if not os.path.exists(pipeline_file):
        with open(pipeline_file, "w") as f:
            f.write(PIPELINE)
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline", pipeline_file, "--pipeline-root", str(root), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        expect_exit(
            done.returncode,
            done.stdout + done.stderr,
            f"runner.py {' '.join(map(str, args))}",
            allow_held_back,
        )
    return done


SPANS = 6
FIRST = 2  # months the first backfill finds; the others arrive after it
MONTHS = [f"2024-{month:02d}-01" for month in range(1, SPANS + 1)]


def add_month(data, month: int) -> None:
    """Month `month` (1-6) of 2024: one year of the penguin data, 2007, 2008, 2009, 2007, ..."""
    year = 2007 + (month - 1) % 3
    shutil.copytree(os.path.join(REPO, "data", "penguins", f"span-{year}"), data / f"2024-{month:02d}")


def size(root) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def backfill_log(output: str) -> str:
    """What the runs of a backfill printed: the log file its first line names."""
    path = re.search(r"each run's output in (\S+)", output).group(1)
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Runs the sequence once; returns (root, data pattern, last full run's stdout, facts)."""
    base = tmp_path_factory.mktemp("cron")
    root, data = base / "root", base / "data"
    os.makedirs(data)
    pattern = str(data / "{YYYY}-{MM}" / "*.csv")
    for month in range(1, FIRST + 1):
        add_month(data, month)
    first = cli(root, "backfill", "--from", MONTHS[0], "--data", pattern, allow_held_back=True)
    after_first = size(root)

    for month in range(FIRST + 1, SPANS + 1):
        add_month(data, month)
    rest = cli(root, "backfill", "--from", MONTHS[FIRST], "--data", pattern, allow_held_back=True)
    last = size(root)
    idle = cli(root, "run", "--data", pattern)
    facts = {
        "backfills": [first.stdout, rest.stdout],
        "logs": backfill_log(first.stdout) + backfill_log(rest.stdout),
        "bytes": (after_first, last, size(root)),
    }
    steps = re.findall(r"^(\S+)\s+(COMPLETE|CACHED|FAILED)\s", idle.stdout, re.M)
    assert {status for _, status in steps} == {"CACHED"}, idle.stdout
    report = re.search(r"run report: (\S+)", idle.stdout).group(1)
    return root, pattern, open(report).read(), facts


def test_a_backfill_runs_each_month_in_order_with_a_line_each_and_a_table(history):
    *_, facts = history
    first, rest = facts["backfills"]
    assert re.search(r"\[1/2\] span 2024-01-01 \.\.\. (COMPLETE|HELD_BACK) in [\d.]+ s, run \S+", first)
    assert re.search(r"\[2/2\] span 2024-02-01 \.\.\. (COMPLETE|HELD_BACK) in", first)
    assert re.search(r"^span\s+run\s+outcome\s+seconds\s+model\s+pushed\s+note$", rest, re.M)
    rows = re.findall(r"^(2024-\d\d-01)\s+\S+\s+(COMPLETE|HELD_BACK)\s", rest, re.M)
    assert [span for span, _ in rows] == MONTHS[FIRST:]
    assert "4 run(s)" in rest
    # Each run's whole output is in the backfill's log file.
    assert facts["logs"].count("[8/8] Pusher") == SPANS


def test_a_run_with_nothing_new_adds_almost_nothing_to_the_disk(history):
    *_, facts = history
    first, last, nothing_new = facts["bytes"]
    assert last > 2 * first  # six months' worth of artifacts, until gc
    assert nothing_new - last < 64 * 1024  # a pointer report and a few MLMD rows


def test_each_month_is_ingested_once_and_transform_analyzes_only_the_new_one(history):
    root, *_ = history
    runs = cli(root, "runs", "--limit", "20", "--steps").stdout
    # Every run after the first reuses the months it has seen: CACHED executions of ExampleGen
    # that name the execution they reuse.
    for month in MONTHS[:-1]:
        assert re.search(
            rf"ExampleGen\[span {month}\]\s+CACHED\s+execution \d+\s+[\d.]+ s\s+from execution \d+", runs
        )
    for month in MONTHS:
        completed = re.findall(rf"ExampleGen\[span {month}\]\s+COMPLETE", runs)
        assert len(completed) == 1, (month, runs)
    from pipeline.artifacts import TransformGraph
    from pipeline.metadata import MetadataStore

    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    graphs = store.live_artifacts(TransformGraph, "penguin")
    newest = max(graphs, key=lambda g: g.id)
    assert (
        len(json.loads(newest.get("cached_spans"))) == 2
        and len(json.loads(newest.get("analyzed_spans"))) == 1
    )


def window_of(month: int) -> list[str]:
    """The months a model of month `month` (1-6) learned from: the window of three ending there."""
    return MONTHS[max(0, month - 3) : month]


def test_one_model_per_month_newest_first_each_with_its_window(history):
    root, *_ = history
    listing = cli(root, "models").stdout
    models = re.findall(r"^model #(\d+) .*  (spans? [\d, -]+)  ", listing, re.M)
    assert [spans for _, spans in models] == [
        ("span " if month == 1 else "spans ") + ", ".join(window_of(month)) for month in range(SPANS, 0, -1)
    ], listing
    assert "BLESSED" in listing and "pushed as version 1" in listing


def served_months(tree: dict) -> list[str]:
    """The months of raw examples in a lineage tree (JSON), oldest first."""
    found = set()

    def walk(node):
        artifact = node["artifact"]
        if node.get("execution", {}).get("component") == "ExampleGen":
            found.add(artifact["custom_properties"]["span_date"])
        for parent in node.get("inputs", {}).values():
            walk(parent)

    walk(tree)
    return sorted(found)


def test_lineage_of_the_pushed_model_names_exactly_its_window(history):
    root, *_ = history
    tree = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    # TFX's keys, as custom properties (PushedModel declares no property, as in TFX)
    assert tree["artifact"]["type"] == "PushedModel" and tree["artifact"]["custom_properties"]["pushed"] == 1
    found: dict = {}

    def walk(node):
        found.setdefault(node["execution"]["component"] if "execution" in node else "-", []).append(node)
        for parent in node.get("inputs", {}).values():
            walk(parent)

    walk(tree)
    assert {"Pusher", "Evaluator", "Trainer", "Transform", "ExampleGen", "ImportSchemaGen"} <= set(found)
    # The model served learned from the three months ending at its newest: exactly those.
    months = served_months(tree)
    newest = MONTHS.index(months[-1]) + 1
    assert months == window_of(newest)
    for examples in found["ExampleGen"]:
        span_date = examples["artifact"]["custom_properties"]["span_date"]
        resolved = json.loads(examples["execution"]["custom_properties"]["resolved"])
        assert [os.path.basename(os.path.dirname(f["path"])) for f in resolved["files"]] == [span_date[:7]]
        assert examples["validations"][0]["decision"] == "PASSED"
    text = cli(root, "lineage", "--pushed", "latest").stdout
    assert "file " in text and "sha256" in text and "module_file: " in text and "reason=" in text
    assert "examples[0]: Examples" in text and "examples[2]: Examples" in text


def test_diff_of_the_first_and_the_latest_model(history):
    root, *_ = history
    latest = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    version = int(latest["artifact"]["custom_properties"]["pushed_version"])  # a string, as TFX writes it
    assert version > 1, "six months of real data pushed only version 1"
    out = cli(root, "diff", "v1", f"v{version}").stdout
    newest = MONTHS.index(served_months(latest)[-1]) + 1
    assert re.search(rf"spans\n\s+\['2024-01-01'\]\n\s+{re.escape(str(window_of(newest)))}", out), out
    assert "ExampleGen[span 2024-01-01]" not in out  # a span only one side has differs once, in `spans`
    assert "module_file sha256" not in out  # same preprocessing and model code


def test_the_impact_of_one_bad_month_is_exactly_the_models_trained_on_it(history):
    """March's labels turn out wrong: which models learned from it, which versions they became,
    and whether one serves now."""
    root, *_ = history
    models = json.loads(cli(root, "models", "--json").stdout)
    trained_on_march = {m["id"] for m in models if "2024-03-01" in m["spans"]}
    assert len(trained_on_march) == 3  # the windows ending in March, April and May
    impact = json.loads(cli(root, "lineage", "--downstream", "span:2024-03-01", "--json").stdout)
    assert [a["custom_properties"]["span_date"] for a in impact["from"]] == ["2024-03-01"]
    reached = {a["id"] for a in impact["artifacts"] if a["type"] == "Model"}
    assert reached == trained_on_march
    versions = {v for m in models if m["id"] in trained_on_march for v in m["versions"]}
    pushes = [
        a for a in impact["artifacts"] if a["type"] == "PushedModel" and a["custom_properties"]["pushed"]
    ]
    assert {int(p["custom_properties"]["pushed_version"]) for p in pushes} == versions
    serving = [m for m in models if m["serving"]]
    assert [p["serving"] for p in pushes if p["serving"]] == (
        [True] if serving[0]["id"] in trained_on_march else []
    )
    text = cli(root, "lineage", "--downstream", "span:2024-03-01").stdout
    assert f"models built from it: {len(trained_on_march)}" in text
    assert ("<- SERVING NOW" in text) == (serving[0]["id"] in trained_on_march)
    # The same from the CSV file of that month.
    csv_file = os.path.join(os.path.dirname(root), "data", "2024-03", "penguins.csv")
    by_file = json.loads(cli(root, "lineage", "--downstream", csv_file, "--json").stdout)
    assert {a["id"] for a in by_file["artifacts"] if a["type"] == "Model"} == trained_on_march


def test_the_python_api_answers_as_the_command_line(history):
    from pipeline.history import History

    root, *_ = history
    api = History(os.path.join(root, "metadata.sqlite"))
    assert api.pipelines() == ["penguin"]
    assert [m.to_dict() for m in api.models("penguin")] == json.loads(cli(root, "models", "--json").stdout)
    assert [r.to_dict() for r in api.runs("penguin", 20)] == json.loads(
        cli(root, "runs", "--limit", "20", "--json").stdout
    )
    assert [p.to_dict() for p in api.pushes("penguin")] == json.loads(cli(root, "pushes", "--json").stdout)
    served = api.model("penguin", "latest")
    facts = api.lineage(served)
    assert facts.spans == served.spans and len(facts.files) == 3 and facts.schema["source"] == "curated"
    assert {"Transform.module_file", "Trainer.module_file"} <= set(facts.modules)
    assert facts.metrics["accuracy"] == served.metric("accuracy") and facts.blessed is True
    tree = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    assert served_months(tree) == facts.spans
    frame = api.models_frame("penguin", metric="accuracy")
    assert list(frame["model"]) == [m.model.id for m in api.models("penguin")]
    differences = api.diff("v1", "latest", "penguin")
    assert differences[0].fact == "spans" and differences[0].first == ["2024-01-01"]


def test_the_last_report_renders_in_a_browser(history):
    from tests.browser import charts_rendered, chromium, rendered_dom

    root, _, report, _ = history
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    full = re.search(r'href="([^"]+\.html)"', report)  # the idle run's pointer names the last full report
    path = os.path.join(root, "reports", os.path.basename(full.group(1))) if full else None
    assert path and os.path.exists(path), report[:2000]
    dom = rendered_dom(browser, path)
    decoded, total = charts_rendered(dom)
    assert decoded == total >= 10
    for text in (f"Statistics of span {MONTHS[-1]}", "Training", "BLESSED", "Lineage of the run"):
        assert text in dom


def test_gc_is_a_dry_run_until_applied_and_keeps_the_served_model_and_its_lineage(history):
    """Runs last in this module: it removes what the other tests looked at."""
    root, pattern, _, facts = history
    first_runs = facts["bytes"][0]
    before = size(root)
    dry = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1").stdout
    assert "would remove" in dry and "a dry run: nothing was removed" in dry and size(root) == before
    applied = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1", "--apply").stdout
    assert re.search(r"removed \d+ artifact\(s\), \d+ report\(s\) and \d+ pushed version\(s\)", applied)
    # What is left: the last run's lineage (its window's three months), the served model's, the store.
    assert size(root) < 2 * first_runs < before, (size(root), first_runs, before)
    served = json.loads(cli(root, "lineage", "--pushed", "latest", "--json").stdout)
    destination = served["artifact"]["custom_properties"]["pushed_destination"]
    assert os.path.exists(os.path.join(destination, "saved_model.pb"))
    assert len([d for d in os.listdir(os.path.dirname(destination)) if d.isdigit()]) == 1
    assert served_months(served) == window_of(MONTHS.index(served_months(served)[-1]) + 1)
    again = cli(root, "gc", "--keep-runs", "1", "--keep-pushed", "1").stdout
    assert "would remove 0 artifact(s), 0 report(s) and 0 pushed version(s)" in again
    # History survives retention: removed models and versions are there, marked, with what the
    # store knows (span, metrics, blessing, push time).
    listing = cli(root, "models").stdout
    assert len(re.findall(r"^model #\d+ ", listing, re.M)) == SPANS
    assert "DELETED (removed by gc; the store keeps its record)" in listing
    first = cli(root, "lineage", "--pushed", "1").stdout
    assert first.startswith("PushedModel #") and " DELETED " in first.splitlines()[0]
    assert "ExampleGen execution" in first and "2024-01-01" in first
    pushes = cli(root, "pushes").stdout
    assert "version 1 " in pushes and "(files removed by gc)" in pushes and "SERVING" in pushes
    # The next run with nothing new still finds everything: all CACHED, the same baseline, no push.
    idle = cli(root, "run", "--data", pattern)
    steps = re.findall(r"^(\S+)\s+(COMPLETE|CACHED|FAILED|BLOCKED|SKIPPED)\s", idle.stdout, re.M)
    assert steps and {status for _, status in steps} == {"CACHED"}, idle.stdout
    assert len([d for d in os.listdir(os.path.dirname(destination)) if d.isdigit()]) == 1
    # `runs` says per run the spans, the outcome, the push and the headline; idle runs on one line.
    runs = cli(root, "runs", "--limit", "20").stdout
    assert "2 runs with nothing new" in runs
    assert re.search(
        r"^run \S+\s+COMPLETE\s+started .*spans 2024-04-01, 2024-05-01, 2024-06-01; accuracy [\d.]+",
        runs,
        re.M,
    )
