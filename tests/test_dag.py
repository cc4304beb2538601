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
    from pipeline import Component, Input
    from pipeline.artifacts import Examples
    from tests.toy_components import WriteParams

    def passthrough(ctx, params, examples, copy):
        pass

    Pass = Component(
        name="Pass",
        run=passthrough,
        inputs={"examples": Input(Examples)},
        outputs={"copy": Examples},
        parameters=WriteParams,
        version="1",
    )
    a = Pass(id="A")
    b = Pass(id="B", examples=a.outputs["copy"])
    a.connect("examples", b.outputs["copy"])
    with pytest.raises(DefinitionError, match=r"the pipeline has a cycle: (A -> B -> A|B -> A -> B)"):
        Pipeline("p", [a, b]).validate()


def test_run_function_must_match_declaration():
    from pipeline import Component
    from pipeline.artifacts import Examples
    from tests.toy_components import WriteParams

    def wrong(ctx, params, out):
        pass

    with pytest.raises(
        DefinitionError, match=r"Bad: run function .*wrong must take exactly \['ctx', 'examples', 'params'\]"
    ):
        Component(name="Bad", run=wrong, outputs={"examples": Examples}, parameters=WriteParams, version="1")
