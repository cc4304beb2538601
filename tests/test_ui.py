"""The history browser (`runner.py ui`): its graph layout and drawing without a browser; then one
server, for the whole module, over a store of real runs (ExampleGen on a rolling window of two
spans, the data gate, and stand-ins for the Trainer, the Evaluator and the Pusher from
`bench.history`): every page answers, escapes what the store holds, writes nothing, serves only
the files the store names; and in headless Chromium the runs list, a run, its model and lineage
graph, a diff of two models chosen on the page, the impact of a span and the run report show a
CSV header `<script>alert(1)</script>` and a value `"><img src=x onerror=alert(1)>` as text, and
run no script of theirs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from bench.history import training_pipeline, write_schema, write_span
from pipeline.artifacts import Examples, Model, ModelBlessing, PushedModel, Schema
from pipeline.lineage import LineageNode
from pipeline.metadata import set_value
from pipeline.ui import graph, trend
from tests.helpers import quiet_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(1)>'
HEADER = ("x", "kind", SCRIPT)


# ---- the graphs, without a browser ------------------------------------------------------------------


def execution(execution_id: int, **props) -> pb.Execution:
    proto = pb.Execution(id=execution_id, last_known_state=pb.Execution.COMPLETE)
    for key, value in props.items():
        set_value(proto.custom_properties[key], value)
    return proto


def lineage_tree() -> LineageNode:
    """A push's lineage as `pipeline.lineage.lineage` builds it: a window of two spans shared by
    the Trainer and the Evaluator, a schema, and the baseline model as a leaf."""
    spans = [
        LineageNode(
            Examples(
                f"/r/ExampleGen/examples/{i}",
                id=i,
                properties={"span": span},
                state="LIVE",
                custom_properties={"column_names": json.dumps({SCRIPT: "script_alert_1_script"})},
            ),
            execution(100 + i, map_label=f"span {span}", run_id="r1"),
            "ExampleGen",
        )
        for i, span in ((1, 2008), (2, 2009))
    ]
    schema = LineageNode(
        Schema("/r/schema/3", id=3, state="LIVE"), execution(103, run_id="r1"), "ImportSchemaGen"
    )
    model = LineageNode(
        Model("/r/Trainer/model/4", id=4, state="LIVE", custom_properties={"spans": "[2008, 2009]"}),
        execution(104, run_id="r2"),
        "Trainer",
        {"examples[0]": spans[0], "examples[1]": spans[1], "schema": schema},
    )
    baseline = LineageNode(Model("/r/Trainer/model/9", id=9, state="LIVE"))
    blessing = LineageNode(
        ModelBlessing("/r/Evaluator/blessing/5", id=5, state="LIVE", custom_properties={"blessed": 1}),
        execution(105, run_id="r2", resolver_inputs='["baseline"]'),
        "Evaluator",
        {"model": model, "examples[0]": spans[0], "examples[1]": spans[1], "baseline": baseline},
    )
    return LineageNode(
        PushedModel(
            "/r/Pusher/pushed_model/6",
            id=6,
            state="LIVE",
            custom_properties={"pushed": 1, "pushed_version": "3"},
        ),
        execution(106, run_id="r2"),
        "Pusher",
        {"model": model, "blessing": blessing},
    )


def test_a_lineage_graph_has_a_node_per_artifact_and_execution_and_labelled_edges():
    drawn = graph.lineage_graph(lineage_tree(), link=lambda a: f"/a/{a.id}", run_link=lambda r: f"/run/{r}")
    artifacts = sorted(k for k in drawn.nodes if k.startswith("a"))
    executions = sorted(k for k in drawn.nodes if k.startswith("e"))
    assert artifacts == ["a1", "a2", "a3", "a4", "a5", "a6", "a9"]  # each artifact once, shared or not
    assert executions == ["e101", "e102", "e103", "e104", "e105", "e106"]
    assert drawn.nodes["a1"].lines == ["Examples #1", "span 2008"]
    assert drawn.nodes["e101"].lines == ["ExampleGen[span 2008]", "execution #101"]
    assert drawn.nodes["a6"].lines == ["PushedModel #6", "version 3"]
    edges = {(e.source, e.target): e for e in drawn.edges}
    assert edges[("a1", "e104")].label == "examples[0]" and edges[("a2", "e105")].label == "examples[1]"
    assert edges[("e104", "a4")].label == "" and ("a4", "e106") in edges and ("a5", "e106") in edges
    # The baseline it was compared with: an edge of its own, dashed and red, into the Evaluator.
    baseline = edges[("a9", "e105")]
    assert (baseline.label, baseline.dashed, baseline.colour, baseline.css) == (
        "baseline",
        True,
        graph.BASELINE_COLOUR,
        "baseline",
    )
    assert not edges[("a4", "e105")].dashed


def test_the_layout_comes_from_igraph_in_layers_along_the_edges_without_overlaps():
    drawn = graph.lineage_graph(lineage_tree(), link=lambda a: "", run_link=lambda r: "")
    placed = graph.layout(drawn)
    for edge, route in zip(drawn.edges, placed.routes):
        assert placed.boxes[edge.target][1] > placed.boxes[edge.source][1]  # top to bottom
        (_, y0), (_, y1) = route[0], route[-1]
        assert y0 == pytest.approx(placed.boxes[edge.source][1] + placed.boxes[edge.source][3] / 2)
        assert y1 == pytest.approx(placed.boxes[edge.target][1] - placed.boxes[edge.target][3] / 2)
    boxes = list(placed.boxes.values())
    for i, (x, y, w, h) in enumerate(boxes):
        assert 0 <= x - w / 2 and x + w / 2 <= placed.width and 0 <= y - h / 2 and y + h / 2 <= placed.height
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert abs(x - x2) >= (w + w2) / 2 or abs(y - y2) >= (h + h2) / 2, "two boxes overlap"
    across = graph.layout(drawn, across=True)
    assert all(across.boxes[e.target][0] > across.boxes[e.source][0] for e in drawn.edges)  # left to right


def test_every_text_of_a_graph_is_escaped():
    drawn = graph.Graph()
    drawn.add(graph.Node("a", [SCRIPT, IMAGE], href='/x?a=1&b="2"', hover=f"column {SCRIPT}"))
    drawn.add(graph.Node("b", ["Trainer"]))
    drawn.connect(graph.Edge("a", "b", label=IMAGE))
    svg = graph.draw(drawn)
    assert "<script" not in svg and "<img" not in svg
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
        and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in svg
    )
    assert "href='/x?a=1&amp;b=&quot;2&quot;'" in svg
    # A label cut to fit keeps the whole text on hover, escaped too.
    long = graph.Graph()
    long.add(graph.Node("a", ["<b>" * 20]))
    assert "<b>" not in graph.draw(long) and "&lt;b&gt;" * 20 in graph.draw(long)


def test_a_run_graph_joins_the_steps_that_made_and_took_each_artifact():
    def event(kind, execution_id, artifact_id, key):
        found = pb.Event(type=kind, execution_id=execution_id, artifact_id=artifact_id)
        found.path.steps.add().key = key
        return found

    steps = [
        execution(1, node_id="ExampleGen", map_label="span 2", seconds=1.5),
        execution(2, node_id="StatisticsGen", map_label="span 2", seconds=0.5),
        execution(3, node_id="ExampleValidator", map_label="span 2", blocked=f"1 anomaly: {IMAGE}"),
    ]
    steps[0].last_known_state = pb.Execution.CACHED
    events = [
        event(pb.Event.OUTPUT, 1, 10, "examples"),
        event(pb.Event.INPUT, 2, 10, "examples"),
        event(pb.Event.OUTPUT, 2, 11, "statistics"),
        event(pb.Event.INPUT, 3, 11, "statistics"),
        event(pb.Event.INPUT, 3, 99, "schema"),  # made in another run: no edge
    ]
    drawn = graph.run_graph(steps, events)
    assert [n.lines for n in drawn.nodes.values()] == [
        ["ExampleGen[span 2]", "CACHED 1.5 s"],
        ["StatisticsGen[span 2]", "COMPLETE 0.5 s"],
        ["ExampleValidator[span 2]", "BLOCKED 0.0 s"],
    ]
    assert drawn.nodes["e3"].fill == graph.STATE_COLOURS["BLOCKED"]
    assert [(e.source, e.target, e.label) for e in drawn.edges] == [
        ("e1", "e2", "examples"),
        ("e2", "e3", "statistics"),
    ]


def test_the_trend_tells_blessed_from_not_blessed_models():
    svg = trend.trend(
        [
            ("model #1", 0.8, True, False, False, "/m/1"),
            ("model #2", 0.7, False, False, False, "/m/2"),
            ("model #3", None, None, False, False, "/m/3"),
            (f"model {SCRIPT}", 0.9, True, True, True, "/m/4"),
        ],
        "accuracy",
    )
    assert svg.count("class='marker blessed'") == 2 and svg.count("class='marker not-blessed'") == 1
    assert "class='legend'" in svg and "not blessed" in svg and "serving now" in svg
    assert "<script" not in svg and "&lt;script&gt;" in svg


# ---- one server over a store of real runs --------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Runs the sequence once: span 1, span 2, two runs with nothing new, a learning rate that
    makes a worse model (held back), the same pipeline on a second root sharing the store, then a
    span whose `kind` has a value the schema does not know (the data gate stops the run). Every
    CSV has the header `<script>alert(1)</script>`, and span 2's file is named after the value.
    Returns (store path, the runs by name)."""
    base = tmp_path_factory.mktemp("history")
    data, root, other = str(base / "data"), base / "root", base / "other-root"
    schema = write_schema(str(base / "schema.pbtxt"), HEADER)
    spec = str(root / "metadata.sqlite")
    results = {}

    def run(name, learning_rate=0.1, on=root):
        result = quiet_run(training_pipeline(data, schema, learning_rate), on, metadata=spec)
        results[name] = result
        return result

    write_span(data, 1, header=HEADER)
    assert run("first").status == "COMPLETE"
    write_span(data, 2, header=HEADER, file_name=f"{IMAGE}.csv")
    assert run("second").status == "COMPLETE"
    assert run("idle").status == run("idle again").status == "COMPLETE"
    assert run("worse", learning_rate=0.9).status == "HELD_BACK"
    assert run("other root", on=other).status == "COMPLETE"
    write_span(data, 3, header=HEADER, odd_value=IMAGE)
    blocked = run("blocked")
    assert blocked.status == "BLOCKED" and IMAGE in str(blocked.error)
    return spec, results


@pytest.fixture(scope="module")
def server(store):
    from werkzeug.serving import make_server

    from pipeline.text import free_ports
    from pipeline.ui import create_app

    spec, _ = store
    with open(spec, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()
    app = create_app(spec)
    [port] = free_ports(1)
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app
    http.shutdown()
    thread.join(10)
    with open(spec, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before, "the browser wrote to the store"


def get(app, url: str, status: int = 200) -> str:
    response = app.test_client().get(url)
    assert response.status_code == status, (
        f"{url}: {response.status_code}\n{response.get_data(as_text=True)[-3000:]}"
    )
    return response.get_data(as_text=True)


def escaped_everywhere(page: str) -> None:
    assert "<script>alert" not in page and "<img src=x" not in page and "onerror=alert(1)>" not in page


def test_every_page_answers_and_escapes_what_the_store_holds(server, store):
    _, app = server
    _, runs = store
    blocked, second = runs["blocked"], runs["second"]
    model = second.step("Trainer").outputs["model"]
    pages = {
        "runs": get(app, "/runs?pipeline=history"),
        "blocked run": get(app, f"/run?id={blocked.run_id}"),
        "models": get(app, "/models?pipeline=history"),
        "model": get(app, f"/model?id={model.id}"),
        "impact": get(app, "/impact?ref=span:3"),
        "diff": get(
            app, f"/diff?pipeline=history&a={runs['first'].step('Trainer').outputs['model'].id}&b={model.id}"
        ),
    }
    assert get(app, "/", status=302) and "/runs?pipeline=history" in app.test_client().get("/").location
    for page in pages.values():
        escaped_everywhere(page)
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages["runs"]  # the gate's reason
    for name in ("blocked run", "impact", "model"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[name], name
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages["blocked run"]
    # Runs of two roots of one pipeline: each run says its root.
    assert "<th>root</th>" in pages["runs"] and "other-root" in pages["runs"]
    assert "2 runs with nothing new" in pages["runs"]
    # The model page: its facts, and its lineage as a graph with the baseline's edge.
    assert "class='lineage'" in pages["model"] and "class='edge baseline'" in pages["model"]
    assert "version 2" in pages["model"] and "rows.csv" in pages["model"]
    assert (
        "BLESSED" in pages["diff"]
        and "difference(s)" in pages["diff"]
        and "Trainer: learning_rate" not in pages["diff"]
    )


def test_pages_forbid_scripts_and_the_store_cannot_be_written(server):
    _, app = server
    response = app.test_client().get("/runs")
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert app.jinja_env.autoescape is True  # every template, .html or not
    store = app.config["HISTORY"].store
    with pytest.raises(Exception, match="readonly"):
        store.mlmd.put_context_type(pb.ContextType(name="written_by_the_browser"))


def test_only_the_files_the_store_names_are_served(server, store):
    _, app = server
    _, runs = store
    anomalies = runs["blocked"].steps_of("ExampleValidator")[-1].outputs["anomalies"]
    model = runs["first"].step("Trainer").outputs["model"]
    client = app.test_client()
    page = client.get(f"/artifacts/{anomalies.id}/statistics.html")
    assert page.status_code == 200 and "sandbox" in page.headers["Content-Security-Policy"]
    escaped_everywhere(page.get_data(as_text=True))
    assert client.get(f"/artifacts/{model.id}/training.html").status_code == 200
    for url in (
        f"/artifacts/{model.id}/statistics.html",  # not its page
        f"/artifacts/{model.id}/..%2F..%2Fmetadata.sqlite",
        f"/artifacts/{model.id}/../../metadata.sqlite",
        "/artifacts/999999/training.html",
        "/reports/no-such-run.html",
        f"/reports/{runs['first'].run_id}.txt",
    ):
        assert client.get(url).status_code == 404, url
    report = client.get(f"/reports/{runs['blocked'].run_id}.html")
    assert report.status_code == 200 and "sandbox" in report.headers["Content-Security-Policy"]


def test_runs_are_paged_newest_first(server, store):
    _, app = server
    _, runs = store
    first_page = get(app, "/runs?pipeline=history&limit=2")
    assert runs["blocked"].run_id in first_page and runs["first"].run_id not in first_page
    older = re.search(r'href="(/runs\?[^"]*before=[^"]*)"', first_page).group(1).replace("&amp;", "&")
    second_page = get(app, older)
    assert runs["worse"].run_id in second_page and runs["blocked"].run_id not in second_page
    assert "no run" in get(app, "/runs?pipeline=history&before=nonesuch", status=404)
    assert "must be a number" in get(app, "/model?id=abc", status=400)


# ---- in a browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_page():
    from tests.browser import FLAGS, chromium

    executable = chromium()
    if executable is None:
        pytest.skip("no chromium: install Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=[f for f in FLAGS if f != "--headless"]
        )
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        yield page, dialogs
        browser.close()


def follow(page, selector: str) -> None:
    """Clicks a link or a button and waits for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def inert(page, dialogs, *shown: str) -> str:
    """Checks that nothing from the store ran or became markup on the page, and that each of
    `shown` is there as text; returns the page's text."""
    text = page.evaluate("document.body.textContent")
    assert dialogs == [], f"a script ran on {page.url}: {dialogs}"
    assert page.locator("img[src=x]").count() == 0, page.url
    scripts = page.evaluate("Array.from(document.scripts).map(s => s.textContent)")
    assert not any("alert" in s for s in scripts), page.url
    for text_shown in shown:
        assert text_shown in text, f"{text_shown!r} is not text of {page.url}"
    return text


def test_a_person_browses_runs_a_model_its_lineage_a_diff_and_an_impact(server, store, browser_page):
    base, _ = server
    _, runs = store
    page, dialogs = browser_page

    page.goto(f"{base}/")  # one pipeline: straight to its runs
    assert page.url.startswith(f"{base}/runs")
    inert(page, dialogs, IMAGE, "BLOCKED", "HELD_BACK")
    assert page.locator("svg.run-dag").count() >= 5
    assert page.locator("svg.run-dag g.node").filter(has_text="ExampleGen[span 2]").count() >= 1

    # The run the gate stopped: its steps, outputs, the data's page and its report.
    follow(page, f"text={runs['blocked'].run_id}")
    inert(page, dialogs, SCRIPT, IMAGE)
    follow(page, "a.page >> nth=-1")  # the statistics page of span 3
    inert(page, dialogs, IMAGE)
    page.go_back()
    follow(page, f"text={runs['blocked'].run_id}.html")
    inert(page, dialogs, SCRIPT, IMAGE)

    # A run that pushed, to its model, the model's lineage graph.
    page.goto(f"{base}/runs")
    follow(page, f"text={runs['second'].run_id}")
    inert(page, dialogs, SCRIPT, IMAGE)
    model = runs["second"].step("Trainer").outputs["model"]
    follow(page, f"text=Model #{model.id} >> nth=0")
    assert page.url.endswith(f"/model?id={model.id}")
    inert(page, dialogs, "BLESSED", "version 2", IMAGE)  # span 2's file, among the input files
    lineage = page.locator("svg.lineage")
    assert lineage.locator("g.node.execution").count() >= 6
    for label in (
        "Trainer",
        "Evaluator",
        "Pusher",
        "ExampleGen[span 1]",
        "ExampleGen[span 2]",
        f"Model #{model.id}",
    ):
        assert lineage.locator("g.node").filter(has_text=label).count() >= 1, label
    for label in ("examples[0]", "examples[1]", "model", "blessing", "baseline"):
        assert lineage.locator("g.edge").filter(has_text=label).count() >= 1, label
    assert lineage.locator("g.edge.baseline polyline").get_attribute("stroke-dasharray") == "5 3"
    assert SCRIPT in lineage.evaluate("svg => svg.textContent")  # an Examples node's hover text

    # A diff of two models chosen on the page.
    first = runs["first"].step("Trainer").outputs["model"]
    follow(page, "nav >> text=diff")
    page.select_option("select[name=a]", str(first.id))
    page.select_option("select[name=b]", str(model.id))
    follow(page, "text=compare")
    text = inert(page, dialogs, "BLESSED", "spans")
    assert re.search(r"[1-9]\d* difference\(s\)", text)
    assert page.locator("table.differences tr").count() >= 2

    # The impact of a span, typed in the form: the models built from it, the one serving marked.
    page.fill("nav input[name=ref]", "span:1")
    follow(page, "nav >> text=show")
    text = inert(page, dialogs, SCRIPT, "SERVING NOW")
    assert f"Model #{first.id}" in text and f"Model #{model.id}" in text
    follow(page, f"text=Model #{first.id}")
    assert page.url.endswith(f"/model?id={first.id}")
    inert(page, dialogs)


def test_the_command_serves_until_interrupted_and_exits_quietly(store):
    import signal
    import urllib.request

    spec, _ = store
    process = subprocess.Popen(
        [sys.executable, "runner.py", "--pipeline-root", os.path.dirname(spec), "ui", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "models") as response:
            assert response.status == 200 and "Models of history" in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and out == "" and err == ""
