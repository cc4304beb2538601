"""The local runner on a real sqlite MLMD store: records, caching, failure, staging, lock, recovery."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline import LockHeldError
from pipeline.errors import DefinitionError
from pipeline.local_runner import RunOptions, run_pipeline
from pipeline.lock import RootLock
from pipeline.metadata import MetadataStore, custom, state_name
from tests.toy_components import toy_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(root, **kwargs):
    options = RunOptions(
        pipeline_root=str(root),
        log=lambda message: None,
        enable_cache=kwargs.pop("enable_cache", True),
        rerun_from=kwargs.pop("rerun_from", None),
    )
    return run_pipeline(toy_pipeline(**kwargs), options)


def store_of(root) -> MetadataStore:
    return MetadataStore(os.path.join(root, "metadata.sqlite"))


def executions(root):
    store = store_of(root)
    return sorted(store.mlmd.get_executions(), key=lambda e: e.id)


def test_outputs_land_at_root_component_output_execution(tmp_path):
    result = run(tmp_path)
    assert result.ok
    step = result.step("Write")
    uri = step.outputs["examples"].uri
    assert uri == os.path.join(str(tmp_path), "Write", "examples", str(step.execution_id))
    with open(os.path.join(uri, "Split-train", "data.txt")) as f:
        assert f.read() == "hello"
    assert not [p for p in os.listdir(os.path.dirname(uri)) if p.startswith(".staging")]


def test_metadata_records_contexts_events_and_properties(tmp_path):
    result = run(tmp_path)
    store = store_of(tmp_path)
    [run_ctx] = store.pipeline_runs("toy")
    assert run_ctx.name == result.run_id and custom(run_ctx, "status") == "COMPLETE"
    assert [c.name for c in store.mlmd.get_parent_contexts_by_context(run_ctx.id)] == ["toy"]
    write, read = executions(tmp_path)
    assert state_name(write) == state_name(read) == "COMPLETE"
    contexts = {
        (store.mlmd.get_context_types_by_id([c.type_id])[0].name, c.name)
        for c in store.mlmd.get_contexts_by_execution(read.id)
    }
    assert contexts == {("pipeline", "toy"), ("pipeline_run", result.run_id), ("node", "toy.Read")}
    examples = store.outputs_of(write.id)["examples"]
    assert examples.state == "LIVE" and examples.properties["span"] == 1
    assert examples.split_names == ["train"]
    assert store.inputs_of(read.id)["examples"].id == examples.id
    schema = store.outputs_of(read.id)["schema"]
    assert store.producer_of(schema.id).id == read.id


def test_second_identical_run_is_fully_cached(tmp_path):
    first = run(tmp_path)
    second = run(tmp_path)
    assert [s.status for s in second.steps] == ["CACHED", "CACHED"]
    assert second.step("Read").outputs["schema"].id == first.step("Read").outputs["schema"].id
    cached = executions(tmp_path)[-1]
    assert state_name(cached) == "CACHED"
    assert custom(cached, "cached_from") == first.step("Read").execution_id
    events = store_of(tmp_path).mlmd.get_events_by_execution_ids([cached.id])
    assert {e.type for e in events} == {pb.Event.INPUT, pb.Event.OUTPUT}


def test_next_step_warms_up_while_the_one_before_executes_and_is_released_at_the_end(tmp_path):
    from tests.toy_components import WARM_UP_EVENTS

    WARM_UP_EVENTS.clear()
    assert run(tmp_path).ok
    assert WARM_UP_EVENTS == ["warmed", "released"]
    WARM_UP_EVENTS.clear()
    run(tmp_path)  # Write is cached: nothing to overlap, so no warm-up
    run(tmp_path, suffix="?")  # Read runs, but Write before it is cached
    assert WARM_UP_EVENTS == []
    result = run(tmp_path, text="bye", fail=True)  # Write fails: the warm-up is undone all the same
    assert not result.ok and WARM_UP_EVENTS == ["warmed", "released"]


def test_changed_parameter_reruns_only_that_step(tmp_path):
    run(tmp_path)
    result = run(tmp_path, suffix="?")
    assert [s.status for s in result.steps] == ["CACHED", "COMPLETE"]


def test_changed_upstream_output_reruns_downstream(tmp_path):
    run(tmp_path)
    result = run(tmp_path, text="bye")
    assert [s.status for s in result.steps] == ["COMPLETE", "COMPLETE"]


def test_no_cache_runs_everything(tmp_path):
    run(tmp_path)
    result = run(tmp_path, enable_cache=False)
    assert [s.status for s in result.steps] == ["COMPLETE", "COMPLETE"]


def test_rerun_from_a_step_runs_it_and_the_steps_after_it(tmp_path):
    first = run(tmp_path)
    result = run(tmp_path, rerun_from="Read")
    assert [s.status for s in result.steps] == ["CACHED", "COMPLETE"]
    assert result.step("Read").execution_id != first.step("Read").execution_id
    assert [s.status for s in run(tmp_path, rerun_from="Write").steps] == ["COMPLETE", "COMPLETE"]
    with pytest.raises(DefinitionError, match="no step 'Train'; its steps: Write, Read"):
        run(tmp_path, rerun_from="Train")


def test_deleted_outputs_are_a_cache_miss(tmp_path):
    import shutil

    first = run(tmp_path)
    shutil.rmtree(first.step("Write").outputs["examples"].uri)
    assert run(tmp_path).step("Write").status == "COMPLETE"


def test_damaged_outputs_are_a_cache_miss_and_rebuilt(tmp_path):
    first = run(tmp_path)
    data = os.path.join(first.step("Write").outputs["examples"].split_uri("train"), "data.txt")
    with open(data, "w") as f:
        f.write("hel")  # truncated
    lines = []
    options = RunOptions(pipeline_root=str(tmp_path), log=lines.append)
    second = run_pipeline(toy_pipeline(), options)
    assert [s.status for s in second.steps] == ["COMPLETE", "COMPLETE"]  # a new artifact downstream too
    assert any("cache miss: an output of execution" in line and "changed on disk" in line for line in lines)
    store = store_of(tmp_path)
    [damaged] = store.artifacts_by_id([first.step("Write").outputs["examples"].id])
    assert damaged.state == "ABANDONED" and "changed on disk" in damaged.get("abandoned")


def test_a_file_rewritten_at_the_same_size_is_damage_and_old_fingerprints_still_check():
    """Content fingerprints for artifacts up to 64 MB (CONTENT_FINGERPRINT_MAX_BYTES), so a
    same-size rewrite is caught; a fingerprint recorded before (names and sizes, no prefix) is
    checked as it was made, so a store's artifacts stay reusable."""
    import hashlib
    import tempfile

    from pipeline.artifacts import Examples
    from pipeline.cache import directory_fingerprint
    from pipeline.launcher import damage

    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "data.txt"), "w") as f:
            f.write("hello")
        examples = Examples(directory)
        examples.custom_properties["fingerprint"] = directory_fingerprint(directory)
        assert examples.custom_properties["fingerprint"].startswith("content:") and damage(examples) is None
        legacy = hashlib.sha256(b"data.txt\x005\n").hexdigest()  # names and sizes, as recorded before
        old = Examples(directory)
        old.custom_properties["fingerprint"] = legacy
        assert damage(old) is None
        with open(os.path.join(directory, "data.txt"), "w") as f:
            f.write("jello")  # the same size
        assert "a file was changed" in damage(examples)
        assert damage(old) is None  # names and sizes cannot tell
        with open(os.path.join(directory, "more.txt"), "w") as f:
            f.write("!")
        assert "added, removed or resized" in damage(old)


def test_failure_is_recorded_and_stops_downstream(tmp_path):
    result = run(tmp_path, fail=True)
    assert not result.ok
    assert [s.status for s in result.steps] == ["FAILED", "SKIPPED"]
    assert str(result.error) == (
        f"Write failed (execution {result.error.execution_id}): asked to fail, line 7 of nothing"
    )
    [failed] = executions(tmp_path)
    assert state_name(failed) == "FAILED"
    assert custom(failed, "error") == "asked to fail, line 7 of nothing"
    store = store_of(tmp_path)
    assert store.outputs_of(failed.id) == {}
    assert not [a for a in store.mlmd.get_artifacts() if a.state == pb.Artifact.LIVE]
    assert os.listdir(os.path.join(tmp_path, "Write", "examples")) == []
    assert custom(store.pipeline_runs("toy")[0], "status") == "FAILED"


def test_unexpected_exception_keeps_its_traceback_in_metadata(tmp_path):
    from pipeline import Component, OutputArtifact, Pipeline
    from pipeline.artifacts import Examples
    from tests.toy_components import WriteParams

    def broken(ctx, params, examples: OutputArtifact[Examples]):
        return {}["missing"]

    node = Component(name="Broken", run=broken, parameters=WriteParams, version="1")()
    result = run_pipeline(Pipeline("toy", [node]), RunOptions(str(tmp_path), log=lambda m: None))
    assert "KeyError: 'missing'" in str(result.error)
    [failed] = executions(tmp_path)
    assert "in broken" in custom(failed, "traceback")


def test_second_run_on_a_locked_root_refuses_with_the_holder(tmp_path):
    with RootLock(str(tmp_path), "other-run"):
        with pytest.raises(LockHeldError, match=r"another run holds the lock on .* \(run other-run, pid \d+"):
            run(tmp_path)
    assert run(tmp_path).ok


def test_waiting_run_starts_when_the_lock_is_released(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from pipeline.lock import RootLock
        with RootLock({str(tmp_path)!r}, "holder"):
            print("locked", flush=True)
            time.sleep(1.5)
    """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    options = RunOptions(pipeline_root=str(tmp_path), lock_wait_seconds=30, log=lambda m: None)
    assert run_pipeline(toy_pipeline(), options).ok
    assert time.monotonic() - started > 0.5
    holder.wait()


def test_killed_run_is_closed_by_the_next_one(tmp_path):
    """SIGKILL in the middle of a step: the next run marks it FAILED, removes its staged output,
    and finishes; no execution is left RUNNING."""
    script = textwrap.dedent(f"""
        from pipeline.local_runner import RunOptions, run_pipeline
        from tests.toy_components import toy_pipeline
        run_pipeline(toy_pipeline(sleep=60), RunOptions(pipeline_root={str(tmp_path)!r}))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL)
    marker = os.path.join(tmp_path, "write-started")
    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    staged = open(marker).read()
    assert os.path.basename(staged).startswith(".staging-") and os.path.isdir(staged)
    child.send_signal(signal.SIGKILL)
    child.wait()

    result = run(tmp_path)
    assert result.ok
    states = [state_name(e) for e in executions(tmp_path)]
    assert states == ["FAILED", "COMPLETE", "COMPLETE"]
    interrupted = executions(tmp_path)[0]
    assert custom(interrupted, "error").startswith("interrupted: the process running it stopped")
    assert not os.path.exists(staged)
    runs = store_of(tmp_path).pipeline_runs("toy")
    assert [custom(r, "status") for r in runs] == ["COMPLETE", "INTERRUPTED"]


def shared_run(root, store, **kwargs):
    options = RunOptions(pipeline_root=str(root), metadata=str(store), log=lambda message: None)
    return run_pipeline(toy_pipeline(**kwargs), options)


def test_roots_on_one_store_never_reuse_each_others_outputs(tmp_path):
    store = tmp_path / "shared.sqlite"
    assert [s.status for s in shared_run(tmp_path / "a", store).steps] == ["COMPLETE", "COMPLETE"]
    b = shared_run(tmp_path / "b", store)
    assert [s.status for s in b.steps] == ["COMPLETE", "COMPLETE"]
    assert all(a.uri.startswith(str(tmp_path / "b")) for s in b.steps for a in s.outputs.values())
    assert [s.status for s in shared_run(tmp_path / "a", store).steps] == ["CACHED", "CACHED"]


def test_a_run_on_another_root_leaves_a_running_step_alone_and_its_own_root_closes_it(tmp_path):
    """Two roots on one store: root a's step is running (then killed) while root b runs. Root b
    neither closes it nor touches its files; `runs` shows it INTERRUPTED once its process is gone;
    the next run on root a closes it."""
    from pipeline.history import runs

    store = tmp_path / "shared.sqlite"
    script = textwrap.dedent(f"""
        from pipeline.local_runner import RunOptions, run_pipeline
        from tests.toy_components import toy_pipeline
        run_pipeline(toy_pipeline(sleep=60), RunOptions(pipeline_root={str(tmp_path / "a")!r}, metadata={str(store)!r}))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL)
    marker = tmp_path / "a" / "write-started"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    staged = marker.read_text()
    try:
        assert shared_run(tmp_path / "b", store, text="other").ok
        shared = MetadataStore(str(store))
        running = [e for e in shared.mlmd.get_executions() if state_name(e) == "RUNNING"]
        assert len(running) == 1 and custom(running[0], "pipeline_root") == str(tmp_path / "a")
        assert os.path.isdir(staged)
        assert [r.status for r in runs(shared, "toy")] == ["COMPLETE", "RUNNING"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert [r.status for r in runs(MetadataStore(str(store)), "toy")] == ["COMPLETE", "INTERRUPTED"]
    assert shared_run(tmp_path / "a", store).ok
    shared = MetadataStore(str(store))
    [closed] = [e for e in shared.mlmd.get_executions() if state_name(e) == "FAILED"]
    assert custom(closed, "error").startswith("interrupted:") and not os.path.exists(staged)
    assert all(state_name(e) != "RUNNING" for e in shared.mlmd.get_executions())


def test_a_waiting_run_says_whom_it_waits_for(tmp_path):
    lines = []
    with RootLock(str(tmp_path), "holder"):
        with pytest.raises(LockHeldError):
            with RootLock(str(tmp_path), "waiter", wait_seconds=0.3, log=lines.append):
                pass
    assert lines and lines[0].startswith("waiting up to 0.3 s for run holder, pid ")


def test_a_run_that_reuses_everything_writes_a_pointer_not_another_full_report(tmp_path):
    first = run(tmp_path)
    again = run(tmp_path)
    assert [s.status for s in again.steps] == ["CACHED", "CACHED"]
    pointer = open(again.report).read()
    assert os.path.basename(first.report) in pointer and "Nothing new" in pointer
    assert os.path.getsize(again.report) < 1000 < os.path.getsize(first.report)


def test_temporary_files_live_under_the_root_and_go_with_the_run(tmp_path):
    stale = tmp_path / ".tmp" / "20200101T000000-dead"
    os.makedirs(stale)  # left by a killed run
    seen = []

    import tempfile

    from pipeline import Component, OutputArtifact
    from pipeline.artifacts import Examples
    from tests.toy_components import WriteParams

    def write(ctx, params, examples: OutputArtifact[Examples]):
        seen.append(tempfile.gettempdir())
        os.makedirs(examples.split_uri("train"))
        examples.set("span", 1)

    probe = Component(name="Probe", run=write, parameters=WriteParams, version="1")
    from pipeline import Pipeline

    result = run_pipeline(
        Pipeline("tmp", [probe()]), RunOptions(pipeline_root=str(tmp_path), log=lambda m: None)
    )
    assert result.ok
    assert seen == [str(tmp_path / ".tmp" / result.run_id)]
    assert os.listdir(tmp_path / ".tmp") == [] and tempfile.gettempdir() != seen[0]


def test_retention_keeps_the_last_runs_and_marks_the_rest_deleted(tmp_path):
    """A job that runs forever: ten runs, each with new outputs, under a retention of three runs.
    The root keeps three runs' artifacts and reports; MLMD calls the others DELETED, and their
    files are gone."""
    from pipeline.artifacts import Examples
    from pipeline.retention import Retention

    for i in range(10):
        pipeline = toy_pipeline(text=f"span {i}")
        pipeline.retention = Retention(keep_runs=3, keep_pushed=1)
        assert run_pipeline(pipeline, RunOptions(pipeline_root=str(tmp_path), log=lambda m: None)).ok
    store = store_of(tmp_path)
    live = store.live_artifacts(Examples, "toy")
    assert len(live) == 3 and sorted(os.listdir(tmp_path / "Write" / "examples")) == sorted(
        os.path.basename(a.uri) for a in live
    )
    deleted = [a for a in store.mlmd.get_artifacts() if a.state == pb.Artifact.DELETED]
    assert len(deleted) == 14 and not any(os.path.exists(a.uri) for a in deleted)
    assert len(os.listdir(tmp_path / "reports")) == 3
