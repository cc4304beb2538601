"""Directed graphs drawn as inline SVG: a model's lineage (artifacts and the executions that made
them) and a run's steps. igraph places them (`Graph.layout_sugiyama`: layers along the edges'
direction, crossings reduced, long edges routed through bend points); this module only scales
that layout to boxes and writes the SVG.

Every text that comes from the store (type names, components, spans, input keys, properties in a
node's hover text) is escaped here, as `pipeline.charts` does; links are built by the caller and
escaped as attributes. The result goes into a page as `Markup`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.lineage import walk
from pipeline.metadata import custom, state_name
from pipeline.text import shorten

LINE_CHARS = 30  # a label line longer than this is cut, the whole text on hover
STATE_COLOURS = {
    "COMPLETE": "#C8E6C9",
    "CACHED": "#E1E6EE",
    "FAILED": "#FFCDD2",
    "BLOCKED": "#FFAB91",
    "HELD_BACK": "#FFF0A8",
    "RUNNING": "#BBDEFB",
    "INTERRUPTED": "#E1BEE7",
}
ARTIFACT_COLOURS = {
    "Examples": "#E8F1FB",
    "ExampleStatistics": "#EEF6EC",
    "ExampleAnomalies": "#EEF6EC",
    "Schema": "#F3EEF9",
    "TransformGraph": "#F3EEF9",
    "Model": "#FFF1DC",
    "ModelEvaluation": "#FDF7E3",
    "ModelBlessing": "#FDF7E3",
    "PushedModel": "#FFE7D6",
    "InferenceResult": "#E8F7F5",
}
EXECUTION_FILL = "#DDE7F3"
BASELINE_COLOUR = "#C0392B"
RESOLVED_COLOUR = "#7F8C8D"


@dataclass(frozen=True)
class Style:
    """Sizes of a drawing: the font, a character's width and a line's height at that size, and
    the gap between boxes."""

    font_size: float = 11
    char_width: float = 6.2
    line_height: float = 14
    gap: float = 26


NORMAL, COMPACT = Style(), Style(font_size=9, char_width=5.1, line_height=11, gap=12)


@dataclass
class Node:
    """A box: label lines (the first in bold), a fill, an optional link and hover text; `shape`
    is `box` (an execution, a step) or `round` (an artifact)."""

    key: str
    lines: list[str]
    fill: str = "#FFFFFF"
    shape: str = "box"
    href: str = ""
    hover: str = ""
    css: str = ""  # a class name, for pages and tests to find the node


@dataclass
class Edge:
    source: str
    target: str
    label: str = ""
    colour: str = "#666666"
    dashed: bool = False
    css: str = ""


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def add(self, node: Node) -> Node:
        return self.nodes.setdefault(node.key, node)

    def connect(self, edge: Edge) -> None:
        if edge.source in self.nodes and edge.target in self.nodes and edge not in self.edges:
            self.edges.append(edge)


@dataclass
class Placed:
    """A laid-out graph in pixels: each node's box (centre x, centre y, width, height), each
    edge's points from its source's border to its target's, and the drawing's size."""

    boxes: dict[str, tuple[float, float, float, float]]
    routes: list[list[tuple[float, float]]]
    width: float
    height: float


def layout(graph: Graph, across: bool = False, style: Style = NORMAL) -> Placed:
    """igraph's Sugiyama layout of the graph, scaled so that no two boxes overlap: layers top to
    bottom (`across`: left to right), each layer's nodes spaced by the widest box."""
    import igraph

    keys = list(graph.nodes)
    index = {key: i for i, key in enumerate(keys)}
    sizes = {key: _size(graph.nodes[key], style) for key in keys}
    gap = style.gap
    g = igraph.Graph(
        n=len(keys), edges=[(index[e.source], index[e.target]) for e in graph.edges], directed=True
    )
    found = g.layout_sugiyama(hgap=1, vgap=1, maxiter=100)
    widest = max((w for w, _ in sizes.values()), default=0.0)
    tallest = max((h for _, h in sizes.values()), default=0.0)
    # Along the layers a step is the box's extent plus the gap; across them, the widest box's.
    step_in_layer, step_between = (
        (tallest + gap / 2, widest + gap * 1.6) if across else (widest + gap, tallest + gap * 1.4)
    )

    def point(position: float, layer: float) -> tuple[float, float]:
        a, b = position * step_in_layer, layer * step_between
        return (b, a) if across else (a, b)

    centres = {key: point(*found[index[key]][:2]) for key in keys}
    routes = []
    for number, edge in enumerate(graph.edges):
        bends = [point(x, y) for x, y in found.edge_routing[number]]
        start, end = centres[edge.source], centres[edge.target]
        first = _border(start, sizes[edge.source], bends[0] if bends else end, across)
        last = _border(end, sizes[edge.target], bends[-1] if bends else start, across)
        routes.append([first, *bends, last])
    # The drawing's extent: every box and every bend of a routed edge.
    xs = [x + d * sizes[k][0] / 2 for k, (x, _) in centres.items() for d in (-1, 1)]
    ys = [y + d * sizes[k][1] / 2 for k, (_, y) in centres.items() for d in (-1, 1)]
    xs += [x for route in routes for x, _ in route]
    ys += [y for route in routes for _, y in route]
    margin = 8.0
    shift_x, shift_y = margin - min(xs, default=0.0), margin - min(ys, default=0.0)
    boxes = {k: (x + shift_x, y + shift_y, *sizes[k]) for k, (x, y) in centres.items()}
    routes = [[(x + shift_x, y + shift_y) for x, y in route] for route in routes]
    width = max(xs, default=0.0) + shift_x + margin
    height = max(ys, default=0.0) + shift_y + margin
    return Placed(boxes, routes, width, height)


def _size(node: Node, style: Style) -> tuple[float, float]:
    longest = max((min(len(line), LINE_CHARS) for line in node.lines), default=4)
    return 14 + style.char_width * longest, 6 + style.line_height * max(len(node.lines), 1)


def _border(centre, size, towards, across: bool) -> tuple[float, float]:
    """Where an edge leaves (or enters) a box: the middle of the side facing `towards`."""
    (x, y), (w, h) = centre, size
    if across:
        return (x + w / 2, y) if towards[0] >= x else (x - w / 2, y)
    return (x, y + h / 2) if towards[1] >= y else (x, y - h / 2)


def svg(graph: Graph, placed: Placed, title: str = "", css: str = "graph", style: Style = NORMAL) -> str:
    """The laid-out graph as an inline SVG: arrows (labelled at their middle), then the boxes."""
    parts = [
        "<defs>",
        *(
            f"<marker id='arrow-{i}' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
            f"markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='{colour}'/></marker>"
            for i, colour in enumerate(_colours(graph))
        ),
        "</defs>",
    ]
    colours = _colours(graph)
    for edge, route in zip(graph.edges, placed.routes):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in route)
        dash = " stroke-dasharray='5 3'" if edge.dashed else ""
        parts.append(
            f"<g class='edge {_attr(edge.css)}' data-source='{_attr(edge.source)}' data-target='{_attr(edge.target)}'>"
            f"<polyline points='{points}' fill='none' stroke='{_attr(edge.colour)}' stroke-width='1.4'{dash} "
            f"marker-end='url(#arrow-{colours.index(edge.colour)})'/>"
        )
        if edge.label:
            x, y = _middle(route)
            parts.append(
                f"<text x='{x:.1f}' y='{y + 3:.1f}' text-anchor='middle' font-size='{style.font_size - 1:g}' fill='{_attr(edge.colour)}' "
                f"stroke='#fff' stroke-width='3' paint-order='stroke'>{_text(edge.label, LINE_CHARS)}</text>"
            )
        parts.append("</g>")
    for key, node in graph.nodes.items():
        x, y, w, h = placed.boxes[key]
        rounded = "rx='9'" if node.shape == "round" else "rx='2'"
        box = [
            f"<title>{html.escape(node.hover or ' '.join(node.lines))}</title>",
            f"<rect x='{x - w / 2:.1f}' y='{y - h / 2:.1f}' width='{w:.1f}' height='{h:.1f}' {rounded} "
            f"fill='{_attr(node.fill)}' stroke='#555'/>",
        ]
        for i, line in enumerate(node.lines):
            weight = " font-weight='bold'" if i == 0 else ""
            baseline = y - h / 2 + 3 + style.line_height * (i + 1) - 3
            box.append(
                f"<text x='{x:.1f}' y='{baseline:.1f}' text-anchor='middle'{weight}>{_text(line, LINE_CHARS)}</text>"
            )
        group = f"<g class='node {_attr(node.css)}' data-key='{_attr(key)}'>{''.join(box)}</g>"
        parts.append(f"<a href='{_attr(node.href)}'>{group}</a>" if node.href else group)
    heading = f"<text x='8' y='14' font-weight='bold'>{_text(title, 80)}</text>" if title else ""
    top = 20 if title else 0
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='{_attr(css)}' width='{placed.width:.0f}' "
        f"height='{placed.height + top:.0f}' viewBox='0 {-top} {placed.width:.0f} {placed.height + top:.0f}' "
        f"font-family='sans-serif' font-size='{style.font_size:g}' role='img'>{heading}{''.join(parts)}</svg>"
    )


def draw(
    graph: Graph, across: bool = False, title: str = "", css: str = "graph", style: Style = NORMAL
) -> str:
    """`layout` then `svg`; an empty graph draws a line saying so."""
    if not graph.nodes:
        return (
            "<svg xmlns='http://www.w3.org/2000/svg' width='200' height='20' font-family='sans-serif' "
            "font-size='11'><text x='4' y='14'>nothing to draw</text></svg>"
        )
    return svg(graph, layout(graph, across, style), title, css, style)


def _colours(graph: Graph) -> list[str]:
    return sorted({e.colour for e in graph.edges})


def _middle(route: list[tuple[float, float]]) -> tuple[float, float]:
    """The midpoint of the route's middle segment (of a straight edge, its midpoint)."""
    i = (len(route) - 1) // 2
    (x1, y1), (x2, y2) = route[i], route[i + 1]
    return (x1 + x2) / 2, (y1 + y2) / 2


def _text(text: str, limit: int) -> str:
    """Escaped text, cut at `limit` characters (the whole on hover)."""
    text = str(text)
    if len(text) <= limit:
        return html.escape(text)
    return f"<title>{html.escape(text)}</title>{html.escape(text[: limit - 1])}…"


def _attr(value: str) -> str:
    return html.escape(str(value), quote=True)


# ---- the graphs of the pages ------------------------------------------------------------------------


def artifact_lines(artifact) -> list[str]:
    """`Examples #12`, then what tells it apart: its span, a blessing's verdict, a push's version;
    its state when not LIVE (DELETED by gc)."""
    lines = [f"{artifact.TYPE_NAME} #{artifact.id}"]
    span = artifact.get("span_date") or artifact.get("span")
    if artifact.TYPE_NAME == "ModelBlessing":
        lines.append("BLESSED" if artifact.get("blessed") else "NOT BLESSED")
    elif artifact.TYPE_NAME == "PushedModel":
        lines.append(
            f"version {artifact.pushed_version()}"
            if artifact.get("pushed")
            else str(artifact.get("action") or "not pushed")
        )
    elif artifact.TYPE_NAME == "Model" and artifact.get("spans"):
        lines.append(
            f"spans {', '.join(map(str, json.loads(artifact.get('span_dates') or artifact.get('spans'))))}"
        )
    elif span is not None and span != "":
        lines.append(f"span {span}")
    if artifact.state != "LIVE":
        lines.append(artifact.state)
    return lines


def artifact_hover(artifact) -> str:
    """Every property of the artifact, one per line (cut), and its URI: a node's hover text."""
    hidden = {"fingerprint", "signatures"}
    shown = {
        **artifact.properties,
        **{k: v for k, v in artifact.custom_properties.items() if k not in hidden},
    }
    lines = [f"{artifact.TYPE_NAME} #{artifact.id} {artifact.state}", artifact.uri]
    lines += [f"{k}: {shorten(v, 160)}" for k, v in sorted(shown.items())]
    return "\n".join(lines)


def lineage_graph(tree, link: Callable[[Any], str], run_link: Callable[[str], str]) -> Graph:
    """A lineage tree (`pipeline.lineage.LineageNode`) as a graph: a round node per artifact, a
    box per execution (component, its item, execution id), an edge from each input artifact to
    the execution labelled with its input key, from the execution to what it made, and from raw
    examples to the validation that checked them. An input the step found in the store (the
    Evaluator's baseline model, the previous span's statistics) is a dashed edge of its own: the
    baseline in red. `link(artifact)` and `run_link(run_id)` give the nodes' links."""
    graph = Graph()
    for node, _ in walk(tree):
        artifact = node.artifact
        graph.add(_artifact_node(artifact, link))
        for check in node.checks:
            graph.add(_artifact_node(check, link))
            graph.connect(
                Edge(
                    f"a{artifact.stored_id}",
                    f"a{check.stored_id}",
                    f"checked: {check.get('decision')}",
                    RESOLVED_COLOUR,
                    True,
                    "check",
                )
            )
        execution = node.execution
        if execution is None:
            continue
        item = custom(execution, "map_label", "")
        graph.add(
            Node(
                f"e{execution.id}",
                [node.component + (f"[{item}]" if item else ""), f"execution #{execution.id}"],
                EXECUTION_FILL,
                "box",
                run_link(custom(execution, "run_id", "")) if custom(execution, "run_id") else "",
                f"{node.component} execution {execution.id} ({state_name(execution)}), run {custom(execution, 'run_id', '?')}",
                "execution",
            )
        )
        resolved = set(json.loads(custom(execution, "resolver_inputs", "[]") or "[]"))
        for parent in node.inputs.values():
            graph.add(_artifact_node(parent.artifact, link))
        graph.connect(Edge(f"e{execution.id}", f"a{artifact.stored_id}", "", css="output"))
        for key, parent in node.inputs.items():
            source = f"a{parent.artifact.stored_id}"
            if key.split("[")[0] in resolved:
                baseline = key == "baseline"
                colour = BASELINE_COLOUR if baseline else RESOLVED_COLOUR
                graph.connect(
                    Edge(
                        source, f"e{execution.id}", key, colour, True, "baseline" if baseline else "resolved"
                    )
                )
            else:
                graph.connect(Edge(source, f"e{execution.id}", key, css="input"))
    return graph


def _artifact_node(artifact, link: Callable[[Any], str]) -> Node:
    return Node(
        f"a{artifact.stored_id}",
        artifact_lines(artifact),
        ARTIFACT_COLOURS.get(artifact.TYPE_NAME, "#F4F4F4"),
        "round",
        link(artifact),
        artifact_hover(artifact),
        f"artifact {artifact.TYPE_NAME}",
    )


def step_state(execution) -> str:
    """A step's state as a run shows it: BLOCKED (a gate stopped the run) or HELD_BACK (its result
    kept from taking effect) where the execution says so, else MLMD's state."""
    state = state_name(execution)
    if state in ("COMPLETE", "CACHED") and custom(execution, "blocked"):
        return "BLOCKED"
    if state in ("COMPLETE", "CACHED") and custom(execution, "held_back"):
        return "HELD_BACK"
    return state


def run_graph(
    executions: list, events: list, link: Callable[[Any], str] = lambda e: "", compact: bool = False
) -> Graph:
    """A run's steps as a graph: a box per execution (its node, item, state by colour, seconds),
    an edge from the step that output an artifact (made or reused) to each step of the run that
    took it as an input, labelled with the input key unless `compact`; an input found in the
    store (the previous span's statistics) dashed."""
    graph = Graph()
    made_by: dict[int, int] = {}
    for event in events:
        if event.type == 4:  # OUTPUT
            made_by.setdefault(event.artifact_id, event.execution_id)
    for execution in executions:
        item = custom(execution, "map_label", "")
        state = step_state(execution)
        seconds = custom(execution, "seconds")
        if seconds is None:
            seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        name = f"{custom(execution, 'node_id', '?')}" + (f"[{item}]" if item else "")
        graph.add(
            Node(
                f"e{execution.id}",
                [name, f"{state} {seconds:.1f} s"],
                STATE_COLOURS.get(state, "#F4F4F4"),
                "box",
                link(execution),
                f"{name}: {state} in {seconds:.1f} s, execution {execution.id}",
                f"step {state.lower()}",
            )
        )
    by_id = {e.id: e for e in executions}
    for event in events:
        if event.type != 3 or event.artifact_id not in made_by:  # INPUT from a step of the run
            continue
        source, target = made_by[event.artifact_id], event.execution_id
        if source == target or target not in by_id:
            continue
        key = event.path.steps[0].key if event.path.steps else ""
        resolved = key in json.loads(custom(by_id[target], "resolver_inputs", "[]") or "[]")
        graph.connect(
            Edge(
                f"e{source}",
                f"e{target}",
                "" if compact else key,
                RESOLVED_COLOUR if resolved else "#666666",
                resolved,
            )
        )
    return graph
