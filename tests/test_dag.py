"""Definition errors: raised before anything runs, naming the component and the fix."""

import pytest

from pipeline import DefinitionError, Pipeline
from tests.toy_components import Read, Write


def test_valid_pipeline_orders_producers_first():
    write = Write()
    read = Read(examples=write.outputs["examples"])
    order = Pipeline("p", [read, write]).validate()
    assert [n.id for n in order] == ["Write", "Read"]


def test_unknown_parameter_is_named_with_a_suggestion():
    with pytest.raises(
        DefinitionError, match=r"Write: unknown parameter or input 'txt'; did you mean 'text'\?"
    ):
        Write(txt="x")


def test_parameter_of_wrong_type():
    with pytest.raises(DefinitionError, match=r"Write: parameter 'sleep' must be float, got 'soon'"):
        Write(sleep="soon")


def test_missing_required_input():
    with pytest.raises(
        DefinitionError, match=r"Read: required input 'examples' \(Examples\) is not connected"
    ):
        Pipeline("p", [Read()]).validate()


def test_mistyped_input():
    write = Write()
    read = Read(examples=write.outputs["examples"])
    with pytest.raises(
        DefinitionError,
        match=r"Read2: input 'examples' takes Examples, but Read.outputs\['schema'\] gives Schema",
    ):
        Read(id="Read2", examples=read.outputs["schema"])


def test_input_that_is_not_a_channel():
    with pytest.raises(DefinitionError, match=r"Read: input 'examples' must be another node's output"):
        Read(examples="runs/examples")


def test_duplicate_node_ids():
    with pytest.raises(DefinitionError, match=r"two nodes are named 'Write'; give one of them another id"):
        Pipeline("p", [Write(), Write()]).validate()


def test_input_from_node_outside_the_pipeline():
    write = Write()
    read = Read(examples=write.outputs["examples"])
    with pytest.raises(
        DefinitionError, match=r"Read: input 'examples' comes from Write, which is not in pipeline 'p'"
    ):
        Pipeline("p", [read]).validate()


def test_cycle_is_reported_with_its_path():
    from pipeline import Component, InputArtifact, OutputArtifact
    from pipeline.artifacts import Examples
    from tests.toy_components import WriteParams

    def passthrough(ctx, params, examples: InputArtifact[Examples], copy: OutputArtifact[Examples]):
        pass

    Pass = Component(name="Pass", run=passthrough, parameters=WriteParams, version="1")
    a = Pass(id="A")
    b = Pass(id="B", examples=a.outputs["copy"])
    a.connect("examples", b.outputs["copy"])
    with pytest.raises(DefinitionError, match=r"the pipeline has a cycle: (A -> B -> A|B -> A -> B)"):
        Pipeline("p", [a, b]).validate()


def test_inputs_and_outputs_are_declared_once_in_the_run_functions_annotations():
    from typing import Annotated

    from pipeline import Component, InputArtifact, OutputArtifact
    from pipeline.artifacts import Examples, Schema
    from pipeline.resolvers import PreviousSpan
    from tests.toy_components import WriteParams

    def run(
        ctx,
        params,
        examples: InputArtifact[Examples],
        schema: InputArtifact[Schema | None],
        previous: Annotated[Examples | None, PreviousSpan(of="examples")],
        copy: OutputArtifact[Examples],
    ):
        pass

    made = Component(name="Made", run=run, parameters=WriteParams, version="1")
    declared = {k: (i.type, i.optional, i.wired) for k, i in made.inputs.items()}
    assert declared == {
        "examples": (Examples, False, True),
        "schema": (Schema, True, True),
        "previous": (Examples, True, False),
    }
    assert made.outputs == {"copy": Examples}

    def plain(ctx, params, out):
        pass

    with pytest.raises(
        DefinitionError,
        match=r"Bad: run function .*plain \(.*test_dag.py\): argument 'out' must be annotated InputArtifact\[T\]",
    ):
        Component(name="Bad", run=plain, parameters=WriteParams, version="1")

    def maybe_nothing(ctx, params, previous: Annotated[Examples, PreviousSpan(of="examples")]):
        pass

    with pytest.raises(DefinitionError, match=r"may find nothing; annotate it Examples \| None"):
        Component(name="Bad", run=maybe_nothing, parameters=WriteParams, version="1")

    def no_context(params, out: OutputArtifact[Examples]):
        pass

    with pytest.raises(DefinitionError, match=r"must take ctx, params first"):
        Component(name="Bad", run=no_context, parameters=WriteParams, version="1")
