"""Resolver inputs: artifacts a step takes from the store rather than from an upstream node.

TFX models these as separate resolver nodes (`LatestBlessedModelStrategy`, span ranges); here a
component declares them on an input, `Input(Model, resolver=LatestBlessedModel(exclude="model"))`,
and the runner resolves them in the orchestrating process before the cache lookup. The artifact
found is recorded as an INPUT event of the execution, so lineage, `diff` and `gc` see it, and its
id is part of the cache key (a newly blessed model means a new evaluation).

A resolver gets the store, the pipeline's name and the step's other (already resolved) inputs;
it returns an artifact or None. It runs where the step is orchestrated: components never open
the store themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.artifacts import SERVING_DIR, Artifact, ModelBlessing


class Resolver:
    """Finds one artifact in the store for a step about to run, or None."""

    def resolve(self, store, pipeline_name: str, inputs: dict[str, Artifact | None]) -> Artifact | None:
        raise NotImplementedError


@dataclass(frozen=True)
class LatestBlessedModel(Resolver):
    """The newest Model of the pipeline that a LIVE ModelBlessing blessed, whose files still
    exist, other than the step's own input `exclude` (TFX's latest-blessed-model strategy)."""

    exclude: str = "model"

    def resolve(self, store, pipeline_name, inputs):
        blessings = [
            *store.live_artifacts(ModelBlessing, pipeline_name, "custom_properties.blessed.int_value = 1"),
            # written by an earlier version, with `blessed` a declared property
            *store.live_artifacts(ModelBlessing, pipeline_name, "properties.blessed.int_value = 1"),
        ]
        excluded = inputs.get(self.exclude)
        ids = {b.get("current_model_id") for b in blessings} - {excluded.id if excluded else None, None}
        models = [
            m
            for m in store.artifacts_by_id(sorted(ids))
            if m.state == "LIVE" and os.path.isdir(os.path.join(m.uri, SERVING_DIR))
        ]
        return max(models, key=lambda m: m.id, default=None)

    def __str__(self) -> str:
        return "the latest blessed model"


@dataclass(frozen=True)
class PreviousSpan(Resolver):
    """The LIVE artifact of the same type as the step's input `of`, of the latest span before
    that input's span, in the pipeline (the previous span's statistics, for drift)."""

    of: str

    def resolve(self, store, pipeline_name, inputs):
        current = inputs.get(self.of)
        if current is None:
            return None
        span = current.get("span", 0)
        earlier = store.live_artifacts(type(current), pipeline_name, f"properties.span.int_value < {span}")
        return max(earlier, key=lambda a: (a.get("span"), a.id), default=None)

    def __str__(self) -> str:
        return f"the previous span's {self.of}"
