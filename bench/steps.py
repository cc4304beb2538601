"""Steps as scheduler tasks against one process: what a task per step costs.

    python -m bench.steps [--pipeline-root DIR]

1. The penguin pipeline on the embedded data, cold, as one `runner.py run`, then as eight
   `runner.py step STEP --run-id R` processes one after another (what an Airflow or KFP run does,
   without the scheduler's own overhead) on a fresh root. Per step: the task's wall seconds, the
   step's own seconds (as the store records them) and the difference, the price of a process.
2. Metadata round trips per step, executed and cached, on the toy pipeline in this process: each
   call to ML Metadata's store counted as a read (get_*) or a write (put_*).

Prints tables; writes bench/results/steps.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from bench.measure import run_measured, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = [sys.executable, os.path.join(REPO, "runner.py")]


def step_seconds(root: str, run_id: str | None = None) -> dict[str, float]:
    """Each step's own seconds, as the store records them, in the run (default: the root's only run)."""
    from pipeline.metadata import MetadataStore, custom

    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    if run_id is None:
        (run,) = store.mlmd.get_contexts_by_type("pipeline_run")
    else:
        run = store.mlmd.get_context_by_type_and_name("pipeline_run", run_id)
    return {custom(e, "node_id"): float(custom(e, "seconds", 0.0)) for e in store.executions_in(run)}


def processes(base: str) -> dict:
    from pipeline.usercode import load_pipeline

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    whole, _, out = run_measured([*RUNNER, "run", "--pipeline-root", os.path.join(base, "one")], REPO, env)
    assert "COMPLETE" in out, out[-2000:]
    order = [node.id for node in load_pipeline(os.path.join(REPO, "penguin", "pipeline.py")).validate()]
    root = os.path.join(base, "steps")
    walls = {}
    for node in order:
        walls[node], _, out = run_measured(
            [*RUNNER, "step", node, "--run-id", "bench", "--pipeline-root", root], REPO, env
        )
        assert "COMPLETE" in out or "HELD_BACK" in out, out[-2000:]
    own, in_run = step_seconds(root, "bench"), step_seconds(os.path.join(base, "one"))
    total = sum(walls.values())
    print(f"\none process: {whole:.1f} s; {len(order)} step processes: {total:.1f} s ({total / whole:.2f}x)")
    print("in run s: the step inside the one `runner.py run`; task s: its whole `runner.py step` process;")
    print("step s: the step's own time in that process; process s: task s - step s")
    print(f"{'step':<18}{'in run s':>9}{'task s':>8}{'step s':>8}{'process s':>11}{'task - in run':>15}")
    for n in order:
        print(
            f"{n:<18}{in_run[n]:>9.2f}{walls[n]:>8.2f}{own[n]:>8.2f}{walls[n] - own[n]:>11.2f}"
            f"{walls[n] - in_run[n]:>15.2f}"
        )
    return {
        "one_process_s": whole,
        "steps": [{"step": n, "in_run_s": in_run[n], "task_s": walls[n], "own_s": own[n]} for n in order],
    }


class _Counting:
    """ML Metadata's store with every call counted."""

    def __init__(self, inner, counts: dict):
        self._inner, self._counts = inner, counts

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            kind = "writes" if name.startswith("put_") else "reads"
            self._counts[kind] = self._counts.get(kind, 0) + 1
            return attr(*args, **kwargs)

        return call


def round_trips(base: str) -> list[dict]:
    from pipeline import local_runner, metadata
    from pipeline.local_runner import RunOptions, run_pipeline
    from pipeline.step import StepOptions, run_step
    from tests.toy_components import toy_pipeline

    counts: dict = {}
    original = metadata.MetadataStore.__init__

    def counted(self, spec: str, create: bool = True, read_only: bool = False) -> None:
        original(self, spec, create, read_only)
        self.mlmd = _Counting(self.mlmd, counts)

    metadata.MetadataStore.__init__ = counted  # type: ignore[method-assign]  # counts round trips
    launch = local_runner.launch

    def counted_launch(scope, node, upstream, executor):
        before = dict(counts)
        started = time.monotonic()
        try:
            return launch(scope, node, upstream, executor)
        finally:
            rows.append(
                row(
                    "run",
                    node.id,
                    {k: counts.get(k, 0) - before.get(k, 0) for k in ("reads", "writes")},
                    started,
                )
            )

    def row(path: str, node: str, seen: dict, started: float) -> dict:
        return {
            "path": path,
            "step": node,
            "as": state["as"],
            "reads": seen.get("reads", 0),
            "writes": seen.get("writes", 0),
            "seconds": time.monotonic() - started,
        }

    rows: list[dict] = []
    state = {"as": "executed"}
    local_runner.launch = counted_launch  # type: ignore[assignment]
    quiet = lambda line: None  # noqa: E731
    try:
        for state["as"] in ("executed", "cached"):
            run_pipeline(
                toy_pipeline(), RunOptions(os.path.join(base, "toy-run"), log=quiet, step_worker=False)
            )
        for run_id, state["as"] in (("r1", "executed"), ("r2", "cached")):
            for node in ("Write", "Read"):
                counts.clear()
                started = time.monotonic()
                run_step(
                    toy_pipeline(), node, StepOptions(os.path.join(base, "toy-steps"), run_id, log=quiet)
                )
                rows.append(row("step", node, counts, started))
    finally:
        metadata.MetadataStore.__init__ = original  # type: ignore[method-assign]
        local_runner.launch = launch
    print("\nmetadata round trips per step (the toy pipeline). run: inside `runner.py run`, the run's")
    print("opening and closing not counted; step: a whole `runner.py step` task, Read being the last")
    print("task, which closes the run, and the first task of a run opening it")
    print(f"{'path':<6}{'step':<8}{'as':<10}{'reads':>7}{'writes':>8}{'seconds':>9}")
    for r in rows:
        print(f"{r['path']:<6}{r['step']:<8}{r['as']:<10}{r['reads']:>7}{r['writes']:>8}{r['seconds']:>9.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline-root", help="where to run (default: a temporary directory)")
    args = parser.parse_args()
    base = args.pipeline_root or tempfile.mkdtemp(prefix="bench-steps-")
    results = {"round_trips": round_trips(base), **processes(base)}
    write_results(os.path.join(REPO, "bench", "results", "steps.json"), [results])


if __name__ == "__main__":
    main()
