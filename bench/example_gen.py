"""ExampleGen throughput and peak memory at 10k, 100k and 1M generated penguin rows.

    python -m bench.example_gen [--sizes 10000,100000,1000000] [--out bench/results/example_gen.json]

Each size runs ImportSchemaGen and ExampleGen in a fresh process on a fresh pipeline root, so the
figures include start-up, exactly as a user would wait. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.generate import generate
from bench.measure import run_measured, run_sizes, write_results
from bench.transform import STEP_LINE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_size(rows: int, workdir: str) -> dict:
    """ImportSchemaGen -> ExampleGen alone, in a fresh process (bench.transform's child mode)."""
    data = os.path.join(workdir, f"rows-{rows}", "span-1")
    os.makedirs(data, exist_ok=True)
    generate(rows, os.path.join(data, "penguins.csv"))
    pattern = os.path.join(workdir, f"rows-{rows}", "span-{SPAN}", "*.csv")
    child = [
        sys.executable,
        "-m",
        "bench.transform",
        "--child",
        os.path.join(workdir, f"root-{rows}"),
        pattern,
    ]
    seconds, peak, output = run_measured(child, REPO)
    steps = {name: (status, float(s)) for name, status, s in STEP_LINE.findall(output)}
    if steps.get("ExampleGen", ("",))[0] != "COMPLETE":
        raise SystemExit(f"ExampleGen did not complete at {rows} rows:\n{output[-3000:]}")
    step = steps["ExampleGen"][1]
    return {
        "rows": rows,
        "step_seconds": step,
        "total_seconds": round(seconds, 2),
        "rows_per_second": round(rows / step),
        "peak_rss_mb": round(peak / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "example_gen.json"))
    args = parser.parse_args()
    results = run_sizes(args.sizes, bench_size, "ExampleGen")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
