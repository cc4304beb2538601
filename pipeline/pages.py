"""Every HTML page is a Jinja2 template under `pipeline/templates/` with autoescaping on: values
from data and files (feature names and values, class names, paths, messages) are escaped by the
engine; only the charts, inline SVG built by `pipeline.charts` (which escapes its own text), go in
as `Markup`. All pages extend `base.html` and share `style.css`; the run report inlines the others'
bodies."""

from __future__ import annotations

import functools
import os

from markupsafe import Markup

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

__all__ = ["Markup", "render", "write"]


@functools.cache
def _environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["groupby_kind"] = _by_kind
    return environment


def _by_kind(findings) -> list:
    """[((warning, kind), [findings])], in the order each first appears."""
    groups: dict = {}
    for finding in findings:
        groups.setdefault((finding.warning, finding.kind), []).append(finding)
    return list(groups.items())


def render(template: str, **values) -> str:
    """The page `template` (a file under pipeline/templates/) filled with `values`."""
    return _environment().get_template(template).render(**values)


def write(path: str, template: str, **values) -> None:
    """Renders `template` into `path`, whole or not at all (written aside, then renamed)."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        f.write(render(template, **values))
    os.replace(temporary, path)
