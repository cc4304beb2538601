"""Transform throughput and peak memory at 100k and 1M generated penguin rows.

    python -m bench.transform [--sizes 100000,1000000] [--out bench/results/transform.json]

For each size, one process runs ImportSchemaGen and ExampleGen over a generated span; a fresh
process then runs the same pipeline with Transform (penguin/module.py) added, so the upstream
steps are cached and what is measured is Transform plus start-up: the step's seconds, the
process's wall time, and the peak RSS of its process tree (Beam workers included).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from bench.generate import generate
from bench.measure import run_measured, run_sizes, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUIN_MODULE = os.path.join(REPO, "penguin", "module.py")
STEP_LINE = re.compile(r"^step (\w+) (\w+) ([\d.]+)$", re.M)


def bench_size(rows: int, workdir: str) -> dict:
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
    subprocess.run(child, cwd=REPO, check=True, capture_output=True)
    seconds, peak, output = run_measured([*child, "--with-transform"], REPO)
    steps = {name: (status, float(s)) for name, status, s in STEP_LINE.findall(output)}
    if steps.get("Transform", ("",))[0] != "COMPLETE" or steps["ExampleGen"][0] != "CACHED":
        raise SystemExit(f"Transform did not run alone at {rows} rows:\n{output[-3000:]}")
    step = steps["Transform"][1]
    return {
        "rows": rows,
        "step_seconds": round(step, 2),
        "total_seconds": round(seconds, 2),
        "rows_per_second": round(rows / step),
        "peak_rss_mb": round(peak / 2**20),
    }


def run_child(root: str, pattern: str, with_transform: bool) -> None:
    """Runs ImportSchemaGen -> ExampleGen (-> Transform) and prints one `step` line per node."""
    import schemas
    from components.example_gen.component import ExampleGen
    from components.schema_gen.component import ImportSchemaGen
    from components.transform.component import Transform
    from pipeline import Pipeline
    from pipeline.local_runner import RunOptions, run_pipeline

    schema_gen = ImportSchemaGen(schema_file=schemas.PENGUIN_SCHEMA)
    example_gen = ExampleGen(input_pattern=pattern, schema=schema_gen.outputs["schema"])
    nodes = [schema_gen, example_gen]
    if with_transform:
        nodes.append(
            Transform(
                examples=example_gen.outputs["examples"],
                schema=schema_gen.outputs["schema"],
                module_file=PENGUIN_MODULE,
            )
        )
    result = run_pipeline(Pipeline("bench-transform", nodes), RunOptions(pipeline_root=root))
    for step in result.steps:
        print(f"step {step.node_id} {step.status} {step.seconds:.3f}")
    if not result.ok:
        raise SystemExit(str(result.error))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "transform.json"))
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "PATTERN"), help=argparse.SUPPRESS)
    parser.add_argument("--with-transform", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, pattern = args.child
        run_child(root, pattern, args.with_transform)
        return
    results = run_sizes(args.sizes, bench_size, "Transform")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
