"""ML Metadata under the pinned protobuf 6, and the connection settings for each backend."""

import os

import google.protobuf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.artifacts import Examples
from pipeline.metadata import MetadataStore, connection_config


def test_mlmds_store_round_trips_every_value_kind_under_protobuf_6(tmp_path):
    """ml-metadata 1.17.1 declares protobuf<5; the lock pins the 6.x TensorFlow 2.21 needs. Its C++
    store must still take and give back every kind of value the pipeline writes (int, double,
    string, a Struct, a proto Value) and its protos must parse as protobuf 6 serializes them."""
    from google.protobuf import struct_pb2

    assert google.protobuf.__version__.startswith("6.")
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "m.sqlite")
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    kind = pb.ArtifactType(name="Kinds", properties={"n": pb.INT, "x": pb.DOUBLE, "s": pb.STRING})
    type_id = store.put_artifact_type(kind)
    artifact = pb.Artifact(type_id=type_id, uri="/u", state=pb.Artifact.LIVE)
    artifact.properties["n"].int_value = 2**62
    artifact.properties["x"].double_value = 0.1
    artifact.properties["s"].string_value = "ünïcode ✓"
    struct = struct_pb2.Struct()
    struct.update({"nested": {"list": [1, "two", None]}})
    artifact.custom_properties["struct"].struct_value.CopyFrom(struct)
    artifact.custom_properties["flag"].bool_value = True
    [artifact_id] = store.put_artifacts([artifact])
    [back] = store.get_artifacts_by_id([artifact_id])
    assert back.properties["n"].int_value == 2**62 and back.properties["x"].double_value == 0.1
    assert back.properties["s"].string_value == "ünïcode ✓" and back.custom_properties["flag"].bool_value
    assert back.custom_properties["struct"].struct_value == struct
    assert pb.Artifact.FromString(back.SerializeToString()) == back
    [found] = store.get_artifacts_by_type("Kinds")
    assert found.id == artifact_id and store.get_artifact_type("Kinds").properties["n"] == pb.INT


def test_put_get_filter_and_lineage_subgraph(tmp_path):
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    examples = Examples("/data/examples/1", properties={"span": 7, "version": 0})
    examples.split_names = ["train", "eval"]
    examples.custom_properties["row_count_train"] = 5
    pipeline_ctx, run_ctx = store.start_run("p", "run-1")
    from pipeline.metadata import Contexts

    contexts = Contexts(pipeline_ctx, run_ctx, store.node_context("p", "Gen"))
    execution = store.register_execution("Gen", contexts, {}, node_id="Gen", pipeline_root="/r")
    store.publish_execution(execution, contexts, {"examples": examples}, cache_key="k1")
    execution_id = execution.id

    [back] = store.artifacts_by_id([examples.id])
    assert isinstance(back, Examples)
    assert back.properties == {"span": 7, "version": 0, "split_names": '["train", "eval"]'}
    assert back.custom_properties["row_count_train"] == 5
    execution, outputs = store.find_cached("p", "Gen", "k1", "/r")
    assert execution.id == execution_id and outputs["examples"].id == examples.id
    assert store.find_cached("p", "Gen", "other", "/r") is None
    assert store.find_cached("p", "Other", "k1", "/r") is None
    assert store.find_cached("p", "Gen", "k1", "/another-root") is None

    options = metadata_store.ListOptions(filter_query="properties.span.int_value = 7")
    assert [a.id for a in store.mlmd.get_artifacts(list_options=options)] == [examples.id]

    query = metadata_store_pb2_lineage_options(examples.id)
    subgraph = store.mlmd.get_lineage_subgraph(query)
    assert [e.id for e in subgraph.executions] == [execution_id]


def metadata_store_pb2_lineage_options(artifact_id):
    options = pb.LineageSubgraphQueryOptions(max_num_hops=2)
    options.starting_artifacts.filter_query = f"id = {artifact_id}"
    return options


def test_connection_config_for_each_backend(tmp_path):
    sqlite = connection_config(str(tmp_path / "m.sqlite"))
    assert sqlite.sqlite.filename_uri == str(tmp_path / "m.sqlite")
    assert connection_config("sqlite:///tmp/x.sqlite").sqlite.filename_uri == "/tmp/x.sqlite"

    pg = connection_config("postgresql://ml:s%40cret@db.local:5433/lineage").postgresql
    assert (pg.host, pg.port, pg.dbname, pg.user, pg.password) == (
        "db.local",
        "5433",
        "lineage",
        "ml",
        "s@cret",
    )

    my = connection_config("mysql://ml:pw@db:3307/mlmd").mysql
    assert (my.host, my.port, my.database, my.user, my.password) == ("db", 3307, "mlmd", "ml", "pw")


def test_unknown_store_scheme_says_what_is_accepted_and_a_password_is_never_shown():
    import pytest

    from pipeline.errors import DefinitionError
    from pipeline.metadata import masked

    with pytest.raises(DefinitionError, match="give a sqlite file path, or a postgresql:// or mysql:// URL"):
        connection_config("redis://localhost")
    with pytest.raises(DefinitionError, match=r"redis://u:\*\*\*@host: give a sqlite"):
        connection_config("redis://u:hunter2@host")
    assert masked("postgresql://mlmd:p%40ss:w@db:5432/m") == "postgresql://mlmd:***@db:5432/m"
    assert masked("mysql://root:x@h/d") == "mysql://root:***@h/d"
    assert masked("postgresql://u:p@ss@db:1/m") == "postgresql://u:***@db:1/m"  # an unencoded @ too
    assert masked("postgresql://db:5432/m") == "postgresql://db:5432/m"
    for unchanged in ("postgresql://mlmd@db/m", "/tmp/metadata.sqlite", "sqlite:///tmp/m.sqlite"):
        assert masked(unchanged) == unchanged


def test_a_store_of_the_earlier_layout_keeps_working(tmp_path):
    """Before, ModelBlessing and PushedModel declared `blessed`, `current_model_id`, ... as type
    properties. MLMD cannot drop a type's property, so such a store keeps its types; both layouts
    are read, the latest blessed model is found in either, and new artifacts are written as TFX's."""
    from pipeline.artifacts import Model, ModelBlessing, PushedModel
    from pipeline.metadata import Contexts
    from pipeline.resolvers import LatestBlessedModel, Query

    path = str(tmp_path / "old.sqlite")
    old = metadata_store.MetadataStore(connection_config(path))
    old_type = pb.ArtifactType(name="ModelBlessing")
    for name in ("blessed", "current_model_id", "baseline_model_id"):
        old_type.properties[name] = pb.INT
    old.put_artifact_type(old_type)
    pushed_type = pb.ArtifactType(name="PushedModel")
    pushed_type.properties["pushed"] = pb.INT
    pushed_type.properties["pushed_version"] = pb.INT
    old.put_artifact_type(pushed_type)

    store = MetadataStore(path)
    pipeline_ctx, run_ctx = store.start_run("p", "run-1")
    contexts = Contexts(pipeline_ctx, run_ctx, store.node_context("p", "Evaluator"))
    model = Model(str(tmp_path / "model"))
    os.makedirs(os.path.join(model.uri, "Format-Serving"))
    execution = store.register_execution("Trainer", contexts, {})
    store.publish_execution(execution, contexts, {"model": model})
    # A blessing and a push as the earlier layout wrote them: values under `properties`.
    old_blessing = pb.Artifact(
        type_id=store.artifact_type_id(ModelBlessing), uri="b1", state=pb.Artifact.LIVE
    )
    old_blessing.properties["blessed"].int_value = 1
    old_blessing.properties["current_model_id"].int_value = model.id
    old_push = pb.Artifact(type_id=store.artifact_type_id(PushedModel), uri="p1", state=pb.Artifact.LIVE)
    old_push.properties["pushed"].int_value = 1
    old_push.properties["pushed_version"].int_value = 3
    execution = store.register_execution("Evaluator", contexts, {})
    store.mlmd.put_execution(
        pb.Execution(
            id=execution.id,
            type_id=store.execution_type_id("Evaluator"),
            last_known_state=pb.Execution.COMPLETE,
        ),
        [(old_blessing, pb.Event(type=pb.Event.OUTPUT)), (old_push, pb.Event(type=pb.Event.OUTPUT))],
        contexts.all(),
    )
    query = Query(store, "p")
    assert LatestBlessedModel().resolve(query, {"model": None}).id == model.id
    assert LatestBlessedModel().resolve(query, {"model": model}) is None
    [push] = store.live_artifacts(PushedModel, "p")
    assert push.pushed_version() == 3 and push.get("pushed") == 1

    new = ModelBlessing(str(tmp_path / "b2"), custom_properties={"blessed": 0, "current_model_id": model.id})
    execution = store.register_execution("Evaluator", contexts, {})
    store.publish_execution(execution, contexts, {"blessing": new})
    [back] = [b for b in store.live_artifacts(ModelBlessing, "p") if b.id == new.id]
    assert back.custom_properties["blessed"] == 0 and back.properties == {}
