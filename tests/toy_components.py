"""Two small pure-Python components for testing the orchestration core without TensorFlow or Beam."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, UserInputError
from pipeline.artifacts import Examples, Schema


@dataclass(frozen=True)
class WriteParams:
    text: str = "hello"
    fail: bool = False
    sleep: float = 0.0
    hold_back: str = ""


def run_write(ctx: ExecutionContext, params: WriteParams, examples: OutputArtifact[Examples]) -> None:
    """Writes `text` to examples/Split-train/data.txt; fails or sleeps halfway when asked."""
    os.makedirs(examples.split_uri("train"))
    with open(os.path.join(examples.split_uri("train"), "data.txt"), "w") as f:
        f.write(params.text)
    if params.sleep:
        with open(os.path.join(ctx.pipeline_root, "write-started"), "w") as f:
            f.write(examples.uri)
        time.sleep(params.sleep)
    if params.fail:
        raise UserInputError("asked to fail, line 7 of nothing")
    if params.hold_back:
        ctx.hold_back(params.hold_back)
    examples.set("span", 1)
    examples.split_names = ["train"]


Write = Component(name="Write", run=run_write, parameters=WriteParams, version="1")


@dataclass(frozen=True)
class ReadParams:
    suffix: str = "!"


def run_read(
    ctx: ExecutionContext,
    params: ReadParams,
    examples: InputArtifact[Examples],
    schema: OutputArtifact[Schema],
) -> None:
    with open(os.path.join(examples.split_uri("train"), "data.txt")) as f:
        text = f.read()
    with open(os.path.join(schema.uri, "schema.pbtxt"), "w") as f:
        f.write(f"# {text}{params.suffix}\n")


# What the runner did with Read's warm-up: "warmed" when it started it, "released" when it undid it.
WARM_UP_EVENTS: list[str] = []


def warm_up_read():
    WARM_UP_EVENTS.append("warmed")
    return lambda: WARM_UP_EVENTS.append("released")


Read = Component(
    name="Read",
    run=run_read,
    parameters=ReadParams,
    version="1",
    warm_up=warm_up_read,
)


def toy_pipeline(
    text: str = "hello", fail: bool = False, sleep: float = 0.0, suffix: str = "!", hold_back: str = ""
):
    from pipeline import Pipeline

    write = Write(text=text, fail=fail, sleep=sleep, hold_back=hold_back)
    read = Read(examples=write.outputs["examples"], suffix=suffix)
    return Pipeline(name="toy", nodes=[write, read])
