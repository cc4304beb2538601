"""The history browser's Flask application: read-only pages over a metadata store.

    /                                 the store's pipelines (one: its runs)
    /runs?pipeline=P&limit=N&before=R runs, newest first, idle ones folded, each with its steps' graph
    /run?id=R                         a run: its steps, their outputs, links to their pages and the report
    /models?pipeline=P&metric=M       models, newest first, a metric's trend, blessings, push history
    /model?id=N                       a model: its facts and its lineage drawn as a graph
    /impact?ref=REF&pipeline=P        everything built from a span (span:N, span:YYYY-MM-DD), an artifact, a CSV
    /diff?pipeline=P&a=N&b=M          two models: their headlines and every fact that differs
    /artifacts/<id>/<page>            the page an artifact names (its `page` in its URI), nothing else
    /reports/<run id>.html            a run's report, as the store names it

Pages are Jinja2 templates under `pipeline/templates/ui/`, rendered with autoescaping on for
every template and undefined values as errors, so nothing the store holds reaches a page as
markup; the graphs and charts are SVG built by `pipeline.ui.graph` and `pipeline.ui.trend`, which
escape their own text. Every response forbids scripts (Content-Security-Policy) and the files
served from the store are sandboxed. MLMD's client is not shared across threads: requests take
one lock around the store.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from pipeline.history import HEADLINES, History, folded, spans_text
from pipeline.metadata import MetadataStore
from pipeline.text import shorten
from pipeline.ui import graph, queries, trend

PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# The files runs wrote (reports, statistics, training and evaluation pages) are shown as they
# are, in a sandbox: no script, no form, an origin of their own.
FILE_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
DEFAULT_RUNS, MAX_RUNS = 50, 500
HIDDEN_PROPERTIES = {"fingerprint", "signatures", "page"}


def create_app(store_spec: str | Any, pipeline: str | None = None):
    """The Flask app over the store at `store_spec` (a sqlite path or a server URL, opened
    read-only; or an open `MetadataStore`). `pipeline` is the one shown by default when the store
    holds several. LookupError when there is no store there."""
    import flask
    import jinja2

    from pipeline.pages import TEMPLATES

    if isinstance(store_spec, str):
        from pipeline.metadata import connection_config

        config = connection_config(store_spec, create=False)
        if config.WhichOneof("config") == "sqlite" and not os.path.exists(config.sqlite.filename_uri):
            raise LookupError(f"no runs recorded in {store_spec}")
        store = MetadataStore(store_spec, create=False, read_only=True)
    else:
        store = store_spec
    history = History(store)
    lock = threading.Lock()

    app = flask.Flask(__name__, template_folder=TEMPLATES)
    app.jinja_options = {
        **flask.Flask.jinja_options,
        "autoescape": True,  # every template, whatever its name
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    app.jinja_env.globals.update(when=_when, seconds_text=_seconds, spans_text=spans_text, number=_number)

    @app.before_request
    def take_store() -> None:
        lock.acquire()

    @app.teardown_request
    def release_store(error) -> None:
        lock.release()

    @app.after_request
    def policy(response):
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.errorhandler(LookupError)
    def not_found(error):
        return render("ui/error.html", title="Not found", message=str(error).strip("'\"")), 404

    @app.errorhandler(ValueError)
    def bad_request(error):
        return render("ui/error.html", title="Bad request", message=str(error)), 400

    def pipelines() -> list[str]:
        return history.pipelines()

    def chosen(name: str | None) -> str:
        """The pipeline a page is about: the one named, else the default, else the only one."""
        names = pipelines()
        if name:
            if name not in names:
                raise LookupError(
                    f"no pipeline {name!r} in {store.name} (pipelines: {', '.join(names) or 'none'})"
                )
            return name
        if pipeline and pipeline in names:
            return pipeline
        if len(names) == 1:
            return names[0]
        raise LookupError(f"{store.name} holds pipelines {', '.join(names) or 'none'}: choose one")

    def render(template: str, **values):
        if values.get("pipeline") is None:  # the nav's pipeline: the default, if there is one
            names = pipelines()
            values["pipeline"] = pipeline if pipeline in names else (names[0] if len(names) == 1 else None)
        return flask.render_template(template, store_name=store.name, **values)

    @app.get("/")
    def index():
        names = pipelines()
        if len(names) == 1:
            return flask.redirect(flask.url_for("runs_list", pipeline=names[0]))
        return render("ui/index.html", title="Pipelines", names=names)

    @app.get("/runs")
    def runs_list():
        name = chosen(flask.request.args.get("pipeline"))
        limit = max(1, min(_int_arg("limit", DEFAULT_RUNS), MAX_RUNS))
        page = queries.runs_page(store, name, limit, flask.request.args.get("before") or None)
        entries = folded(page.records)
        shown = [e for e in entries if not isinstance(e, list)]
        ids = [step.execution_id for record in shown for step in record.steps]
        executions, events = queries.executions_and_events(store, ids)
        rows = []
        for entry in entries:
            if isinstance(entry, list):
                rows.append({"group": entry})
                continue
            mine = [executions[s.execution_id] for s in entry.steps if s.execution_id in executions]
            ids_of_run = {e.id for e in mine}
            dag = graph.run_graph(
                mine,
                [e for e in events if e.execution_id in ids_of_run],
                compact=True,
            )
            drawn = graph.draw(dag, across=True, css="run-dag", style=graph.COMPACT)
            rows.append({"record": entry, "note": shorten(_run_note(mine), 400), "dag": _markup(drawn)})
        roots = {r.root for r in page.records}
        return render(
            "ui/runs.html",
            title=f"Runs of {name}",
            pipeline=name,
            rows=rows,
            several_roots=len(roots) > 1,
            limit=limit,
            next_before=page.next_before,
            before=flask.request.args.get("before") or "",
            states=graph.STATE_COLOURS,
        )

    @app.get("/run")
    def run_page():
        run_id = _required("id")
        detail = queries.run_detail(store, run_id)
        record = detail.record
        steps = []
        executions = {e.id: e for e in detail.executions}
        for step in record.steps:
            execution = executions[step.execution_id]
            outputs = [
                {
                    "key": key,
                    "artifact": artifact,
                    "properties": _properties(artifact),
                    "page": _page_of(artifact),
                }
                for key, artifact in detail.outputs(execution.id)
            ]
            steps.append(
                {
                    "step": step,
                    "state": graph.step_state(execution),
                    "note": _step_note(execution) or step.note,
                    "outputs": outputs,
                }
            )
        dag = graph.run_graph(detail.executions, detail.events)
        report = record.report if record.report and os.path.isfile(record.report) else ""
        return render(
            "ui/run.html",
            title=f"Run {record.run_id}",
            pipeline=record.pipeline,
            record=record,
            steps=steps,
            dag=_markup(graph.draw(dag, across=True, css="run-dag")),
            report=os.path.basename(report) if report else "",
        )

    @app.get("/models")
    def models_list():
        name = chosen(flask.request.args.get("pipeline"))
        records = history.models(name)
        known = sorted(
            {m for r in records for m in r.metrics}
            | {m for m in HEADLINES if any(r.metric(m) is not None for r in records)}
        )
        metric = flask.request.args.get("metric") or next(
            (m for m in HEADLINES if any(r.metric(m) is not None for r in records)),
            known[0] if known else "accuracy",
        )
        oldest_first = list(reversed(records))
        chart = trend.trend(
            [
                (
                    f"model #{r.model.id}",
                    r.metric(metric),
                    r.blessed,
                    r.serving,
                    r.deleted,
                    flask.url_for("model_page", id=r.model.id),
                )
                for r in oldest_first
            ],
            metric,
            width=max(640, min(1300, 100 + 10 * len(records))),
        )
        return render(
            "ui/models.html",
            title=f"Models of {name}",
            pipeline=name,
            records=records,
            metric=metric,
            metrics=known,
            chart=_markup(chart),
            pushes=history.pushes(name),
        )

    @app.get("/model")
    def model_page():
        model_id = _int_arg("id", None)
        record = queries.model_record(store, model_id)
        start = queries.richest(record)
        facts = history.lineage(start)
        lineage = graph.lineage_graph(
            facts.tree, link=_artifact_link, run_link=lambda r: flask.url_for("run_page", id=r)
        )
        name = queries.pipeline_of_artifact(store, record.model)
        return render(
            "ui/model.html",
            title=f"Model #{record.model.id}",
            pipeline=name,
            record=record,
            start=start,
            facts=facts,
            metrics=record.metrics or facts.metrics,
            headline=(record.blessing.get("headline") if record.blessing is not None else "") or "",
            reason=(record.blessing.get("reason") if record.blessing is not None else "") or "",
            versions=record.versions,
            graph=_markup(graph.draw(lineage, css="lineage")),
            model_page=_page_of(record.model),
            parameters=[
                (step, json.dumps(params, sort_keys=True, default=str))
                for step, params in sorted(facts.parameters.items())
            ],
        )

    @app.get("/impact")
    def impact_page():
        ref = (flask.request.args.get("ref") or "").strip()
        name = chosen(flask.request.args.get("pipeline")) if flask.request.args.get("pipeline") else None
        if "'" in ref or "\\" in ref:  # it may end up inside an MLMD filter query's quotes
            raise ValueError(
                f"{ref!r}: a span, an artifact id, a URI or a CSV path without quotes or backslashes"
            )
        if not ref:
            return render("ui/impact.html", title="Impact", pipeline=name, ref="", impact=None)
        impact = history.downstream(ref, name)
        return render(
            "ui/impact.html",
            title=f"What was built from {ref}",
            pipeline=name,
            ref=ref,
            impact=_impact_view(impact),
        )

    @app.get("/diff")
    def diff_page():
        name = chosen(flask.request.args.get("pipeline"))
        choices = queries.model_choices(store, name)
        first, second = flask.request.args.get("a"), flask.request.args.get("b")
        result = None
        if first and second:
            a, b = (
                queries.model_record(store, _int(first, "a")),
                queries.model_record(store, _int(second, "b")),
            )
            result = {
                "models": [a, b],
                "differences": [
                    (d.fact, _shown(d.first), _shown(d.second)) for d in history.diff(a.model, b.model, name)
                ],
            }
        return render(
            "ui/diff.html",
            title=f"Diff of two models of {name}",
            pipeline=name,
            choices=[(m.id, _choice_label(m)) for m in choices],
            first=first or (str(choices[1].id) if len(choices) > 1 else ""),
            second=second or (str(choices[0].id) if choices else ""),
            result=result,
        )

    @app.get("/artifacts/<int:artifact_id>/<name>")
    def artifact_file(artifact_id: int, name: str):
        found = store.artifacts_by_id([artifact_id])
        if not found:
            raise LookupError(f"no artifact {artifact_id} in {store.name}")
        page = _page_of(found[0])
        if not page or page != name:
            raise LookupError(f"artifact {artifact_id} names no page {name!r}")
        return _file(os.path.join(found[0].uri, page))

    @app.get("/reports/<name>")
    def report_file(name: str):
        context = queries.run_context(store, name.removesuffix(".html"))
        report = custom_report(context)
        if not report or os.path.basename(report) != name:
            raise LookupError(f"run {name.removesuffix('.html')!r} has no report {name!r}")
        return _file(report)

    def _file(path: str):
        if not os.path.isfile(path):
            raise LookupError(f"{os.path.basename(path)} is no longer there (removed by gc?)")
        response = flask.send_file(path, mimetype="text/html", max_age=0)
        response.headers["Content-Security-Policy"] = FILE_POLICY
        return response

    def _artifact_link(artifact) -> str:
        if artifact.TYPE_NAME == "Model":
            return flask.url_for("model_page", id=artifact.id)
        return flask.url_for("impact_page", ref=str(artifact.id))

    def _impact_view(impact) -> dict:
        """The impact grouped as `format_impact` says it: the starts, the models with their
        blessings and pushes (serving marked), predictions, then every other artifact."""
        blessings = {b.get("current_model_id"): b for b in impact.of_type("ModelBlessing")}
        pushes: dict[int, list] = {}
        for push in impact.of_type("PushedModel"):
            execution = impact.executions.get(impact.made_by.get(push.stored_id, -1))
            took = impact.took.get(execution.id, []) if execution is not None else []
            model = next((i for i in took if impact.artifacts[i].TYPE_NAME == "Model"), None)
            if model is not None:
                pushes.setdefault(model, []).append(push)
        grouped = {"Model", "ModelBlessing", "PushedModel", "InferenceResult"}

        def item(artifact) -> dict:
            return {
                "artifact": artifact,
                "where": impact.where(artifact),
                "properties": _properties(artifact),
            }

        return {
            "starts": [item(a) for a in impact.starts],
            "models": [
                {
                    **item(model),
                    "blessing": blessings.get(model.id),
                    "pushes": [
                        {"push": p, "serving": p.stored_id in impact.serving}
                        for p in sorted(pushes.get(model.stored_id, []), key=lambda p: p.stored_id)
                    ],
                }
                for model in impact.of_type("Model")
            ],
            "predictions": [item(a) for a in impact.of_type("InferenceResult")],
            "others": [
                item(a)
                for a in sorted(impact.artifacts.values(), key=lambda a: a.stored_id)
                if a.stored_id not in impact.start_ids and a.TYPE_NAME not in grouped
            ],
        }

    def _int_arg(name: str, default: int | None) -> int:
        text = flask.request.args.get(name)
        if text is None or text == "":
            if default is None:
                raise ValueError(f"give {name}=N")
            return default
        return _int(text, name)

    def _required(name: str) -> str:
        value = flask.request.args.get(name)
        if not value:
            raise ValueError(f"give {name}=...")
        return value

    app.config["HISTORY"] = history
    return app


def custom_report(context) -> str:
    from pipeline.metadata import custom

    return custom(context, "report", "") or ""


def _int(text: str, name: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{name} must be a number, got {shorten(text, 40)!r}")
    return int(text)


def _markup(svg_text: str):
    from markupsafe import Markup

    return Markup(svg_text)  # built by pipeline.ui.graph / trend, which escape every text


def _page_of(artifact) -> str:
    """The page file an artifact names (`page`), if it is a plain file name in its URI."""
    page = artifact.custom_properties.get("page")
    if not isinstance(page, str) or not page or os.path.basename(page) != page or page.startswith("."):
        return ""
    return page


def _properties(artifact) -> list[tuple[str, str]]:
    shown = {**artifact.properties, **artifact.custom_properties}
    return [(k, shorten(v, 300)) for k, v in sorted(shown.items()) if k not in HIDDEN_PROPERTIES]


def _step_note(execution) -> str:
    """What a person should read about a step: why it stopped the run, held back, or failed."""
    from pipeline.metadata import custom

    return (
        custom(execution, "blocked", "")
        or custom(execution, "held_back", "")
        or custom(execution, "error", "")
    )


def _run_note(executions: list) -> str:
    """The first line of the first step that stopped or held back the run, or failed."""
    for execution in executions:
        note = _step_note(execution)
        if note:
            return note
    return ""


def _shown(value) -> str:
    return shorten(" / ".join(str(value).splitlines()) if value is not None else None, 300, "(none)")


def _choice_label(model) -> str:
    spans = model.get("span_dates") or model.get("spans")
    listed = spans_text(json.loads(spans)) if spans else "?"
    return f"model #{model.id} (spans {listed})" + ("" if model.state == "LIVE" else f", {model.state}")


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "?"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def _number(value) -> str:
    from pipeline.charts import number

    return number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def serve(
    store_spec: str, pipeline: str | None = None, host: str = "127.0.0.1", port: int = 8765, log=print
) -> int:
    """Serves the browser on host:port until interrupted (Ctrl-C, SIGTERM); 0 then."""
    import logging
    import signal

    from werkzeug.serving import make_server

    app = create_app(store_spec, pipeline)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, app, threaded=True)
    shown = f"[{host}]" if ":" in host else host
    log(
        f"history of {app.config['HISTORY'].store.name}: http://{shown}:{server.server_port}/  (Ctrl-C to stop)"
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: listening on {host}: anyone who can reach it reads the history (there is no login)")

    def stop(signum, frame):
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0
