"""TFX's own library against a store written by a real run: our artifact types read as TFX's
standard classes, TFX's resolvers find our blessed model and our Examples, and the pushed model's
destination and version read through TFX's keys. The run itself uses a TFX module file, unchanged:
`preprocessing_fn` for Transform and `run_fn(fn_args)` for the Trainer (tests/tfx_style_module.py)."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(REPO, "tests", "tfx_style_module.py")
TYPES = [
    "Examples",
    "ExampleStatistics",
    "ExampleAnomalies",
    "Schema",
    "TransformGraph",
    "Model",
    "ModelEvaluation",
    "ModelBlessing",
    "PushedModel",
]


@pytest.fixture(scope="module")
def tfx_run(tmp_path_factory):
    """The penguin pipeline with the TFX-style module as Transform's and the Trainer's module file."""
    base = tmp_path_factory.mktemp("tfx")
    pipeline = base / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(f"""
            from penguin.pipeline import create_pipeline as penguin

            def create_pipeline():
                pipeline = penguin()
                pipeline.override(module_file={MODULE!r}, train_steps=300, eval_steps=5)
                return pipeline
        """)
    )
    root = base / "root"
    done = subprocess.run(
        [sys.executable, "runner.py", "--pipeline-root", str(root), "run", "--pipeline", str(pipeline)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return root, done.stdout


def test_a_tfx_module_file_runs_unchanged_to_a_pushed_model(tfx_run):
    _, out = tfx_run
    assert f"run_fn from {MODULE}: TFX's FnArgs, 300 steps" in out
    assert re.search(r"PASS accuracy = (0\.9\d*|1\.0+) \(needs >= 0\.9\)", out), out[-3000:]
    assert re.search(
        r"pushed model \d+ as version 1: .*serving/penguin/1 \(smoke check: serving_default answered", out
    )


def test_tfx_reads_our_store_as_its_own(tfx_run):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2
    from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
    from tfx.dsl.input_resolution.strategies.span_range_strategy import SpanRangeStrategy
    from tfx.orchestration import metadata
    from tfx.proto import range_config_pb2
    from tfx.types import artifact_utils, standard_artifacts

    root, _ = tfx_run
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(root, "metadata.sqlite")
    with metadata.Metadata(config) as m:
        store = m.store
        by_type = {}
        for artifact_type in store.get_artifact_types():
            cls = artifact_utils.get_artifact_type_class(artifact_type)
            assert cls is getattr(standard_artifacts, artifact_type.name), artifact_type
            by_type[artifact_type.name] = [
                artifact_utils.deserialize_artifact(artifact_type, a)
                for a in store.get_artifacts_by_type(artifact_type.name)
            ]
        assert set(TYPES) <= set(by_type)

        [blessing] = by_type["ModelBlessing"]
        [model] = by_type["Model"]
        assert blessing.get_int_custom_property("blessed") == 1
        assert blessing.get_int_custom_property("current_model_id") == model.id
        assert blessing.get_string_custom_property("current_model") == model.uri
        resolved = LatestBlessedModelStrategy().resolve_artifacts(
            store, {"model": by_type["Model"], "model_blessing": by_type["ModelBlessing"]}
        )
        assert [a.id for a in resolved["model"]] == [model.id]

        [pushed] = by_type["PushedModel"]
        assert pushed.get_int_custom_property("pushed") == 1
        assert pushed.get_string_custom_property("pushed_version") == "1"
        assert pushed.get_string_custom_property("pushed_destination").endswith(os.path.join("penguin", "1"))

        raw = [e for e in by_type["Examples"] if "ExampleGen" in e.uri]
        assert [
            e.id for e in LatestArtifactStrategy().resolve_artifacts(store, {"examples": raw})["examples"]
        ] == [max(e.id for e in raw)]
        spans = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=2009, end_span_number=2009)
        )
        [latest] = SpanRangeStrategy(spans).resolve_artifacts(store, {"examples": raw})["examples"]
        assert latest.span == 2009 and artifact_utils.decode_split_names(latest.split_names) == [
            "train",
            "eval",
        ]
    assert isinstance(store, mlmd.MetadataStore)
