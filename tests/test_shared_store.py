"""A shared metadata store: two processes run the penguin pipeline at once against one PostgreSQL
server (each on its own pipeline root and span), and the lineage in MLMD is right for both."""

import os
import subprocess
import sys

import pytest

from pipeline.artifacts import Examples, Model
from pipeline.lineage import find_artifact, lineage, raw_spans
from pipeline.metadata import MetadataStore, custom, state_name
from tests.postgres import PostgresServer, server_binaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def postgres():
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed and cannot be installed here (needs root and apt-get)")
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()


def test_two_processes_share_one_postgres_store(postgres, tmp_path):
    """Two roots, one store, at the same time with staggered starts (the second starts while the
    first is in ExampleGen): neither closes the other's running steps nor reuses its outputs."""
    url = postgres.url("lineage")

    def start(span):
        return subprocess.Popen(
            [
                sys.executable,
                "runner.py",
                "--pipeline-root",
                str(tmp_path / f"root-{span}"),
                "--metadata",
                url,
                "run",
                "--span",
                str(span),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    first = start(2007)
    head = []
    for line in first.stdout:
        head.append(line)
        if "[2/8] ExampleGen" in line:
            break
    runs = {2007: first, 2008: start(2008)}
    outputs = {span: process.communicate(timeout=600)[0] for span, process in runs.items()}
    outputs[2007] = "".join(head) + outputs[2007]
    # Both roots run the pipeline named "penguin" in one store, so whichever finishes second is
    # gated against the other's blessed model: held back (exit 3) is a correct outcome for it.
    for span, process in runs.items():
        assert process.returncode in (0, 3), outputs[span][-3000:]
        if process.returncode == 3:
            assert "HELD_BACK" in outputs[span] and "held back by Evaluator" in outputs[span]
        assert "was interrupted; marked FAILED" not in outputs[span]

    store = MetadataStore(url)
    assert len(store.pipeline_runs("penguin")) == 2
    examples = sorted(store.live_artifacts(Examples, "penguin"), key=lambda a: a.get("span"))
    # The penguin pipeline's rolling window ends at the span each run was given: 2007, and 2007-2008.
    assert [e.get("span") for e in examples if "ExampleGen" in e.uri] == [2007, 2007, 2008]
    for span in (2007, 2008):
        root = str(tmp_path / f"root-{span}")
        [model] = [m for m in store.live_artifacts(Model, "penguin") if m.uri.startswith(root)]
        tree = lineage(store, model)
        assert raw_spans(tree) == list(range(2007, span + 1))
        gen = _find(tree, "ExampleGen", span)
        assert f"span-{span}/penguins.csv" in custom(gen.execution, "resolved")
    runs_seen = {custom(r, "status") for r in store.pipeline_runs("penguin")}
    assert "COMPLETE" in runs_seen and runs_seen <= {"COMPLETE", "HELD_BACK"}
    assert all(state_name(e) != "RUNNING" for e in store.mlmd.get_executions())
    for execution in store.mlmd.get_executions():
        assert "interrupted" not in (custom(execution, "error") or "")
        root = custom(execution, "pipeline_root")
        for artifact in store.outputs_of(execution.id).values():
            assert artifact.uri.startswith(root + os.sep), (execution.id, artifact.uri, root)
    assert find_artifact(store, str(examples[0].id)).id == examples[0].id

    # The Python API answers as the command line's JSON, on PostgreSQL as on sqlite; runs of both
    # roots, each named with its root.
    import json

    from pipeline.history import History

    api = History(url)

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "runner.py", "--metadata", url, "--pipeline-name", "penguin", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    assert [m.to_dict() for m in api.models("penguin")] == cli("models", "--json")
    assert [r.to_dict() for r in api.runs("penguin")] == cli("runs", "--json")
    assert [p.to_dict() for p in api.pushes("penguin")] == cli("pushes", "--json")
    assert {r.root for r in api.runs("penguin")} == {str(tmp_path / "root-2007"), str(tmp_path / "root-2008")}
    impact = api.downstream("span:2007")
    assert {m.id for m in impact.of_type("Model")} == {m.model.id for m in api.models("penguin")}
    assert [a["id"] for a in cli("lineage", "--downstream", "span:2007", "--json")["artifacts"]] == [
        a.id for a in impact.artifacts.values() if a.stored_id not in impact.start_ids
    ]


def _find(node, component, span):
    if node.component == component and node.artifact.get("span") == span:
        return node
    for parent in node.inputs.values():
        found = _find(parent, component, span)
        if found:
            return found
    return None
