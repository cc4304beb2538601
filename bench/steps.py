"""Every step of the default pipeline on generated penguin rows: seconds and rows/s per step, peak RSS.

    python -m bench.steps [--sizes 100000,1000000] [--out bench/results/steps.json]

Each size runs `runner.py run --no-cache` in a fresh process on a fresh pipeline root over one
generated span, as a user would; the step times come from the run's summary table, the peak RSS
from sampling the whole process tree (Beam workers included). Prints a table and writes JSON.
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
STEP_LINE = re.compile(r"^(\w+)\s+(COMPLETE|CACHED|FAILED|BLOCKED|SKIPPED)\s+(\d*)\s+([\d.]+)", re.M)


def bench_pipeline(rows: int, workdir: str) -> dict:
    data = os.path.join(workdir, f"rows-{rows}")
    os.makedirs(os.path.join(data, "span-1"), exist_ok=True)
    generate(rows, os.path.join(data, "span-1", "penguins.csv"))
    command = [
        sys.executable,
        "runner.py",
        "--pipeline-root",
        os.path.join(workdir, f"root-{rows}"),
        "run",
        "--data",
        os.path.join(data, "span-{SPAN}", "*.csv"),
        "--no-cache",
    ]
    seconds, peak, output = run_measured(command, REPO)
    steps = {m[0]: {"status": m[1], "seconds": float(m[3])} for m in STEP_LINE.findall(output)}
    if not steps or any(s["status"] == "FAILED" for s in steps.values()):
        raise SystemExit(f"the pipeline failed at {rows} rows:\n{output[-3000:]}")
    for step in steps.values():
        step["rows_per_second"] = round(rows / step["seconds"]) if step["seconds"] else None
    return {
        "rows": rows,
        "total_seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 2**20),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "steps.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for rows in map(int, args.sizes.split(",")):
            result = bench_pipeline(rows, workdir)
            results.append(result)
            print(
                f"{rows:>9} rows: whole run {result['total_seconds']:.1f} s, peak RSS {result['peak_rss_mb']} MB"
            )
            for name, step in result["steps"].items():
                rate = f"{step['rows_per_second']:>9} rows/s" if step["rows_per_second"] else ""
                print(f"    {name:<18} {step['status']:<9} {step['seconds']:7.1f} s  {rate}", flush=True)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
