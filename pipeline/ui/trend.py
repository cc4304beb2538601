"""A metric across a pipeline's models, oldest first, as an inline SVG: a grey line through every
evaluated model, and a marker per model whose shape and colour say whether it was blessed (a
green disc), not blessed (a red cross) or served now (a ring around it); a removed model's marker
is hollow. Each marker links to the model's page and names it on hover. Text is escaped with
`pipeline.charts.label`, numbers written with `pipeline.charts.number`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

from pipeline.charts import FONT, GREY, label, number

BLESSED, NOT_BLESSED, SERVING = "#2E7D32", "#C62828", "#1565C0"


def trend(
    points: Sequence[tuple[str, float | None, bool | None, bool, bool, str]],
    metric: str,
    width: float = 640,
    height: float = 240,
) -> str:
    """`points`: per model, oldest first, (name, value, blessed (None: not evaluated), serving,
    deleted, link). Models without the metric are left out of the line and drawn nowhere."""
    left, top, right, bottom = 56, 34, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [(i, p, float(p[1])) for i, p in enumerate(points) if p[1] is not None and math.isfinite(p[1])]
    if not known:
        return (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='40' {FONT}>"
            f"{label(f'no model has {metric}', 4, 24, anchor='start', limit=80)}</svg>"
        )
    values = [value for _, _, value in known]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 0.01
    low, high = low - pad, high + pad
    count = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return left + (i / count if len(points) > 1 else 0.5) * plot_w

    def y(value: float) -> float:
        return top + (1 - (value - low) / (high - low)) * plot_h

    parts = [
        f"<rect x='{left}' y='{top}' width='{plot_w:.1f}' height='{plot_h:.1f}' fill='none' stroke='#888'/>"
    ]
    line = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, _, value in known)
    parts.append(f"<polyline points='{line}' fill='none' stroke='{GREY}' stroke-width='1.5'/>")
    for i, (name, _, blessed, serving, deleted, link), value in known:
        cx, cy = x(i), y(value)
        verdict = "not evaluated" if blessed is None else ("blessed" if blessed else "not blessed")
        hover = (
            f"{name}: {metric} {number(value)}, {verdict}"
            + (", serving" if serving else "")
            + (", removed by gc" if deleted else "")
        )
        parts.append(
            f"<a href='{html.escape(link, quote=True)}'><g class='marker {verdict.replace(' ', '-')}'>"
        )
        parts.append(f"<title>{html.escape(hover)}</title>{_marker(cx, cy, blessed, deleted)}")
        if serving:
            parts.append(
                f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='8' fill='none' stroke='{SERVING}' stroke-width='2'/>"
            )
        parts.append("</g></a>")
    for fraction in (0, 0.5, 1):
        parts.append(
            label(number(low + fraction * (high - low)), left - 4, top + (1 - fraction) * plot_h + 3)
        )
    first, last = points[0][0], points[-1][0]
    parts.append(label(first, left, height - 8, anchor="start"))
    parts.append(label(last, left + plot_w, height - 8, anchor="end"))
    parts.append(
        label(f"{metric}, oldest model first", left + plot_w / 2, height - 8, anchor="middle", limit=50)
    )
    parts.append(_legend(left, 16))
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='trend' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}' {FONT} role='img'>{''.join(parts)}</svg>"
    )


def _marker(cx: float, cy: float, blessed: bool | None, deleted: bool) -> str:
    if blessed:
        fill = "#fff" if deleted else BLESSED
        return f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='4.5' fill='{fill}' stroke='{BLESSED}' stroke-width='1.5'/>"
    if blessed is False:
        d = 4.0
        return (
            f"<path d='M{cx - d:.1f},{cy - d:.1f} L{cx + d:.1f},{cy + d:.1f} M{cx - d:.1f},{cy + d:.1f} "
            f"L{cx + d:.1f},{cy - d:.1f}' stroke='{NOT_BLESSED}' stroke-width='{1.2 if deleted else 2.2}'/>"
        )
    return f"<rect x='{cx - 3.5:.1f}' y='{cy - 3.5:.1f}' width='7' height='7' fill='#fff' stroke='{GREY}' stroke-width='1.5'/>"


def _legend(x: float, y: float) -> str:
    entries: list[tuple[str, Callable[[float, float], str]]] = [
        ("blessed", lambda cx, cy: _marker(cx, cy, True, False)),
        ("not blessed", lambda cx, cy: _marker(cx, cy, False, False)),
        ("not evaluated", lambda cx, cy: _marker(cx, cy, None, False)),
        (
            "serving now",
            lambda cx, cy: (
                f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='6' fill='none' stroke='{SERVING}' stroke-width='2'/>"
            ),
        ),
        ("hollow: removed by gc", lambda cx, cy: _marker(cx, cy, True, True)),
    ]
    parts = ["<g class='legend'>"]
    for name, draw in entries:
        parts.append(draw(x + 5, y - 4))
        parts.append(label(name, x + 14, y, anchor="start", limit=30))
        x += 30 + 5.6 * len(name)
    parts.append("</g>")
    return "".join(parts)
