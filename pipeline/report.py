"""The run report: one self-contained HTML page per run, beside the run's artifacts.

It shows every step (status, duration, execution), each output artifact's properties (span, row
counts, blessing reason, pushed version, ...), the pages components wrote (statistics, training
curves, evaluation) inlined, and the lineage tree of the run's last output. A small script counts
the charts (inline SVG, or images) the browser has drawn with a non-empty extent into
`#charts-rendered`, so a headless browser can check them.
"""

from __future__ import annotations

import os
import re

from pipeline import pages
from pipeline.artifacts import Artifact
from pipeline.text import shorten

REPORTS_DIR = "reports"
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


def write_run_report(result, pipeline_name: str, root: str, lineage_lines: list[str]) -> str:
    """Writes `<root>/reports/<run_id>.html` and returns its path."""
    inlined = []
    for step in result.steps:
        for artifact in step.outputs.values():
            page = artifact.custom_properties.get("page")
            path = os.path.join(artifact.uri, page) if page else None
            if path and os.path.exists(path):
                with open(path) as f:
                    content = f.read()
                body = _BODY.search(content)
                inlined.append(
                    {
                        "step": step.node_id,
                        "file": page,
                        # Our own page, escaped when it was rendered.
                        "body": pages.Markup(_demote_headings(body.group(1) if body else content)),
                    }
                )
    return _write(
        root,
        result,
        pipeline_name,
        "report.html",
        evaluation=_evaluation_summary(result),
        problems=[str(result.error)] if result.error else [f"{n}: {r}" for n, r in result.held_back],
        steps=[
            {
                "node_id": s.node_id,
                "status": s.status,
                "execution": "" if s.execution_id is None else s.execution_id,
                "seconds": f"{s.seconds:.1f}",
                "note": (s.held_back or s.note).splitlines()[0] if s.held_back or s.note else "",
            }
            for s in result.steps
        ],
        outputs=[
            {
                "name": f"{step.node_id}.{key}",
                "kind": artifact.TYPE_NAME,
                "id": artifact.id,
                "properties": _properties(artifact),
            }
            for step in result.steps
            for key, artifact in step.outputs.items()
        ],
        pages=inlined,
        lineage="\n".join(lineage_lines),
    )


def write_pointer_report(result, pipeline_name: str, root: str, full_report: str) -> str:
    """A few lines for a run that reused every step: its status and a link to the last full report
    (a cron job that finds nothing new every half hour would otherwise pile up copies)."""
    directory = os.path.join(root, REPORTS_DIR)
    link = os.path.relpath(full_report, directory)
    return _write(root, result, pipeline_name, "pointer.html", link=link, held_back=result.held_back)


def _write(root: str, result, pipeline_name: str, template: str, **values) -> str:
    """`<root>/reports/<run_id>.html` from `template`, with the run's id, status and time; its path."""
    directory = os.path.join(root, REPORTS_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{result.run_id}.html")
    pages.write(
        path,
        template,
        run_id=result.run_id,
        pipeline_name=pipeline_name,
        status=result.status,
        seconds=f"{result.seconds:.1f}",
        **values,
    )
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


def _properties(artifact: Artifact) -> list[tuple[str, str]]:
    shown = {**artifact.properties, **artifact.custom_properties}
    hidden = {"fingerprint", "page", "column_types", "signatures", "input_pattern"}
    return [(k, shorten(v, 300)) for k, v in sorted(shown.items()) if k not in hidden]


def _demote_headings(body: str) -> str:
    """Component pages start at <h1>; inside the report they sit one level lower."""
    for level in (3, 2, 1):
        body = re.sub(rf"<(/?)h{level}\b", rf"<\1h{level + 1}", body)
    return body
