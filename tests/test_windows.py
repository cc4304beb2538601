"""Windows of spans without TensorFlow: ExampleGen ingests each span of a rolling window or a span
range in an execution of its own (a span already ingested is CACHED), a single input fed by it runs
its node once per span, a list input takes the whole window; step tasks, lineage, the data gate as
a dependency, and what a requested span without files says."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import pytest

from components.example_gen import ExampleGen, RollingWindow, SpanRange
from components.example_validator import ExampleValidator
from components.schema_gen import SchemaGen
from components.statistics_gen import StatisticsGen
from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, Pipeline
from pipeline.artifacts import Examples, Schema
from pipeline.errors import DefinitionError
from pipeline.lineage import format_lineage, lineage, raw_spans
from pipeline.metadata import MetadataStore, custom, state_name
from pipeline.step import StepOptions, UpstreamNotDone, run_step
from tests.helpers import quiet_run, write_csv


@dataclass(frozen=True)
class GatherParams:
    pass


def run_gather(
    ctx: ExecutionContext,
    params: GatherParams,
    examples: InputArtifact[list[Examples]],
    schema: OutputArtifact[Schema],
) -> None:
    """Stands in for Transform: takes the whole window, writes which spans it got."""
    with open(os.path.join(schema.uri, "spans.json"), "w") as f:
        json.dump([e.get("span") for e in examples], f)


Gather = Component(name="Gather", run=run_gather, parameters=GatherParams, version="1")


def months(base, count: int, dated: bool = False, first: int = 1) -> str:
    """`count` monthly folders of a small CSV each: `span-<n>/` or `2024-<mm>/`; returns the pattern."""
    for month in range(first, first + count):
        folder = f"2024-{month:02d}" if dated else f"span-{month}"
        rows = "\n".join(f"{i},{'abc'[i % 3]},{month}" for i in range(30))
        write_csv(base / "data" / folder / "rows.csv", f"x,kind,month\n{rows}\n")
    name = "{YYYY}-{MM}" if dated else "span-{SPAN}"
    return str(base / "data" / name / "*.csv")


def windowed(pattern: str, window, gated: bool = False, **example_gen) -> Pipeline:
    example_gen = ExampleGen(input_pattern=pattern, window=window, **example_gen)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    nodes = [example_gen, statistics_gen]
    if gated:
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
        validator = ExampleValidator(
            statistics=statistics_gen.outputs["statistics"],
            schema=schema_gen.outputs["schema"],
            drift_exclude=("month",),
        )
        nodes += [schema_gen, validator]
    nodes.append(Gather(examples=example_gen.outputs["examples"]))
    return Pipeline("months", nodes)


def gathered(result) -> list[int]:
    with open(os.path.join(result.step("Gather").outputs["schema"].uri, "spans.json")) as f:
        return json.load(f)


def test_a_rolling_window_ingests_each_new_span_once_and_the_window_moves(tmp_path):
    pattern = months(tmp_path, 3)
    first = quiet_run(windowed(pattern, RollingWindow(3)), tmp_path / "root")
    assert first.ok, first.error
    assert [s.name for s in first.steps_of("ExampleGen")] == [f"ExampleGen[span {m}]" for m in (1, 2, 3)]
    assert [s.status for s in first.steps_of("StatisticsGen")] == ["COMPLETE"] * 3
    assert gathered(first) == [1, 2, 3]
    assert any(
        "window: 3 span(s), 1, 2, 3 (a rolling window of the last 3 span(s))" in line for line in first.log
    )

    months(tmp_path, 1, first=4)
    moved = quiet_run(windowed(pattern, RollingWindow(3)), tmp_path / "root")
    assert [(s.item, s.status) for s in moved.steps_of("ExampleGen")] == [
        ("span 2", "CACHED"),
        ("span 3", "CACHED"),
        ("span 4", "COMPLETE"),
    ]
    assert gathered(moved) == [2, 3, 4]
    # The reuse is in the metadata: each CACHED execution names the one it reused, of the same span.
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    earlier = {s.item: s.execution_id for s in first.steps_of("ExampleGen")}
    for step in moved.steps_of("ExampleGen")[:2]:
        [execution] = store.mlmd.get_executions_by_id([step.execution_id])
        assert custom(execution, "cached_from") == earlier[step.item]
        assert custom(execution, "map_label") == step.item and json.loads(custom(execution, "map_keys")) == [
            "2",
            "3",
            "4",
        ]
    # Gather's input is the window, recorded TFX's way: one event per artifact, key and index.
    gather = moved.step("Gather")
    inputs = store.inputs_of(gather.execution_id)["examples"]
    assert [a.get("span") for a in inputs] == [2, 3, 4]
    tree = lineage(store, gather.outputs["schema"])
    assert sorted(tree.inputs) == ["examples[0]", "examples[1]", "examples[2]"]
    assert raw_spans(tree) == [2, 3, 4]
    assert "examples[2]: Examples" in "\n".join(format_lineage(tree))


def test_a_window_ending_at_a_requested_span_and_a_span_without_files(tmp_path):
    pattern = months(tmp_path, 4)
    pipeline = windowed(pattern, RollingWindow(2))
    pipeline.override(span=3)
    result = quiet_run(pipeline, tmp_path / "root")
    assert gathered(result) == [2, 3]

    pipeline = windowed(pattern, RollingWindow(2))
    pipeline.override(span=7)
    missing = quiet_run(pipeline, tmp_path / "root")
    assert missing.step("ExampleGen").status == "FAILED"
    message = missing.step("ExampleGen").note
    assert "for span 7" in message and "span-7" in message and "spans found: 1, 2, 3, 4" in message
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [failed] = store.mlmd.get_executions_by_id([missing.step("ExampleGen").execution_id])
    assert state_name(failed) == "FAILED" and "span-7" in custom(failed, "error")


def test_a_span_range_of_dates_and_runs_for_dates_within_it(tmp_path):
    pattern = months(tmp_path, 6, dated=True)
    window = SpanRange("2024-02-01", "2024-04-01")
    result = quiet_run(windowed(pattern, window), tmp_path / "root")
    assert [s.item for s in result.steps_of("ExampleGen")] == [
        "span 2024-02-01",
        "span 2024-03-01",
        "span 2024-04-01",
    ]
    examples = [s.outputs["examples"] for s in result.steps_of("ExampleGen")]
    assert [e.get("span_date") for e in examples] == ["2024-02-01", "2024-03-01", "2024-04-01"]
    assert [e.get("span") for e in examples] == [19754, 19783, 19814]  # days since 1970-01-01, as TFX

    # A run for a date in the range takes the range up to it, as the schedule would have then.
    pipeline = windowed(pattern, window)
    pipeline.override(span=19783)
    assert gathered(quiet_run(pipeline, tmp_path / "root")) == [19754, 19783]
    outside = windowed(pattern, window)
    outside.override(span=19844)  # 2024-05-01
    failed = quiet_run(outside, tmp_path / "root")
    assert (
        "span 2024-05-01 is outside the pipeline's window, spans 2024-02-01 to 2024-04-01"
        in failed.step("ExampleGen").note
    )
    with pytest.raises(DefinitionError, match="first '2024-03-01' comes after last"):
        SpanRange("2024-03-01", "2024-01-01")


def test_step_tasks_run_every_item_and_a_retry_runs_only_what_is_left(tmp_path):
    pattern = months(tmp_path, 3)
    root = tmp_path / "root"

    def step(node):
        return run_step(
            windowed(pattern, RollingWindow(3)),
            node,
            StepOptions(pipeline_root=str(root), run_id="r1", log=lambda line: None),
        )

    with pytest.raises(
        UpstreamNotDone, match="StatisticsGen needs the outputs of ExampleGen, which has not run"
    ):
        step("StatisticsGen")
    task = step("ExampleGen")
    assert task.step.status == "COMPLETE" and task.run is None
    # A task that died after two spans: the third's execution is gone; the retry runs only it.
    store = MetadataStore(str(root / "metadata.sqlite"))
    run_ctx = store.mlmd.get_context_by_type_and_name("pipeline_run", "r1")
    executions = [e for e in store.executions_in(run_ctx) if custom(e, "node_id") == "ExampleGen"]
    assert [custom(e, "map_key") for e in executions] == ["1", "2", "3"]
    store.fail_execution(executions[-1], "killed")
    again = step("ExampleGen")
    ran = [e for e in store.executions_in(run_ctx) if custom(e, "node_id") == "ExampleGen"]
    assert len(ran) == 4 and custom(ran[-1], "map_key") == "3" and state_name(ran[-1]) == "COMPLETE"
    assert not again.already_done
    assert step("ExampleGen").already_done
    step("StatisticsGen")
    last = step("Gather")
    assert last.run is not None and last.run.status == "COMPLETE"
    assert [s.name for s in last.run.steps][:3] == [f"ExampleGen[span {m}]" for m in (1, 2, 3)]


def test_nodes_wait_for_the_gate_that_checks_their_data_in_tasks_and_exports(tmp_path):
    from pipeline.export import edges

    pattern = months(tmp_path, 2)
    pipeline = windowed(pattern, RollingWindow(2), gated=True)
    assert ("ExampleValidator", "Gather") in edges(pipeline)  # Gather takes the data the gate checks
    assert ("ExampleValidator", "SchemaGen") not in edges(pipeline)  # the gate's own inputs do not wait
    root = tmp_path / "root"
    options = StepOptions(pipeline_root=str(root), run_id="r1", log=lambda line: None)
    for node in ("ExampleGen", "StatisticsGen", "SchemaGen"):
        run_step(pipeline, node, options)
    with pytest.raises(UpstreamNotDone, match="ExampleValidator, which has not run"):
        run_step(pipeline, "Gather", options)
    # A span that fails the gate stops its task, and the run: what takes its data never runs.
    write_csv(tmp_path / "data" / "span-2" / "rows.csv", "x,kind,month\n1,zzz,2\n")
    shutil.rmtree(root)
    blocked = quiet_run(windowed(pattern, RollingWindow(2), gated=True), root)
    assert blocked.status == "BLOCKED"
    assert [s.status for s in blocked.steps_of("ExampleValidator")] == ["COMPLETE", "BLOCKED"]
    assert blocked.step("Gather").status == "SKIPPED"


def test_a_schedulers_logical_date_names_the_span_of_a_dated_pipeline(tmp_path, capsys):
    """`step --span-of-logical-date` (what the exported Airflow DAG passes for dated spans): the
    DAG run of 2024-03-15 ingests March's export (and its window); one without a logical date,
    the latest."""
    import runner
    from pipeline.export import ExportSettings
    from pipeline.export.airflow import dag_source
    from pipeline.usercode import load_pipeline

    pattern = months(tmp_path, 4, dated=True)
    path = tmp_path / "pipeline.py"
    path.write_text(
        "from components.example_gen import ExampleGen, RollingWindow\n"
        "from components.statistics_gen import StatisticsGen\n"
        "from pipeline import Pipeline\n\n"
        "def create_pipeline():\n"
        f"    example_gen = ExampleGen(input_pattern={pattern!r}, window=RollingWindow(2))\n"
        "    return Pipeline('dated', [example_gen, StatisticsGen(examples=example_gen.outputs['examples'])])\n"
    )
    common = ["--pipeline", str(path), "--pipeline-root", str(tmp_path / "root"), "step", "ExampleGen"]
    logical = ["--logical-date", "2024-03-15T00:00:00+00:00", "--span-of-logical-date"]
    assert runner.main([*common, "--run-id", "scheduled__2024-03-15", *logical]) == 0
    assert "window: 2 span(s), 2024-02-01, 2024-03-01" in capsys.readouterr().out
    statistics = [*common[:-1], "StatisticsGen", "--run-id", "scheduled__2024-03-15", *logical]
    assert runner.main(statistics) == 0  # the last step closes the run (and frees the root)
    assert runner.main([*common, "--run-id", "manual", "--logical-date", "", "--span-of-logical-date"]) == 0
    assert "window: 2 span(s), 2024-03-01, 2024-04-01" in capsys.readouterr().out
    source = dag_source(load_pipeline(str(path)), ExportSettings(pipeline_file=str(path)))
    assert '"span_of_logical_date": Param(True, type="boolean")' in source
    assert "--span-of-logical-date" in source
