"""Resolver inputs: artifacts a step takes from the store rather than from an upstream node.

TFX models these as separate resolver nodes (`LatestBlessedModelStrategy`, span ranges); here a
component declares them on an input, `Annotated[Model | None, LatestBlessedModel(exclude="model")]`,
and the runner resolves them in the orchestrating process before the cache lookup. The artifact
found is recorded as an INPUT event of the execution, so lineage, `diff` and `gc` see it, and its
id is part of the cache key (a newly blessed model means a new evaluation) unless the resolver
says it only speeds the step up (`in_cache_key = False`: Transform's analyzer cache).

A resolver gets a `Query` (the store, the pipeline, the node, the root and the node's
parameters) and the step's other, already resolved inputs; it returns an artifact or None. It
runs where the step is orchestrated: components never open the store themselves. Lineage shows a
resolver input as a leaf (the baseline model's history is its own, not the candidate's) unless
the resolver says `follows_lineage` (the model a batch scoring used: its history is the
predictions' history).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pipeline.artifacts import SERVING_DIR, Artifact, ModelBlessing


@dataclass(frozen=True)
class Query:
    """Where a resolver looks: the store, and the pipeline, node, root and parameters of the step."""

    store: Any  # a pipeline.metadata.MetadataStore
    pipeline_name: str
    node_id: str = ""
    root: str = ""
    params: Any = None
    kind: Any = Artifact  # the artifact type the input declares


class Resolver:
    """Finds one artifact in the store for a step about to run, or None."""

    in_cache_key = True  # False: the artifact changes how fast the step runs, not what it writes
    follows_lineage = False  # True: lineage goes on through the artifact's own history

    def resolve(self, query: Query, inputs: dict[str, Any]) -> Artifact | None:
        raise NotImplementedError


def latest_blessed_model(store, pipeline_name: str, exclude_id: int | None = None) -> Artifact | None:
    """The newest Model of the pipeline that a LIVE ModelBlessing blessed, whose files still
    exist, other than `exclude_id` (TFX's latest-blessed-model strategy)."""
    blessings = [
        *store.live_artifacts(ModelBlessing, pipeline_name, "custom_properties.blessed.int_value = 1"),
        # written by an earlier version, with `blessed` a declared property
        *store.live_artifacts(ModelBlessing, pipeline_name, "properties.blessed.int_value = 1"),
    ]
    ids = {b.get("current_model_id") for b in blessings} - {exclude_id, None}
    models = [
        m
        for m in store.artifacts_by_id(sorted(ids))
        if m.state == "LIVE" and os.path.isdir(os.path.join(m.uri, SERVING_DIR))
    ]
    return max(models, key=lambda m: m.id, default=None)


@dataclass(frozen=True)
class LatestBlessedModel(Resolver):
    """The newest Model of the pipeline that a LIVE ModelBlessing blessed, whose files still
    exist, other than the step's own input `exclude` (TFX's latest-blessed-model strategy)."""

    exclude: str = "model"

    def resolve(self, query, inputs):
        excluded = inputs.get(self.exclude)
        return latest_blessed_model(query.store, query.pipeline_name, excluded.id if excluded else None)

    def __str__(self) -> str:
        return "the latest blessed model"


@dataclass(frozen=True)
class PreviousSpan(Resolver):
    """The LIVE artifact of the same type as the step's input `of`, of the latest span before
    that input's span, in the pipeline (the previous span's statistics, for drift)."""

    of: str

    def resolve(self, query, inputs):
        current = inputs.get(self.of)
        if current is None:
            return None
        span = current.get("span", 0)
        earlier = query.store.live_artifacts(
            type(current), query.pipeline_name, f"properties.span.int_value < {span}"
        )
        return max(earlier, key=lambda a: (a.get("span"), a.id), default=None)

    def __str__(self) -> str:
        return f"the previous span's {self.of}"


@dataclass(frozen=True)
class OwnLatestOutput(Resolver):
    """The newest LIVE artifact this node wrote as its output `key` on this root (Transform's
    analyzer cache from its last execution). Not part of the cache key: it makes the step faster,
    not different."""

    key: str
    in_cache_key = False

    def resolve(self, query, inputs):
        from pipeline.launcher import output_uri

        prefix = os.path.dirname(output_uri(query.root, query.node_id, self.key, 0)) + os.sep
        found = [
            a
            for a in query.store.live_artifacts(query.kind, query.pipeline_name)
            if a.uri.startswith(prefix) and os.path.isdir(a.uri)
        ]
        return max(found, key=lambda a: a.id, default=None)

    def __str__(self) -> str:
        return f"this step's latest {self.key}"
