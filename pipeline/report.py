"""The run report: one self-contained HTML page per run, beside the run's artifacts.

It shows every step (status, duration, execution), each output artifact's properties (span, row
counts, blessing reason, pushed version, ...), the pages components wrote (statistics, training
curves, evaluation) inlined, and the lineage tree of the run's last output. A small script counts
the charts (inline SVG, or images) the browser has drawn with a non-empty extent into
`#charts-rendered`, so a headless browser can check them.
"""

from __future__ import annotations

import html
import os
import re

from pipeline.artifacts import Artifact
from pipeline.pages import STYLE
from pipeline.text import shorten

REPORTS_DIR = "reports"
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


def write_run_report(result, pipeline_name: str, root: str, lineage_lines: list[str]) -> str:
    """Writes `<root>/reports/<run_id>.html` and returns its path."""
    sections = []
    for step in result.steps:
        for artifact in step.outputs.values():
            page = artifact.custom_properties.get("page")
            path = os.path.join(artifact.uri, page) if page else None
            if path and os.path.exists(path):
                with open(path) as f:
                    content = f.read()
                body = _BODY.search(content)
                sections.append(
                    f"<section class='page'><h2>{html.escape(step.node_id)}: {html.escape(page)}</h2>"
                    f"{_demote_headings(body.group(1) if body else content)}</section>"
                )
    status = result.status
    evaluation = _evaluation_summary(result)
    problems = [str(result.error)] if result.error else [f"{n}: {r}" for n, r in result.held_back]
    error = "".join(f"<p class='error'>{html.escape(p)}</p>" for p in problems)
    page = _PAGE.format(
        title=html.escape(f"Run {result.run_id} of {pipeline_name}"),
        status=status,
        seconds=f"{result.seconds:.1f}",
        evaluation=html.escape(evaluation),
        error=error,
        steps=_steps_table(result),
        outputs=_outputs_table(result),
        pages="".join(sections),
        lineage=html.escape("\n".join(lineage_lines)) or "(no output)",
        style=STYLE,
    )
    directory = os.path.join(root, REPORTS_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{result.run_id}.html")
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.write(page)
    os.replace(temporary, path)
    return path


def write_pointer_report(result, pipeline_name: str, root: str, full_report: str) -> str:
    """A few lines for a run that reused every step: its status and a link to the last full report
    (a cron job that finds nothing new every half hour would otherwise pile up copies)."""
    directory = os.path.join(root, REPORTS_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{result.run_id}.html")
    link = html.escape(os.path.relpath(full_report, directory))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Run {html.escape(result.run_id)} of {html.escape(pipeline_name)}</title></head><body>"
        f"<p>Run {html.escape(result.run_id)}: {result.status} in {result.seconds:.1f} s. Nothing new: every "
        f"step reused earlier outputs. The last full report: <a href='{link}'>{link}</a>.</p>"
        + "".join(f"<p class='error'>{html.escape(f'{n}: {r}')}</p>" for n, r in result.held_back)
        + "</body></html>\n"
    )
    with open(path + ".tmp", "w") as f:
        f.write(page)
    os.replace(path + ".tmp", path)
    return path


def _evaluation_summary(result) -> str:
    """ " Model 7 BLESSED: accuracy on 38 examples: candidate 0.97, ... trivial baseline 0.44." for
    the run's evaluation, or "" without one."""
    for step in result.steps:
        for artifact in step.outputs.values():
            headline = artifact.custom_properties.get("headline")
            if artifact.TYPE_NAME == "ModelBlessing" and headline:
                verdict = "BLESSED" if artifact.custom_properties.get("blessed") else "NOT BLESSED"
                model = artifact.custom_properties.get("current_model_id")
                return f" Model {model} {verdict}: {headline}."
    return ""


def _steps_table(result) -> str:
    rows = "".join(
        f"<tr class='{s.status.lower()}'><td>{html.escape(s.node_id)}</td><td>{s.status}</td>"
        f"<td>{'' if s.execution_id is None else s.execution_id}</td><td>{s.seconds:.1f}</td>"
        f"<td>{html.escape((s.held_back or s.note).splitlines()[0] if s.held_back or s.note else '')}</td></tr>"
        for s in result.steps
    )
    return f"<table><tr><th>step</th><th>status</th><th>execution</th><th>seconds</th><th>note</th></tr>{rows}</table>"


def _outputs_table(result) -> str:
    rows = []
    for step in result.steps:
        for key, artifact in step.outputs.items():
            rows.append(
                f"<tr><td>{html.escape(step.node_id)}.{html.escape(key)}</td>"
                f"<td>{html.escape(artifact.TYPE_NAME)} #{artifact.id}</td>"
                f"<td>{_properties(artifact)}</td></tr>"
            )
    return "<table><tr><th>output</th><th>artifact</th><th>properties</th></tr>" + "".join(rows) + "</table>"


def _properties(artifact: Artifact) -> str:
    shown = {**artifact.properties, **artifact.custom_properties}
    hidden = {"fingerprint", "page", "column_types", "signatures", "input_pattern"}
    items = [
        f"<b>{html.escape(k)}</b> {html.escape(shorten(v, 300))}"
        for k, v in sorted(shown.items())
        if k not in hidden
    ]
    return "<br>".join(items)


def _demote_headings(body: str) -> str:
    """Component pages start at <h1>; inside the report they sit one level lower."""
    for level in (3, 2, 1):
        body = re.sub(rf"<(/?)h{level}\b", rf"<\1h{level + 1}", body)
    return body


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body><h1>{title}</h1>
<p>Status <b>{status}</b> in {seconds} s.{evaluation} Charts rendered: <span id="charts-rendered">not checked</span></p>
{error}
<h2>Steps</h2>{steps}
<h2>Outputs</h2>{outputs}
{pages}
<h2>Lineage of the run's last output</h2><pre>{lineage}</pre>
<script>
window.addEventListener("load", function () {{
  var charts = Array.prototype.slice.call(document.querySelectorAll("svg, img"));
  var ok = charts.filter(function (c) {{
    if (c.tagName.toLowerCase() === "img") {{ return c.complete && c.naturalWidth > 0; }}
    var box = c.getBBox();
    return box.width > 0 && box.height > 0;
  }}).length;
  document.getElementById("charts-rendered").textContent = ok + " of " + charts.length;
}});
</script>
</body></html>
"""
