"""Wide data: ExampleGen to ExampleValidator on many columns (numbers and strings), per step.

    python -m bench.wide [--rows 10000] [--columns 2000] [--root DIR]

Writes a span of `--rows` rows and `--columns` columns (half floats, half strings of 20 values),
then runs ExampleGen, StatisticsGen, SchemaGen (inferred) and ExampleValidator on it in this
process, then a second span in which every string column gained a value and every tenth number
column moved (the gate blocks it: a run's output summarizes many findings of one kind in a few
lines, the page keeps them all). Prints each step's seconds; the target is the first run in under
60 s at 10k x 2,000, and time linear in the columns.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time


def write_span(folder: str, rows: int, columns: int, seed: int, shifted: bool) -> None:
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    header = [f"n{i}" if i % 2 == 0 else f"s{i}" for i in range(columns)]
    with open(os.path.join(folder, "wide.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for _ in range(rows):
            row = []
            for i in range(columns):
                if i % 2 == 0:
                    shift = 5.0 if shifted and i % 20 == 0 else 0.0
                    row.append(f"{rng.gauss(i % 7 + shift, 1):.3f}")
                else:
                    values = 21 if shifted else 20
                    row.append(f"v{rng.randrange(values)}")
            writer.writerow(row)


def main() -> None:
    from pipeline.quiet import quiet_libraries

    quiet_libraries()
    from components.example_gen.component import ExampleGen
    from components.example_validator.component import ExampleValidator
    from components.schema_gen.component import SchemaGen
    from components.statistics_gen.component import StatisticsGen
    from pipeline import Pipeline
    from pipeline.local_runner import RunOptions, run_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--columns", type=int, default=2_000)
    parser.add_argument("--root")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or os.path.join(scratch, "root")
        data = os.path.join(scratch, "data")
        started = time.monotonic()
        write_span(os.path.join(data, "span-1"), args.rows, args.columns, 1, shifted=False)
        print(
            f"wrote {args.rows:,} rows x {args.columns:,} columns in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        lines: list[str] = []

        def pipeline() -> Pipeline:
            example_gen = ExampleGen(input_pattern=os.path.join(data, "span-{SPAN}", "*.csv"))
            statistics = StatisticsGen(examples=example_gen.outputs["examples"])
            schema = SchemaGen(statistics=statistics.outputs["statistics"])
            validator = ExampleValidator(
                statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
            )
            return Pipeline("wide", [example_gen, statistics, schema, validator])

        for label, span in (("first span", 1), ("second span, shifted", 2)):
            if span == 2:
                write_span(os.path.join(data, "span-2"), args.rows, args.columns, 2, shifted=True)
            lines.clear()
            began = time.monotonic()
            result = run_pipeline(pipeline(), RunOptions(pipeline_root=root, log=lines.append))
            total = time.monotonic() - began
            steps = ", ".join(f"{s.node_id} {s.seconds:.1f} s" for s in result.steps)
            print(f"{label}: {result.status} in {total:.1f} s ({steps})")
            printed = [line for line in lines if "anomal" in line or "warning" in line or "drift" in line]
            print(f"  {len(lines)} output lines, of which {len(printed)} about findings")
            for line in printed[-6:]:
                print("   ", line.strip()[:160])


if __name__ == "__main__":
    main()
