"""A pipeline: a DAG of nodes, validated as a whole before anything runs."""

from __future__ import annotations

import dataclasses
import graphlib
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.component import Node
from pipeline.errors import DefinitionError

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass
class Pipeline:
    """A named set of nodes. `validate()` (called by the runner) checks the whole graph.

    Definition errors: a duplicate or malformed node id, a required input left unconnected, an
    input fed by a node that is not in the pipeline, a cycle. Each message names the node and the fix.

    `pipeline_root` is where the pipeline's artifacts and metadata go unless the runner is told
    otherwise; `metadata`, its metadata store when not `<root>/metadata.sqlite` (a scoring
    pipeline names its training pipeline's, where it finds the model to score with); `source_file`
    is the file that defined the pipeline (set when it is loaded from one), which errors name;
    `retention` (a `pipeline.retention.Retention`), when given, is applied at the end of every run.
    """

    name: str
    nodes: list[Node]
    beam_args: list[str] = field(default_factory=list)
    pipeline_root: str | None = None
    metadata: str | None = None
    source_file: str | None = None
    retention: Any = None  # a pipeline.retention.Retention: applied after each run

    def override(self, **values: Any) -> list[str]:
        """Sets parameters on every node whose component declares them (such as `input_pattern`
        and `span` from the command line); returns the ids of the nodes changed. A parameter that
        no node declares is a DefinitionError."""
        changed = []
        for name, value in values.items():
            nodes = [
                n for n in self.nodes if name in {f.name for f in dataclasses.fields(n.component.parameters)}
            ]
            if not nodes:
                raise DefinitionError(f"no node of pipeline {self.name!r} takes parameter {name!r}")
            for node in nodes:
                node.params = node.component.with_params(node.id, node.params, {name: value})
                changed.append(node.id)
        return changed

    def validate(self) -> list[Node]:
        """Checks the graph and returns its nodes in an order where producers come first."""
        if not _ID.match(self.name):
            raise DefinitionError(f"pipeline name {self.name!r}: use letters, digits, '_', '-', '.'")
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            if not _ID.match(node.id):
                raise DefinitionError(f"node id {node.id!r}: use letters, digits, '_', '-', '.'")
            if node.id in by_id:
                raise DefinitionError(
                    f"two nodes are named {node.id!r}; give one of them another id, "
                    f"e.g. {node.component.name}(id='{node.id}2', ...)"
                )
            by_id[node.id] = node
        for node in self.nodes:
            for key, declared in node.component.inputs.items():
                channel = node.inputs.get(key)
                if not declared.wired:
                    continue  # found by the runner in the store (pipeline.resolvers)
                if channel is None:
                    if not declared.optional:
                        raise DefinitionError(
                            f"{node.id}: required input {key!r} ({declared.type.TYPE_NAME}) is not "
                            f"connected; pass {key}=<node>.outputs['...'] when creating it"
                        )
                elif by_id.get(channel.producer.id) is not channel.producer:
                    raise DefinitionError(
                        f"{node.id}: input {key!r} comes from {channel.producer.id}, which is not in "
                        f"pipeline {self.name!r}; add it to the pipeline's nodes"
                    )
        for node in self.nodes:
            node.after = []
        _wait_for_gates(self.nodes)
        order = _topological_order(self.nodes)
        for node in order:
            node.mapped = _runs_per_item(node)
        for node in self.nodes:
            if node.component.check is not None:
                node.component.check(node)
        return order

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def downstream_of(self, node_id: str) -> set[str]:
        """The ids of `node_id` and of every node that consumes, directly or through others, its
        outputs. An id that is not in the pipeline is a DefinitionError listing the ones that are."""
        if node_id not in {n.id for n in self.nodes}:
            raise DefinitionError(
                f"pipeline {self.name!r} has no step {node_id!r}; its steps: "
                + ", ".join(n.id for n in self.nodes)
            )
        found = {node_id}
        for node in _topological_order(self.nodes):
            if any(up.id in found for up in node.upstream):
                found.add(node.id)
        return found


def _wait_for_gates(nodes: list[Node]) -> None:
    """Makes every node that takes data a gate checks wait for that gate (`Node.after`): a node
    that shares an ancestor with the gate and is neither the gate nor one of its ancestors
    (Transform and what follows it wait for the ExampleValidator, which checks ExampleGen's
    examples, as a BulkInferrer does)."""

    def ancestors(node: Node) -> set[str]:
        found: set[str] = set()
        stack = [c.producer for c in node.inputs.values() if c is not None]
        while stack:
            up = stack.pop()
            if up.id not in found:
                found.add(up.id)
                stack.extend(c.producer for c in up.inputs.values() if c is not None)
        return found

    for gate in (n for n in nodes if n.component.gate):
        checked = ancestors(gate)
        for node in nodes:
            if node is not gate and node.id not in checked and ancestors(node) & checked:
                node.after.append(gate)


def _runs_per_item(node: Node) -> bool:
    """Whether `node` runs once per item: its component fans out with these parameters, or a
    single input of it is wired to a node that runs per item (its producers are decided first)."""
    fans_out = node.component.fan_out is not None and node.component.fan_out.applies(node.params)
    mapped = [
        (key, channel.producer.id)
        for key, channel in node.inputs.items()
        if channel is not None and channel.producer.mapped and not node.component.inputs[key].many
    ]
    if fans_out and mapped:
        raise DefinitionError(
            f"{node.id}: it runs once per item of its own parameters, and its input {mapped[0][0]!r} "
            f"comes once per item from {mapped[0][1]}; one or the other"
        )
    return fans_out or bool(mapped)


def _topological_order(nodes: list[Node]) -> list[Node]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for node in nodes:
        sorter.add(node.id, *(up.id for up in node.upstream))
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise DefinitionError(
            f"the pipeline has a cycle: {cycle}; a node cannot consume, directly or through "
            "others, its own output"
        ) from None
    # Among nodes that are ready, keep declaration order, so runs read the same every time.
    done: set[str] = set()
    order: list[Node] = []
    pending = list(nodes)
    while pending:
        ready = next(n for n in pending if all(up.id in done for up in n.upstream))
        order.append(ready)
        done.add(ready.id)
        pending.remove(ready)
    return order
