"""Transform on real tensorflow-transform, Beam and TensorFlow over 37 penguin rows: its outputs,
serving parity, caching on the module's source, user-code errors; and user-code loading alone."""

import os
import shutil
from collections import Counter

import pytest

import schemas
from components.example_gen.component import ExampleGen
from components.schema_gen.component import ImportSchemaGen
from components.transform.component import Transform
from penguin.module import MISSING_SUFFIX
from pipeline import DefinitionError, Pipeline, UserInputError
from pipeline.metadata import MetadataStore, custom, state_name
from pipeline.usercode import load_function, load_module, user_function
from tests.helpers import decode_examples, quiet_run, read_tfrecords, write_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUIN_MODULE = os.path.join(REPO, "penguin", "module.py")
SOURCE_CSV = os.path.join(REPO, "data", "penguins", "span-2007", "penguins.csv")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Every third row of span 2007 (all species, missing sex, a row of missing measurements),
    and a copy of the penguin module that the caching test may edit."""
    path = tmp_path_factory.mktemp("transform")
    with open(SOURCE_CSV) as f:
        header, *rows = f.readlines()
    write_csv(path / "data" / "span-1" / "penguins.csv", header + "".join(rows[::3]))
    shutil.copy(PENGUIN_MODULE, path / "module.py")
    return path


def transform_pipeline(workdir, **transform_params) -> Pipeline:
    schema_gen = ImportSchemaGen(schema_file=schemas.PENGUIN_SCHEMA)
    example_gen = ExampleGen(
        input_pattern=str(workdir / "data" / "span-{SPAN}" / "*.csv"), schema=schema_gen.outputs["schema"]
    )
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], **transform_params
    )
    return Pipeline("transform-test", [schema_gen, example_gen, transform])


def run_transform(workdir, **transform_params):
    result = quiet_run(transform_pipeline(workdir, **transform_params), workdir / "root")
    result.root = workdir / "root"
    return result


@pytest.fixture(scope="module")
def run(workdir):
    result = run_transform(workdir, module_file=str(workdir / "module.py"))
    assert result.ok, result.error
    return result


@pytest.fixture(scope="module")
def tft_output(run):
    import tensorflow_transform as tft

    return tft.TFTransformOutput(run.step("Transform").outputs["transform_graph"].uri)


def split_rows(examples, split) -> list[dict]:
    return decode_examples(read_tfrecords(examples.split_uri(split)))


def raw_and_transformed(run, split) -> tuple[list[dict], list[dict]]:
    raw = run.step("ExampleGen").outputs["examples"]
    transformed = run.step("Transform").outputs["transformed_examples"]
    return split_rows(raw, split), split_rows(transformed, split)


def serve(tft_output, records: list[bytes]) -> dict:
    """The serving path: parse raw tf.Examples without the label, then the TFT layer."""
    import tensorflow as tf

    spec = tft_output.raw_feature_spec()
    spec.pop(schemas.LABEL_KEY)
    parsed = tf.io.parse_example(tf.constant(records), spec)
    return {name: tensor.numpy() for name, tensor in tft_output.transform_features_layer()(parsed).items()}


def as_rows(columns: dict) -> list[tuple]:
    names = sorted(columns)
    return sorted(zip(*(columns[name].tolist() for name in names)))


def failure(result) -> str:
    """The error of a failed Transform, checked to be recorded FAILED with that message in MLMD."""
    assert not result.ok, "the run should have failed"
    step = result.step("Transform")
    assert step.status == "FAILED"
    store = MetadataStore(str(result.root / "metadata.sqlite"))
    [execution] = store.mlmd.get_executions_by_id([step.execution_id])
    assert state_name(execution) == "FAILED"
    assert custom(execution, "error") == step.note
    return step.note


# ---- outputs -------------------------------------------------------------------------------


def test_writes_tft_output_and_transformed_examples_with_the_raw_properties(run):
    graph = run.step("Transform").outputs["transform_graph"]
    raw = run.step("ExampleGen").outputs["examples"]
    transformed = run.step("Transform").outputs["transformed_examples"]
    assert sorted(os.listdir(graph.uri)) == ["metadata", "transform_fn", "transformed_metadata"]
    assert transformed.split_names == raw.split_names == ["train", "eval"]
    assert transformed.properties["span"] == 1 and transformed.properties["version"] == 0
    for split in raw.split_names:
        rows = split_rows(transformed, split)
        assert len(rows) == transformed.get(f"row_count_{split}") == raw.get(f"row_count_{split}") > 0
    assert all(name.startswith("data_tfrecord-") for name in os.listdir(transformed.split_uri("train")))


def test_numeric_features_are_train_z_scores_with_missing_values_at_the_mean(run):
    import numpy as np

    raw, transformed = raw_and_transformed(run, "train")
    for name in schemas.NUMERIC_FEATURES:
        present = np.array([r[name][0] for r in transformed if r[name + MISSING_SUFFIX] == [0.0]])
        missing = [r[name][0] for r in transformed if r[name + MISSING_SUFFIX] == [1.0]]
        assert len(missing) == sum(name not in r for r in raw) > 0
        assert missing == [0.0] * len(missing)
        assert present.mean() == pytest.approx(0.0, abs=1e-5)
        assert present.std() == pytest.approx(1.0, abs=1e-5)


def test_label_and_categories_index_vocabularies_with_missing_sex_out_of_vocabulary(run, tft_output):
    raw, transformed = raw_and_transformed(run, "train")
    species = [name.decode() for name in tft_output.vocabulary_by_name(schemas.LABEL_KEY)]
    assert sorted(species) == ["Adelie", "Chinstrap", "Gentoo"]
    assert Counter(species[r["species"][0]] for r in transformed) == Counter(r["species"][0] for r in raw)
    sexes = tft_output.vocabulary_by_name("sex")
    assert sorted(sexes) == [b"female", b"male"]
    assert sum(r["sex"] == [len(sexes)] for r in transformed) == sum("sex" not in r for r in raw) > 0
    assert tft_output.num_buckets_for_transformed_feature("island") == 3 + 1


# ---- serving parity ------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "eval"])
def test_serving_graph_on_raw_examples_gives_exactly_the_transformed_examples(run, tft_output, split):
    raw = run.step("ExampleGen").outputs["examples"]
    served = serve(tft_output, read_tfrecords(raw.split_uri(split)))
    assert schemas.LABEL_KEY not in served
    _, transformed = raw_and_transformed(run, split)
    expected = {name: [r[name][0] for r in transformed] for name in served}
    assert set(expected) | {schemas.LABEL_KEY} == set(transformed[0])
    assert as_rows(served) == sorted(zip(*(expected[name] for name in sorted(expected))))


def test_serving_puts_unseen_and_missing_values_in_the_oov_bucket_and_at_the_mean(tft_output):
    import tensorflow as tf

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "island": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"Atlantis"])),
                "year": tf.train.Feature(int64_list=tf.train.Int64List(value=[2031])),
            }
        )
    )
    served = serve(tft_output, [example.SerializeToString()])
    assert served["island"].tolist() == [len(tft_output.vocabulary_by_name("island"))]
    assert served["sex"].tolist() == [len(tft_output.vocabulary_by_name("sex"))]
    for name in schemas.NUMERIC_FEATURES:
        assert served[name].tolist() == [0.0] and served[name + MISSING_SUFFIX].tolist() == [1.0]


# ---- caching -------------------------------------------------------------------------------


def test_unchanged_module_is_cached_and_a_changed_preprocessing_fn_reruns(run, workdir, tft_output):
    import tensorflow_transform as tft

    module = workdir / "module.py"
    again = run_transform(workdir, module_file=str(module))
    assert [s.status for s in again.steps] == ["CACHED", "CACHED", "CACHED"]
    source = module.read_text()
    module.write_text(source.replace("num_oov_buckets=1", "num_oov_buckets=2"))
    changed = run_transform(workdir, module_file=str(module))
    assert [s.status for s in changed.steps] == ["CACHED", "CACHED", "COMPLETE"]
    new_graph = tft.TFTransformOutput(changed.step("Transform").outputs["transform_graph"].uri)
    assert new_graph.num_buckets_for_transformed_feature("island") == 3 + 2


# ---- errors --------------------------------------------------------------------------------


def module(workdir, name: str, source: str) -> str:
    return write_csv(workdir / "modules" / name, source)


def test_missing_module_file_fails_naming_the_path(run, workdir):
    path = str(workdir / "nowhere" / "module.py")
    assert failure(run_transform(workdir, module_file=path)).startswith(
        f"cannot read module file {path}: No such file or directory; check the path"
    )


def test_module_without_preprocessing_fn_fails_naming_file_and_function(run, workdir):
    path = module(workdir, "typo.py", "def preprocesing_fn(inputs):\n    return inputs\n")
    assert failure(run_transform(workdir, module_file=path)) == (
        f"{path} has no function 'preprocessing_fn' (it defines: preprocesing_fn); "
        "define `def preprocessing_fn(...)` at the top level of that file"
    )


def test_preprocessing_fn_that_raises_fails_naming_file_function_and_line(run, workdir):
    path = module(
        workdir,
        "raises.py",
        "import tensorflow as tf\n\n\ndef preprocessing_fn(inputs):\n"
        "    scaled = {'year': tf.cast(inputs['year'], tf.float32)}\n"
        "    return {'year': scaled['year_scaled']}\n",
    )
    assert failure(run_transform(workdir, module_file=path)) == (
        f"preprocessing_fn in {path}, line 6, raised KeyError: 'year_scaled'"
    )


def reads_an_unknown_feature(inputs):
    return {"weight": inputs["weight_kg"]}


def test_feature_not_in_the_schema_fails_naming_the_feature_and_the_function(run, workdir):
    message = failure(run_transform(workdir, preprocessing_fn=reads_an_unknown_feature))
    assert message.startswith(f"preprocessing_fn in {os.path.abspath(__file__)}, line ")
    assert message.endswith(
        ": reads feature 'weight_kg', which is not in the schema (features: bill_depth_mm, "
        "bill_length_mm, body_mass_g, flipper_length_mm, island, sex, species, year); "
        "add it to the schema or stop reading it"
    )


def test_transform_takes_exactly_one_of_module_file_and_preprocessing_fn():
    with pytest.raises(DefinitionError, match=r"give exactly one of module_file="):
        Transform(module_file=PENGUIN_MODULE, preprocessing_fn=reads_an_unknown_feature)
    with pytest.raises(DefinitionError, match=r"give exactly one of module_file="):
        Transform()


# ---- user code loading, without TensorFlow -------------------------------------------------


def test_syntax_error_names_file_and_line(tmp_path):
    path = write_csv(tmp_path / "broken.py", "def build_fn(inputs):\n    return (\n")
    with pytest.raises(UserInputError, match=rf"^{path}, line 2: syntax error: '\(' was never closed$"):
        load_function(path, "build_fn")


def test_module_that_raises_on_import_names_file_and_line(tmp_path):
    path = write_csv(tmp_path / "imports.py", "import os\n\nVALUE = 1 / 0\n")
    with pytest.raises(
        UserInputError, match=rf"^importing {path}, line 3, raised ZeroDivisionError: division by zero"
    ):
        load_module(path)


def test_module_runs_once_per_content(tmp_path):
    path = write_csv(tmp_path / "counted.py", "import itertools\nCALLS = itertools.count()\n")
    assert load_module(path) is load_module(path)
    write_csv(path, "import itertools\nCALLS = itertools.count(10)\n")
    assert next(load_module(path).CALLS) == 10


def test_callable_errors_name_the_function_its_file_and_line():
    def build_fn(inputs, params):
        return inputs[params["missing"]]

    function = user_function("build_fn", function=build_fn)
    with pytest.raises(UserInputError) as raised:
        function({}, {})
    line = build_fn.__code__.co_firstlineno + 1
    assert (
        str(raised.value)
        == f"build_fn in {os.path.abspath(__file__)}, line {line}, raised KeyError: 'missing'"
    )
