"""Batch scoring beside TFX 1.16's BulkInferrer: per size, TFX's penguin pipeline scoring N rows,
then this project's `runner.py score` on N rows, one after the other, so that the ratios hold on a
machine whose speed drifts from minute to minute.

    python -m bench.score_side_by_side --peer-python TFX_VENV/bin/python [--rows 100000,1000000] \\
        [--peer-dir ../shared/peer] [--out bench/results/score_side_by_side.json]

The peer is `penguin_pipeline.py --score DIR` of `--peer-dir` (see its README.md) on a fresh root:
it trains on the real penguin rows, blesses and pushes, then a second CsvExampleGen reads N
synthetic rows without the label (`prepare_data.py DIR N --no-label`) and TFX's BulkInferrer
scores them with the blessed model. Its per-step seconds come from its MLMD store
(`mlmd_report.py --json`): the scoring ExampleGen and the BulkInferrer, whose sum is TFX's batch
scoring end to end. Ours: the default pipeline trained once on the embedded data (a fresh root,
not timed), then per size N rows of `bench/generate.py` as rows to score (a `penguin_id`, the
penguin columns, no species; 1% missing values, where the peer's rows have none) and `runner.py
score --no-cache` in a fresh process on a root of its own: ExampleGen's and the BulkInferrer's
seconds from the run's summary, the rows/s the BulkInferrer logs, and the whole command's wall
time, which is our batch scoring end to end (with the data gate and the run's bookkeeping).

Both sides are measured from outside the same way (`bench.measure.run_measured`, through
`bench.side_by_side.run_peer` for the peer): wall time from start to exit, peak RSS of the
process tree, of its largest process, and the tree's PSS. The peer's process also trained its
model (on 342 rows), so its memory covers training as well as scoring. Prints a line per run and
a table, writes JSON with the time of day and the load average before each run, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from bench.generate import generate
from bench.measure import run_measured, write_results
from bench.pipeline import REPO, STEP_LINE, run_case
from bench.side_by_side import run_peer

PEER_DIR = os.path.join(os.path.dirname(REPO), "shared", "peer")
SCORED = re.compile(r"scored ([\d,]+) rows in ([\d.]+) s \(([\d,]+) rows/s\)")
# The peer's nodes whose seconds make its batch scoring: its second CsvExampleGen and the BulkInferrer.
PEER_STEPS = {"example_gen": "score_example_gen", "bulk_inferrer": "BulkInferrer"}
# `mlmd_report.py` names an execution by its type (both ExampleGens are a CsvExampleGen): the
# node contexts of the peer's store say which node ran which execution, printed as {node: [ids]}.
PEER_NODES = """
import json, sys
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
config = pb.ConnectionConfig()
config.sqlite.filename_uri = sys.argv[1]
config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
store = metadata_store.MetadataStore(config)
nodes = store.get_contexts_by_type("node")
print(json.dumps({c.name.split(".", 1)[-1]: [e.id for e in store.get_executions_by_context(c.id)] for c in nodes}))
"""


def _when() -> dict:
    return {
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_before": round(os.getloadavg()[0], 2),
    }


def rows_to_score(rows: int, folder: str) -> str:
    """`rows` generated penguin-like rows as the scoring pipeline reads them,
    `folder/to-score/span-1/rows.csv`: a `penguin_id` first, the species left out. Returns the
    data pattern for `runner.py score --data`."""
    span = os.path.join(folder, "to-score", "span-1")
    os.makedirs(span, exist_ok=True)
    generated = os.path.join(folder, "generated.csv")
    generate(rows, generated)
    with open(generated) as source, open(os.path.join(span, "rows.csv"), "w") as out:
        out.write("penguin_id," + next(source).split(",", 1)[1])
        out.writelines(f"P{i:07d},{line.split(',', 1)[1]}" for i, line in enumerate(source))
    os.remove(generated)
    return os.path.join(folder, "to-score", "span-{SPAN}", "*.csv")


def peer_steps(python: str, root: str) -> dict:
    """{node: state and seconds} of the peer's run on `root`: the seconds `mlmd_report.py` wrote
    to `root/steps.json`, by execution, named by the node that ran it; {} when there are none."""
    if not os.path.isfile(os.path.join(root, "steps.json")):
        return {}
    with open(os.path.join(root, "steps.json")) as f:
        executions = {e["id"]: e for e in json.load(f)}
    nodes = subprocess.run(
        [python, "-c", PEER_NODES, os.path.join(root, "mlmd.sqlite")], capture_output=True, text=True
    )
    return {
        node: {"state": executions[i]["state"], "seconds": executions[i]["dur_s"]}
        for node, ids in json.loads(nodes.stdout or "{}").items()
        for i in ids
        if i in executions
    }


def run_tfx(rows: int, workdir: str, python: str, peer_dir: str, train_data: str) -> dict:
    """TFX's penguin pipeline on a fresh root, training on `train_data` and scoring `rows`
    synthetic rows; its steps' seconds from its MLMD store."""
    score_data = os.path.join(workdir, f"peer-score-{rows}")
    subprocess.run(
        [python, os.path.join(peer_dir, "prepare_data.py"), score_data, str(rows), "--no-label"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    root = os.path.join(workdir, f"peer-root-{rows}")
    os.makedirs(root)
    pipeline = os.path.join(peer_dir, "penguin_pipeline.py")
    template = (
        f"{python} {pipeline} --data {{data}} --root {{root}}/root --metadata {{root}}/mlmd.sqlite "
        f"--serving {{root}}/serving --score {score_data}"
    )
    report = (
        f"{python} {os.path.join(peer_dir, 'mlmd_report.py')} {{root}}/mlmd.sqlite --json {{root}}/steps.json"
    )
    when = _when()
    result = {**when, **run_peer(template, train_data, root, report)}
    result["steps"] = steps = peer_steps(python, root)
    done = [steps.get(node, {}).get("state") == "COMPLETE" for node in PEER_STEPS.values()]
    if not all(done):
        raise SystemExit(
            f"TFX's pipeline did not score {rows:,} rows:\n{result['tail']}\n{result.get('report', '')}"
        )
    scoring = {key: steps[node]["seconds"] for key, node in PEER_STEPS.items()}
    result.update(rows=rows, **{f"{key}_seconds": s for key, s in scoring.items()})
    result["scoring_seconds"] = round(sum(scoring.values()), 2)
    result["rows_per_second"] = round(rows / result["scoring_seconds"])
    return result


def run_ours(rows: int, workdir: str, store: str) -> dict:
    """`runner.py score` of `rows` generated rows with the model pushed to `store`, in a fresh
    process on a fresh root."""
    pattern = rows_to_score(rows, os.path.join(workdir, f"ours-rows-{rows}"))
    root = os.path.join(workdir, f"ours-score-root-{rows}")
    command = [sys.executable, "runner.py", "--metadata", store, "--pipeline-root", root]
    command += ["score", "--no-cache", "--data", pattern]
    when = _when()
    memory: dict = {}
    seconds, peak, output = run_measured(command, REPO, memory=memory)
    steps = {m[0]: {"status": m[1], "seconds": float(m[3])} for m in STEP_LINE.findall(output)}
    scored = SCORED.search(output)
    if scored is None or steps.get("BulkInferrer", {}).get("status") != "COMPLETE":
        raise SystemExit(f"runner.py score did not score {rows:,} rows:\n{output[-3000:]}")
    return {
        **when,
        "rows": int(scored[1].replace(",", "")),
        "example_gen_seconds": steps["ExampleGen"]["seconds"],
        "bulk_inferrer_seconds": steps["BulkInferrer"]["seconds"],
        "scoring_call_seconds": float(scored[2]),
        "logged_rows_per_second": int(scored[3].replace(",", "")),
        "total_seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mb": round(peak / 2**20),
        "peak_process_rss_mb": round(memory["peak_process_rss"] / 2**20),
        "peak_pss_mb": round(memory["peak_tree_pss"] / 2**20),
        "steps": steps,
        "log": [line for line in output.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)],
    }


def ratios(tfx: dict, ours: dict) -> dict:
    """Ours over TFX's: step against step, and end to end (our whole command against TFX's two
    steps)."""
    return {
        "example_gen": round(ours["example_gen_seconds"] / tfx["example_gen_seconds"], 3),
        "bulk_inferrer": round(ours["bulk_inferrer_seconds"] / tfx["bulk_inferrer_seconds"], 3),
        "end_to_end": round(ours["total_seconds"] / tfx["scoring_seconds"], 3),
    }


def print_table(results: list[dict]) -> None:
    names = [f"{r['rows']:,} rows" for r in results]
    lines = [
        ("TFX ExampleGen (score)", lambda r: f"{r['tfx']['example_gen_seconds']:.1f} s"),
        ("TFX BulkInferrer", lambda r: f"{r['tfx']['bulk_inferrer_seconds']:.1f} s"),
        ("TFX the two", lambda r: f"{r['tfx']['scoring_seconds']:.1f} s"),
        ("TFX whole run", lambda r: f"{r['tfx']['total_seconds']:.1f} s"),
        ("ours ExampleGen", lambda r: f"{r['ours']['example_gen_seconds']:.1f} s"),
        ("ours BulkInferrer", lambda r: f"{r['ours']['bulk_inferrer_seconds']:.1f} s"),
        ("ours score command", lambda r: f"{r['ours']['total_seconds']:.1f} s"),
        ("ratio ExampleGen", lambda r: f"{r['ratio']['example_gen']:.3f}x"),
        ("ratio BulkInferrer", lambda r: f"{r['ratio']['bulk_inferrer']:.3f}x"),
        ("ratio end to end", lambda r: f"{r['ratio']['end_to_end']:.3f}x"),
        ("TFX rows/s", lambda r: f"{r['tfx']['rows_per_second']:,}"),
        ("ours rows/s", lambda r: f"{r['ours']['rows_per_second']:,}"),
        ("ours logged rows/s", lambda r: f"{r['ours']['logged_rows_per_second']:,}"),
        ("TFX peak RSS, tree", lambda r: f"{r['tfx']['peak_rss_mb']:,} MB"),
        ("ours peak RSS, tree", lambda r: f"{r['ours']['peak_rss_mb']:,} MB"),
    ]
    width = max(16, *(len(n) for n in names))
    print(f"\n{'':<22}" + "".join(f"{n:>{width + 2}}" for n in names))
    for label, cell in lines:
        print(f"{label:<22}" + "".join(f"{cell(r):>{width + 2}}" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", required=True, help="the Python of a virtualenv with tfx 1.16")
    parser.add_argument("--peer-dir", default=PEER_DIR, help="the peer's scripts (penguin_pipeline.py ...)")
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "score_side_by_side.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        train_data = os.path.join(workdir, "peer-train")
        subprocess.run(
            [args.peer_python, os.path.join(args.peer_dir, "prepare_data.py"), train_data],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print("training our model (setup, not compared)...", flush=True)
        run_case("embedded, cold", os.path.join(workdir, "ours-train"), None, None, cache=False)
        store = os.path.join(workdir, "ours-train", "metadata.sqlite")
        for rows in map(int, args.rows.split(",")):
            tfx = run_tfx(rows, workdir, args.peer_python, args.peer_dir, train_data)
            ours = run_ours(rows, workdir, store)
            ratio = ratios(tfx, ours)
            results.append({"rows": rows, "tfx": tfx, "ours": ours, "ratio": ratio})
            print(
                f"{rows:>9,} rows: TFX {tfx['scoring_seconds']:7.1f} s ({tfx['measured_at']}) | "
                f"ours {ours['total_seconds']:7.1f} s ({ours['measured_at']}), "
                f"{ours['logged_rows_per_second']:,} rows/s logged | end to end {ratio['end_to_end']:.3f}x",
                flush=True,
            )
    print_table(results)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
