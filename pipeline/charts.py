"""Charts for the pages, as inline SVG strings: horizontal bars, histograms, curves, a heatmap
and a density grid. No plotting library: a page with two thousand features draws in well under a
second, scales linearly, and stays one self-contained file that any browser shows.

Every text that comes from data (a feature value, a class name) is escaped here; a label longer
than `LABEL_CHARS` is cut, with the whole text in an SVG <title> (shown on hover). Numbers on axes
are formatted with `number`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

LABEL_CHARS = 22
FONT = "font-family='sans-serif' font-size='10'"
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
GREY = "#BBBBBB"
_CHAR_WIDTH = 5.6  # px per character at font-size 10, for sizing the label column


def number(value: float) -> str:
    """A short, exact-enough text for an axis or a cell: integers as integers, else 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if float(value).is_integer() and abs(value) < 1e7:
        return str(int(value))
    return f"{value:.3g}"


def label(text: str, x: float, y: float, anchor: str = "end", limit: int = LABEL_CHARS) -> str:
    """An SVG text, cut at `limit` characters with the whole text on hover."""
    text = str(text)
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    hover = f"<title>{html.escape(text)}</title>" if shown != text else ""
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'>{hover}{html.escape(shown)}</text>"


def _svg(width: float, height: float, body: str, title: str = "") -> str:
    heading = label(title, 4, 12, anchor="start", limit=80) if title else ""
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}' {FONT} role='img'>"
        f"<g font-weight='bold'>{heading}</g>{body}</svg>"
    )


def _legend(entries: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for name, colour in entries:
        parts.append(f"<rect x='{x:.1f}' y='{y - 8:.1f}' width='10' height='10' fill='{colour}'/>")
        parts.append(label(name, x + 14, y, anchor="start", limit=30))
        x += 24 + _CHAR_WIDTH * min(len(name), 30)
    return "".join(parts)


def bars(
    rows: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], str]],
    title: str = "",
    x_max: float | None = None,
    lines: Sequence[tuple[float, str, str]] = (),
    value_text: bool = True,
    width: float = 420,
    percent: bool = False,
) -> str:
    """Horizontal bars: one group per row label, one bar per series (name, values, colour), and
    vertical `lines` (value, name, colour) drawn dashed across the chart with a legend entry.
    NaN values draw no bar. `x_max` fixes the scale (1 for rates), else the largest value;
    `percent` writes values (shares) as percentages."""

    def text(value: float) -> str:
        return f"{value:.1%}" if percent else number(value)

    band = 6 + 9 * len(series)
    left = 10 + _CHAR_WIDTH * min(max((len(str(r)) for r in rows), default=1), LABEL_CHARS)
    top = 32 if (len(series) > 1 or lines) else 20
    plot = width - left - 46
    height = top + band * len(rows) + 18
    finite = [v for _, values, _ in series for v in values if not math.isnan(v)] + [v for v, _, _ in lines]
    scale = x_max if x_max else (max(finite, default=0) or 1)
    parts = []
    for i, row in enumerate(rows):
        y0 = top + i * band
        parts.append(label(row, left - 4, y0 + band / 2 + 3))
        for j, (_, values, colour) in enumerate(series):
            value = values[i]
            if math.isnan(value):
                continue
            y = y0 + 3 + 9 * j
            length = max(0.0, min(value, scale)) / scale * plot
            parts.append(
                f"<rect x='{left:.1f}' y='{y:.1f}' width='{length:.1f}' height='8' fill='{colour}'/>"
            )
            if value_text:
                parts.append(label(text(value), left + length + 3, y + 7, anchor="start"))
    axis_y = top + band * len(rows)
    parts.append(f"<line x1='{left:.1f}' y1='{top - 2}' x2='{left:.1f}' y2='{axis_y}' stroke='#888'/>")
    parts.append(label("0", left, axis_y + 12, anchor="middle"))
    parts.append(label(text(scale), left + plot, axis_y + 12, anchor="middle"))
    for value, _, colour in lines:
        x = left + max(0.0, min(value, scale)) / scale * plot
        parts.append(
            f"<line x1='{x:.1f}' y1='{top - 2}' x2='{x:.1f}' y2='{axis_y}' stroke='{colour}' "
            "stroke-dasharray='4 3' stroke-width='1.5'/>"
        )
    entries = [(name, colour) for name, _, colour in series] if len(series) > 1 else []
    entries += [(name, colour) for _, name, colour in lines]
    if entries:
        parts.append(_legend(entries, left, 26))
    return _svg(width, height, "".join(parts), title)


def histogram(
    series: Sequence[tuple[str, Sequence[tuple[float, float, float]], str]],
    title: str = "",
    width: float = 320,
    height: float = 150,
) -> str:
    """Histograms of one numeric feature on a shared x axis, each series (name, [(low, high,
    count)], colour) as shares of its own total, so a small split or span compares with a large
    one: the first filled, the others drawn as outlines over it."""
    buckets = [b for _, found, _ in series for b in found]
    if not buckets:
        return _svg(width, 40, label("no values", 4, 30, anchor="start"), title)
    low = min(b[0] for b in buckets)
    high = max(b[1] for b in buckets)
    span = (high - low) or 1.0
    left, top, bottom = 8, 30 if len(series) > 1 else 18, 16
    plot_w, plot_h = width - left - 8, height - top - bottom
    shares = []
    for _, found, _ in series:
        total = sum(b[2] for b in found) or 1
        shares.append([(b[0], b[1], b[2] / total) for b in found])
    tallest = max((s[2] for found in shares for s in found), default=0) or 1

    def x(value: float) -> float:
        return left + (value - low) / span * plot_w

    parts = []
    for k, (found, (_, _, colour)) in enumerate(zip(shares, series)):
        if k == 0:
            for b_low, b_high, share in found:
                h = share / tallest * plot_h
                w = max(x(b_high) - x(b_low), 1.0)
                parts.append(
                    f"<rect x='{x(b_low):.1f}' y='{top + plot_h - h:.1f}' width='{w:.1f}' "
                    f"height='{h:.1f}' fill='{colour}'/>"
                )
        else:
            points = []
            for b_low, b_high, share in found:
                y = top + plot_h - share / tallest * plot_h
                points += [f"{x(b_low):.1f},{y:.1f}", f"{max(x(b_high), x(b_low) + 1):.1f},{y:.1f}"]
            parts.append(
                f"<polyline points='{' '.join(points)}' fill='none' stroke='{colour}' stroke-width='1.5'/>"
            )
    parts.append(
        f"<line x1='{left}' y1='{top + plot_h:.1f}' x2='{left + plot_w}' y2='{top + plot_h:.1f}' stroke='#888'/>"
    )
    parts.append(label(number(low), left, height - 3, anchor="start"))
    parts.append(label(number(high), left + plot_w, height - 3, anchor="end"))
    if len(series) > 1:
        parts.append(_legend([(name, colour) for name, _, colour in series], left, 26))
    return _svg(width, height, "".join(parts), title)


def curves(
    series: Sequence[tuple[str, Sequence[float], Sequence[float], str]],
    title: str,
    x_name: str,
    y_name: str,
    diagonal: bool = False,
    size: float = 260,
) -> str:
    """Curves on the unit square (ROC, precision-recall): each series (name, xs, ys, colour) as a
    line; `diagonal` draws the chance line."""
    return lines(
        series,
        title,
        x_name,
        y_name,
        x_range=(0, 1),
        y_range=(0, 1),
        diagonal=diagonal,
        width=size,
        height=size,
    )


def lines(
    series: Sequence[tuple[str, Sequence[float], Sequence[float], str]],
    title: str,
    x_name: str,
    y_name: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    marks: Sequence[tuple[float, str, str]] = (),
    diagonal: bool = False,
    width: float = 380,
    height: float = 240,
    points: bool = False,
) -> str:
    """Lines on linear axes: each series (name, xs, ys, colour), None or NaN values left out;
    `marks` (x, name, colour) are dashed vertical lines with a legend entry; the ranges default
    to the data's; `points` also draws each point."""
    left, top, bottom, right = 46, 30, 30, 10
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [
        [
            (x, y)
            for x, y in zip(xs, ys)
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
        ]
        for _, xs, ys, _ in series
    ]
    every = [p for found in finite for p in found]
    x_low, x_high = x_range or (min((p[0] for p in every), default=0), max((p[0] for p in every), default=1))
    y_low, y_high = y_range or (min((p[1] for p in every), default=0), max((p[1] for p in every), default=1))
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def point(x: float, y: float) -> str:
        return f"{left + (x - x_low) / x_span * plot_w:.1f},{top + (1 - (y - y_low) / y_span) * plot_h:.1f}"

    parts = [
        f"<rect x='{left}' y='{top}' width='{plot_w:.1f}' height='{plot_h:.1f}' fill='none' stroke='#888'/>"
    ]
    if diagonal:
        parts.append(
            f"<polyline points='{point(x_low, y_low)} {point(x_high, y_high)}' stroke='{GREY}' "
            "stroke-dasharray='4 3' fill='none'/>"
        )
    for found, (_, _, _, colour) in zip(finite, series):
        parts.append(
            f"<polyline points='{' '.join(point(x, y) for x, y in found)}' fill='none' stroke='{colour}' "
            "stroke-width='1.8'/>"
        )
        if points:
            for x, y in found:
                cx, cy = point(x, y).split(",")
                parts.append(f"<circle cx='{cx}' cy='{cy}' r='2.5' fill='{colour}'/>")
    for x, _, colour in marks:
        parts.append(
            f"<polyline points='{point(x, y_low)} {point(x, y_high)}' stroke='{colour}' "
            "stroke-dasharray='4 3' stroke-width='1.5' fill='none'/>"
        )
    for fraction in (0, 0.5, 1):
        x, y = x_low + fraction * x_span, y_low + fraction * y_span
        parts.append(label(number(x), left + fraction * plot_w, top + plot_h + 12, anchor="middle"))
        parts.append(label(number(y), left - 4, top + (1 - fraction) * plot_h + 3))
    parts.append(label(x_name, left + plot_w / 2, height - 4, anchor="middle", limit=40))
    parts.append(
        f"<g transform='translate(10 {top + plot_h / 2:.1f}) rotate(-90)'>"
        f"{label(y_name, 0, 0, anchor='middle', limit=40)}</g>"
    )
    entries = [(name, colour) for name, _, _, colour in series] + [
        (name, colour) for _, name, colour in marks
    ]
    parts.append(_legend(entries, left, 26))
    return _svg(width, height, "".join(parts), title)


def heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str = "",
    row_name: str = "",
    column_name: str = "",
    cell: float = 34,
) -> str:
    """A grid of counts, shaded by each cell's share of its row (so a rare class's row reads as
    clearly as a common one's), with the count written in every cell."""
    n_rows, n_columns = len(row_labels), len(column_labels)
    # Wide enough for a column label of up to 10 characters.
    cell = max(cell, 8 + _CHAR_WIDTH * min(max((len(str(c)) for c in column_labels), default=1), 10))
    left = 14 + _CHAR_WIDTH * min(max((len(str(r)) for r in row_labels), default=1), LABEL_CHARS)
    top = 44
    notes = max(len(row_name), len(column_name))
    width, height = max(left + cell * n_columns + 10, 10 + _CHAR_WIDTH * notes), top + cell * n_rows + 20
    parts = [label(column_name, 4, 28, anchor="start", limit=60)] if column_name else []
    for j, name in enumerate(column_labels):
        parts.append(label(name, left + (j + 0.5) * cell, top - 4, anchor="middle", limit=10))
    for i, name in enumerate(row_labels):
        total = sum(matrix[i]) or 1
        parts.append(label(name, left - 4, top + (i + 0.5) * cell + 3))
        for j in range(n_columns):
            share = matrix[i][j] / total
            shade = round(255 - share * 190)
            fill = f"rgb({shade},{shade},255)" if i == j else f"rgb(255,{shade},{shade})"
            ink = "#fff" if share > 0.6 else "#222"
            x, y = left + j * cell, top + i * cell
            parts.append(
                f"<rect x='{x:.1f}' y='{y:.1f}' width='{cell}' height='{cell}' fill='{fill}' stroke='#fff'/>"
                f"<text x='{x + cell / 2:.1f}' y='{y + cell / 2 + 3:.1f}' text-anchor='middle' fill='{ink}'>"
                f"{number(matrix[i][j])}</text>"
            )
    if row_name:
        parts.append(label(row_name, 4, height - 6, anchor="start", limit=60))
    return _svg(width, height, "".join(parts), title)


def density(
    counts: Sequence[Sequence[float]],
    x_edges: Sequence[float],
    y_edges: Sequence[float],
    title: str,
    x_name: str,
    y_name: str,
    zero_line: bool = True,
    size: float = 300,
) -> str:
    """A 2-D histogram (`counts[i][j]`: x bucket i, y bucket j, edges given per axis) drawn as a
    grid whose darkness is the count (log-scaled, so a lone outlier still shows); the axes are
    labelled with bucket edges; `zero_line` marks y = 0."""
    nx, ny = len(x_edges) - 1, len(y_edges) - 1
    left, top, bottom, right = 56, 22, 34, 10
    plot_w, plot_h = size - left - right, size - top - bottom
    w, h = plot_w / max(nx, 1), plot_h / max(ny, 1)
    largest = max((c for row in counts for c in row), default=0)
    parts = [
        f"<rect x='{left}' y='{top}' width='{plot_w:.1f}' height='{plot_h:.1f}' fill='#fafafa' stroke='#888'/>"
    ]
    for i in range(nx):
        for j in range(ny):
            c = counts[i][j]
            if c <= 0:
                continue
            shade = math.log1p(c) / math.log1p(largest)
            parts.append(
                f"<rect x='{left + i * w:.1f}' y='{top + (ny - 1 - j) * h:.1f}' width='{w + 0.3:.1f}' "
                f"height='{h + 0.3:.1f}' fill='#4C72B0' fill-opacity='{0.15 + 0.85 * shade:.2f}'>"
                f"<title>{number(c)}</title></rect>"
            )
    for i in _ticks(nx):
        parts.append(label(number(x_edges[i]), left + i * w, top + plot_h + 12, anchor="middle"))
    for j in _ticks(ny):
        parts.append(label(number(y_edges[j]), left - 4, top + plot_h - j * h + 3))
    if zero_line and y_edges[0] < 0 < y_edges[-1]:
        j = next(k for k, edge in enumerate(y_edges) if edge > 0) - 1  # the bin holding 0
        y = top + plot_h - (j + (0 - y_edges[j]) / (y_edges[j + 1] - y_edges[j])) * h
        parts.append(
            f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w:.1f}' y2='{y:.1f}' stroke='#C44E52' "
            "stroke-dasharray='4 3'/>"
        )
    parts.append(label(x_name, left + plot_w / 2, size - 6, anchor="middle", limit=50))
    parts.append(
        f"<g transform='translate(10 {top + plot_h / 2:.1f}) rotate(-90)'>{label(y_name, 0, 0, anchor='middle', limit=40)}</g>"
    )
    return _svg(size, size, "".join(parts), title)


def _ticks(buckets: int, count: int = 5) -> list[int]:
    """Up to `count` evenly spread edge indexes of `buckets` buckets, both ends included."""
    if buckets <= 0:
        return [0]
    step = max(1, math.ceil(buckets / (count - 1)))
    return sorted(set(range(0, buckets, step)) | {buckets})
