"""The whole default pipeline, end to end: wall time per step and in total, and peak RSS.

    python -m bench.pipeline [--cases embedded,200000,1000000] [--out bench/results/pipeline.json]

Cases:
  embedded   the embedded penguin data, cold (fresh pipeline root; `--repeat` times, median shown),
             then rerun with nothing changed
  N          N generated penguin-like rows in one span (bench/generate.py), cold

Each run is `runner.py run` in a fresh process, as a user would start it; step times come from
the run's own summary table, total time and memory from outside, sampled every 0.1 s over the
whole process tree (Beam workers and the Pusher's smoke-check process included): the sum of RSS,
the largest single process's RSS, and the sum of PSS (pages shared between processes, such as
TensorFlow's libraries, counted once). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

from bench.generate import generate
from bench.measure import run_measured, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING_RATE = re.compile(r"step \d+: loss [\d.]+ \((\d+) steps/s\)")
STEP_LINE = re.compile(r"^(\w+)\s+(COMPLETE|CACHED|FAILED|BLOCKED|SKIPPED)\s+(\d*)\s+([\d.]+)", re.M)


def run_case(
    name: str, root: str, data: str | None, rows: int | None, cache: bool, extra: tuple = ()
) -> dict:
    """One `runner.py run` on `root` (with `extra` flags); raises SystemExit with the output's
    tail if it did not complete."""
    command = [sys.executable, "runner.py", "--pipeline-root", root, "run", *extra]
    if data:
        command += ["--data", data]
    if not cache:
        command.append("--no-cache")
    memory: dict = {}
    seconds, peak, output = run_measured(command, REPO, memory=memory)
    steps = {m[0]: {"status": m[1], "seconds": float(m[3])} for m in STEP_LINE.findall(output)}
    if not steps or not re.search(r"^run \S+: (COMPLETE|HELD_BACK)", output, re.M):
        raise SystemExit(f"the pipeline did not complete for case {name}:\n{output[-3000:]}")
    if rows:
        for step in steps.values():
            step["rows_per_second"] = round(rows / step["seconds"]) if step["seconds"] else None
    rates = [float(r) for r in TRAINING_RATE.findall(output)[1:]]  # the first includes tracing
    return {
        "case": name,
        "training_steps_per_second": sorted(rates)[len(rates) // 2] if rates else None,
        "rows": rows,
        "total_seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 2**20),
        "peak_process_rss_mb": round(memory["peak_process_rss"] / 2**20),
        "peak_pss_mb": round(memory["peak_tree_pss"] / 2**20),
        "steps": steps,
        "evaluation": _evaluation(root),
    }


def _evaluation(root: str) -> dict | None:
    """The newest blessing's verdict and eval-split accuracy, read from the run's MLMD store."""
    from penguin.pipeline import PIPELINE_NAME
    from pipeline.artifacts import ModelBlessing
    from pipeline.metadata import MetadataStore

    store = MetadataStore(os.path.join(root, "metadata.sqlite"))
    blessings = store.live_artifacts(ModelBlessing, PIPELINE_NAME)
    if not blessings:
        return None
    newest = max(blessings, key=lambda b: b.id or 0)
    return {
        "blessed": bool(newest.get("blessed")),
        "accuracy": newest.custom_properties.get("accuracy"),
        "example_count": newest.custom_properties.get("example_count"),
    }


def embedded(workdir: str, repeat: int) -> list[dict]:
    """`repeat` cold runs on fresh roots (the median one by total time is reported, with every
    total beside it: timings on a shared 2-core machine vary by several seconds), then a rerun
    with nothing changed on the last root."""
    colds = [
        run_case("embedded, cold", os.path.join(workdir, f"root-embedded-{i}"), None, None, cache=False)
        for i in range(repeat)
    ]
    median = sorted(colds, key=lambda r: r["total_seconds"])[(len(colds) - 1) // 2]
    if repeat > 1:
        median["case"] = f"embedded, cold (median of {repeat})"
        median["all_totals"] = [r["total_seconds"] for r in colds]
    root = os.path.join(workdir, f"root-embedded-{repeat - 1}")
    return [median, run_case("embedded, rerun", root, None, None, cache=True)]


def generated(rows: int, workdir: str) -> dict:
    data = os.path.join(workdir, f"rows-{rows}")
    os.makedirs(os.path.join(data, "span-1"), exist_ok=True)
    generate(rows, os.path.join(data, "span-1", "penguins.csv"))
    root = os.path.join(workdir, f"root-{rows}")
    return run_case(f"{rows:,} rows, cold", root, os.path.join(data, "span-{SPAN}", "*.csv"), rows, False)


def print_table(results: list[dict]) -> None:
    names = [r["case"] for r in results]
    steps = list(dict.fromkeys(step for r in results for step in r["steps"]))
    width = max(16, *(len(n) for n in names))
    print(f"\n{'step':<18}" + "".join(f"{n:>{width + 2}}" for n in names))
    for step in steps:
        cells = []
        for r in results:
            s = r["steps"].get(step)
            cells.append(
                ""
                if s is None
                else f"{s['seconds']:.1f} s"
                + ("" if s["status"] == "COMPLETE" else f" {s['status'].lower()}")
            )
        print(f"{step:<18}" + "".join(f"{c:>{width + 2}}" for c in cells))
    print(f"{'whole run':<18}" + "".join(f"{r['total_seconds']:>{width}.1f} s" for r in results))
    for key, label in (
        ("peak_rss_mb", "peak RSS, tree"),
        ("peak_process_rss_mb", "peak RSS, 1 proc"),
        ("peak_pss_mb", "peak PSS, tree"),
    ):
        print(f"{label:<18}" + "".join(f"{r[key]:>{width - 1}} MB" for r in results))
    accuracy = [r["evaluation"] and r["evaluation"]["accuracy"] for r in results]
    print(
        f"{'eval accuracy':<18}"
        + "".join(f"{'' if a is None else f'{a:.3f}':>{width + 2}}" for a in accuracy)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="embedded,200000,1000000")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "pipeline.json"))
    parser.add_argument("--repeat", type=int, default=3, help="cold runs of the embedded data (median shown)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in args.cases.split(","):
            new = embedded(workdir, args.repeat) if case == "embedded" else [generated(int(case), workdir)]
            for r in new:
                print(
                    f"{r['case']}: {r['total_seconds']:.1f} s, peak RSS {r['peak_rss_mb']} MB "
                    f"(largest process {r['peak_process_rss_mb']} MB, tree PSS {r['peak_pss_mb']} MB)"
                    + (
                        f"; cold runs took {', '.join(f'{t:.1f}' for t in r['all_totals'])} s"
                        if "all_totals" in r
                        else ""
                    ),
                    flush=True,
                )
            results += new
    print_table(results)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
