"""Transform: a user's `preprocessing_fn` run by tensorflow-transform on Beam, analyzed on the
train split of every span of the window and applied to every split; its graph is what the exported
model embeds for serving. With a window moving by one span, the analysis of the spans it already
saw comes from tensorflow-transform's analyzer cache (its last `updated_analyzer_cache`)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from components.schema_gen.schema_io import load_schema
from pipeline import (
    Component,
    DefinitionError,
    ExecutionContext,
    InputArtifact,
    OutputArtifact,
    UserInputError,
)
from pipeline.artifacts import Examples, Schema, TransformCache, TransformGraph
from pipeline.resolvers import OwnLatestOutput
from pipeline.usercode import UserFunction, ship_by_value, user_function

CODE_VERSION = "3"
FUNCTION_NAME = "preprocessing_fn"
TEMP_DIR = ".tft-temp"
# The analyzed rows of a window from which the analyzer cache pays for its set-up (about 4 s of
# fixed cost, against about 11 us a row of analysis saved, measured with bench/transform_cache.py).
CACHE_MIN_ROWS = 500_000


@dataclass(frozen=True)
class TransformParams:
    """Give one of module_file (a Python file that defines `preprocessing_fn(inputs) -> outputs`;
    its content is part of the cache key) or preprocessing_fn (the function; the source of its
    module is). analyze_splits: the splits the analyzers (means, vocabularies, ...) see; every
    split is transformed with what they computed. custom_config: handed to a
    `preprocessing_fn(inputs, custom_config)` that takes a second argument, as TFX does (for
    example the label's name, so that it is written once in the pipeline file)."""

    module_file: str | None = field(default=None, metadata={"module_file": True})
    preprocessing_fn: Callable | None = None
    analyze_splits: list = field(default_factory=lambda: ["train"])
    custom_config: dict = field(default_factory=dict)
    analyzer_cache: bool | None = None

    def __post_init__(self):
        if (self.module_file is None) == (self.preprocessing_fn is None):
            raise DefinitionError(
                "Transform: give exactly one of module_file='path/to/module.py' (defining "
                "preprocessing_fn) or preprocessing_fn=<a function>"
            )
        if not self.analyze_splits:
            raise DefinitionError("Transform: analyze_splits must name at least one split, e.g. ['train']")


class SchemaFeatures(dict):
    """The raw features handed to `preprocessing_fn`; reading one the schema lacks says so."""

    def __missing__(self, name):
        raise UserInputError(
            f"reads feature {name!r}, which is not in the schema (features: {', '.join(sorted(self))}); "
            "add it to the schema or stop reading it"
        )


def checked_preprocessing_fn(function: UserFunction, custom_config: dict | None = None) -> Callable:
    """`function` as TFT calls it: raw features in a SchemaFeatures (and `custom_config` when it
    takes a second argument), its result checked."""
    import inspect

    try:
        takes_config = len(inspect.signature(function.function).parameters) >= 2
    except (TypeError, ValueError):
        takes_config = False
    if custom_config and not takes_config:
        raise UserInputError(
            f"Transform(custom_config=...) is set, but {function.name} in {function.source} takes only "
            "`inputs`; define it as `def preprocessing_fn(inputs, custom_config)` to receive it"
        )
    extra = (dict(custom_config or {}),) if takes_config else ()

    def preprocessing_fn(inputs):
        outputs = function(SchemaFeatures(inputs), *extra)
        if not isinstance(outputs, dict) or not outputs:
            raise UserInputError(
                f"{function.name} in {function.source} returned {type(outputs).__name__}; "
                "it must return a non-empty dict of feature name -> tensor"
            )
        return outputs

    return preprocessing_fn


def run_transform(
    ctx: ExecutionContext,
    params: TransformParams,
    examples: InputArtifact[list[Examples]],
    schema: InputArtifact[Schema],
    # The cache its last execution on this root left: speed only, so not part of the cache key.
    analyzer_cache: Annotated[TransformCache | None, OwnLatestOutput("updated_analyzer_cache")],
    transform_graph: OutputArtifact[TransformGraph],
    transformed_examples: OutputArtifact[Examples],
    updated_analyzer_cache: OutputArtifact[TransformCache],
) -> None:
    function = user_function(FUNCTION_NAME, module_file=params.module_file, function=params.preprocessing_fn)
    ship_by_value(function.function)
    from components.transform.beam import transform_spans

    window = sorted(examples, key=lambda e: (e.get("span") or 0, e.id or 0))
    for one in window:
        missing = [s for s in params.analyze_splits if s not in one.split_names]
        if missing:
            raise UserInputError(
                f"analyze_splits names {missing}, which the examples of span {one.get('span')} do not "
                f"have (splits: {one.split_names})"
            )
    spans = ", ".join(str(e.get("span_date") or e.get("span")) for e in window)
    ctx.log(
        f"{function.name} from {function.source}; analyzing {', '.join(params.analyze_splits)} of "
        f"{'span' if len(window) == 1 else f'{len(window)} spans,'} {spans}"
    )
    temp_dir = os.path.join(transform_graph.uri, TEMP_DIR)
    use_cache = _use_cache(params, window)
    cache_in = analyzer_cache.uri if analyzer_cache is not None and use_cache else None
    if not use_cache:
        why = (
            "off"
            if params.analyzer_cache is False
            else f"not used: the window's analyzed rows are under {CACHE_MIN_ROWS:,}"
        )
        ctx.log(f"analyzer cache {why}; every span analyzed")
    try:
        report = transform_spans(
            ctx,
            checked_preprocessing_fn(function, params.custom_config),
            load_schema(schema),
            window,
            list(params.analyze_splits),
            transform_graph.uri,
            transformed_examples,
            temp_dir,
            cache_in=cache_in,
            cache_out=updated_analyzer_cache.uri if use_cache else None,
        )
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    counts = report.counts
    _describe_outputs(window, transformed_examples, transform_graph, counts, params)
    transform_graph.custom_properties.update(
        analyzed_spans=json.dumps(report.analyzed_spans), cached_spans=json.dumps(report.cached_spans)
    )
    updated_analyzer_cache.custom_properties["spans"] = json.dumps([e.get("span") for e in window])
    summary = ", ".join(f"{s} {counts.get(s, 0)}" for s in window[-1].split_names)
    ctx.log(f"transformed {sum(counts.values())} examples ({summary})")


def _use_cache(params: TransformParams, window: list[Examples]) -> bool:
    """Whether to read and write the analyzer cache (see TransformParams.analyzer_cache)."""
    if params.analyzer_cache is not None:
        return params.analyzer_cache
    rows = sum(e.get(f"row_count_{split}") or 0 for e in window for split in params.analyze_splits)
    return len(window) > 1 and rows >= CACHE_MIN_ROWS


def _describe_outputs(window, transformed_examples, transform_graph, counts, params) -> None:
    newest = window[-1]
    transformed_examples.set("span", newest.properties["span"])
    transformed_examples.set("version", newest.properties["version"])
    transformed_examples.split_names = newest.split_names
    # every span of the window, which the Trainer records on the Model
    transformed_examples.custom_properties["spans"] = json.dumps([e.get("span") for e in window])
    if all(e.get("span_date") for e in window):
        transformed_examples.custom_properties["span_dates"] = json.dumps(
            [e.get("span_date") for e in window]
        )
    for split in newest.split_names:
        transformed_examples.custom_properties[f"row_count_{split}"] = counts.get(split, 0)
    transform_graph.custom_properties["analyze_splits"] = ",".join(params.analyze_splits)


Transform = Component(
    name="Transform",
    run=run_transform,
    parameters=TransformParams,
    version=CODE_VERSION,
    preload=("components.transform.beam",),  # Beam, TensorFlow, TF Transform
)
