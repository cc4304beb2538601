"""Bulk scoring alone: rows/s and peak RSS of `score_examples` on penguin-like tf.Examples.

    python -m bench.scoring --model DIR [--rows 1000000,10000000] [--id-columns id] [--out bench/results/scoring.json]

DIR is a pushed penguin model, e.g. after `.venv/bin/python runner.py --pipeline-root /tmp/score-root run`,
`/tmp/score-root/serving/penguin/1` (the class names are read from its `assets/<--label>` file).

Setup, not timed: `bench/generate.py`'s seeded penguin-like rows (up to 1,000,000), made tf.Examples
as ExampleGen makes them (its CSV chunks, types and encoder) with an int64 `id` added, in gzipped
TFRecord files of one 8 MB CSV chunk each (~190,000 rows). A larger size reads the same files
again (10,000,000 rows: the 1,000,000 rows' files ten times over), so that disk space and setup
time stay small while every row is read, scored and written.

Each size is scored in a fresh process that imports TensorFlow first (its import is reported,
not counted), then calls `score_examples` once: its seconds include loading the model. Its CPU
seconds (all threads) are reported beside them: on a shared machine, the figure that other load
changes least. Memory is the peak RSS of that process, sampled every 0.1 s from outside. The
outputs are deleted after each size (10M rows write ~0.6 GB of logs and ~0.6 GB of CSV). Prints a
table, writes JSON with the time of day and the machine's load average before each size.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time

from bench.measure import run_measured, run_sizes, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_ROWS = 1_000_000


def write_examples(rows: int, folder: str) -> list[str]:
    """`rows` penguin-like tf.Examples (plus an int64 `id`, the row number) in gzipped TFRecord
    files under `folder`, one per ExampleGen CSV chunk."""
    import numpy as np
    import pyarrow as pa

    from bench.generate import HEADER, generate
    from components.example_gen import csv_to_examples as c2e
    from components.io.tfrecord import write_gzipped

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "rows.csv")
    generate(rows, path)
    header, types, start = HEADER.split(","), None, 0
    for chunk in c2e.plan_chunks(path, 0):
        batch, errors = c2e.read_chunk(chunk, header, ["NA"])
        types = types or c2e.merge_types([c2e.infer_types(batch)])
        parsed = c2e.parse_columns(batch, types)
        assert not errors and not isinstance(parsed, list), "the generator's rows parse"
        ids = pa.array(np.arange(start, start + parsed.num_rows, dtype=np.int64))
        parsed = pa.RecordBatch.from_arrays([ids, *parsed.columns], names=["id", *parsed.schema.names])
        write_gzipped(
            os.path.join(folder, f"examples-{chunk.index:05d}.gz"), list(c2e.encode_examples(parsed))
        )
        start += parsed.num_rows
    os.remove(path)
    return sorted(glob.glob(os.path.join(folder, "examples-*.gz")))


def child(rows: int, data: str, model: str, out: str, label: str, id_columns: list[str]) -> None:
    """Scores the files of `data` (over again until `rows`) with `model` into `out`; prints one
    JSON line."""
    started = time.monotonic()
    import tensorflow  # noqa: F401 - imported before timing, as a worker that preloads it

    imported = time.monotonic() - started
    from components.bulk_inferrer.scoring import score_examples

    files = sorted(glob.glob(os.path.join(data, "examples-*.gz")))
    with open(os.path.join(model, "assets", label), encoding="utf-8") as f:
        class_names = [line.rstrip("\n") for line in f if line.strip()]
    os.makedirs(out)
    cpu = time.process_time()
    report = score_examples(
        files * (rows // min(rows, BASE_ROWS)),
        model,
        out,
        id_columns=id_columns,
        class_names=class_names,
        model_version="1",
        model_name="penguin",
    )
    sizes = {os.path.basename(path): os.path.getsize(path) for path in report.files}
    print(
        "RESULT "
        + json.dumps(
            {
                "rows": report.rows,
                "seconds": report.seconds,
                "load_seconds": report.load_seconds,
                "cpu_seconds": time.process_time() - cpu,
                "import_seconds": imported,
                "class_counts": report.class_counts,
                "bytes": sizes,
            }
        ),
        flush=True,
    )


def bench_size(rows: int, workdir: str, model: str, label: str, id_columns: list[str]) -> dict:
    base = min(rows, BASE_ROWS)
    if rows % base:
        raise SystemExit(
            f"--rows: {rows:,} is not a multiple of {BASE_ROWS:,} (larger sizes repeat those rows)"
        )
    data = os.path.join(workdir, f"examples-{base}")
    if not os.path.isdir(data):
        print(f"writing {base:,} penguin-like examples (setup, not timed)...", flush=True)
        write_examples(base, data)
    out = os.path.join(workdir, f"out-{rows}")
    command = [sys.executable, "-m", "bench.scoring", "--child", str(rows), data, model, out, label]
    command += ["--id-columns", ",".join(id_columns)]
    load, at = os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M:%S %Z")
    seconds, peak, output = run_measured(command, REPO)
    shutil.rmtree(out, ignore_errors=True)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"scoring {rows:,} rows failed:\n{output[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    return {
        "rows": result["rows"],
        "step_seconds": round(result["seconds"], 2),
        "rows_per_second": round(result["rows"] / result["seconds"]),
        "model_load_seconds": round(result["load_seconds"], 2),
        "cpu_seconds": round(result["cpu_seconds"], 2),
        "total_seconds": round(seconds, 2),
        "tensorflow_import_seconds": round(result["import_seconds"], 2),
        "peak_rss_mb": round(peak / 2**20),
        "bytes_written": result["bytes"],
        "id_columns": id_columns,
        "measured_at": at,
        "load_average_before": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--model", help="a pushed penguin model's directory (see above)")
    parser.add_argument(
        "--label", default="species", help="the label vocabulary's file among the model's assets"
    )
    parser.add_argument("--id-columns", default="id", help="comma-separated; '' for none")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "scoring.json"))
    parser.add_argument(
        "--child", nargs=5, metavar=("ROWS", "DATA", "MODEL", "OUT", "LABEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    id_columns = [c for c in args.id_columns.split(",") if c]
    if args.child:
        rows, data, model, out, label = args.child
        child(int(rows), data, model, out, label, id_columns)
        return
    if not args.model:
        raise SystemExit(
            "bench.scoring needs a trained model and trains none itself; make one with\n"
            "  .venv/bin/python runner.py --pipeline-root /tmp/score-root run\n"
            "then run\n"
            "  .venv/bin/python -m bench.scoring --model /tmp/score-root/serving/penguin/1"
        )
    if not os.path.isfile(os.path.join(args.model, "assets", args.label)):
        raise SystemExit(
            f"{args.model} has no assets/{args.label}: is it a pushed penguin model? (see --label)"
        )
    results = run_sizes(
        args.rows,
        lambda rows, workdir: bench_size(rows, workdir, os.path.abspath(args.model), args.label, id_columns),
        "scoring",
    )
    write_results(args.out, results)


if __name__ == "__main__":
    main()
