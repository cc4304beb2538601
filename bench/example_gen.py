"""ExampleGen throughput and peak memory at 10k, 100k and 1M generated penguin rows.

    python -m bench.example_gen [--sizes 10000,100000,1000000] [--out bench/results/example_gen.json]

Each size runs `runner.py run --no-cache` in a fresh process on a fresh pipeline root, so the
figures include start-up, exactly as a user would wait. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile

from bench.generate import generate
from bench.measure import run_measured

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_size(rows: int, workdir: str) -> dict:
    data = os.path.join(workdir, f"rows-{rows}", "span-1")
    os.makedirs(data, exist_ok=True)
    generate(rows, os.path.join(data, "penguins.csv"))
    pattern = os.path.join(workdir, f"rows-{rows}", "span-{SPAN}", "*.csv")
    root = os.path.join(workdir, f"root-{rows}")
    seconds, peak, output = run_measured(
        [sys.executable, "runner.py", "--pipeline-root", root, "run", "--data", pattern, "--no-cache"], REPO
    )
    match = re.search(r"ExampleGen\s+COMPLETE\s+\d+\s+([\d.]+)", output)
    if not match:
        raise SystemExit(f"ExampleGen did not complete at {rows} rows:\n{output[-3000:]}")
    step = float(match.group(1))
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
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for rows in map(int, args.sizes.split(",")):
            results.append(bench_size(rows, workdir))
            r = results[-1]
            print(
                f"{r['rows']:>9} rows  step {r['step_seconds']:7.1f} s  {r['rows_per_second']:>9} rows/s  "
                f"process {r['total_seconds']:7.1f} s  peak RSS {r['peak_rss_mb']:>6} MB",
                flush=True,
            )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "results": results,
            },
            f,
            indent=2,
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
