"""This project beside another pipeline on the same machine: per case, the other pipeline's run and
ours alternate, so that the ratios hold on a machine whose speed drifts from minute to minute.

    python -m bench.side_by_side --peer 'PYTHON PIPELINE.py --data {data} --root {root}' \
        [--peer-prepare 'PYTHON PREPARE.py {data} {rows}'] [--peer-report 'PYTHON REPORT.py {root}'] \
        [--cases embedded,200000,1000000] [--pairs 1] [--out bench/results/side_by_side.json]

The peer is any command that runs a penguin pipeline cold on the CSV folder `{data}` with its
outputs under the fresh folder `{root}`; for instance TFX's penguin pipeline on its
LocalDagRunner, in a virtualenv of its own. Its data: what `--peer-prepare` writes into `{data}`
(`{rows}` is empty for the embedded case), or else the embedded penguin rows in one CSV (case
`embedded`) or N rows of `bench/generate.py` (case N), the generator our case N uses. Both
sides are measured from outside the same way (`bench.measure.run_measured`: wall time from start
to exit, peak RSS of the largest process of the tree); ours is `bench.pipeline`'s case (cold, a
fresh root, `runner.py run` in a fresh process). For the embedded case both sides then run again
on their root with nothing changed (the peer's command must turn its cache on). `--peer-report`,
run after each peer run, prints what the peer says of its steps (kept in the JSON). Prints a line
per run, writes JSON with the machine.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shlex
import subprocess
import tempfile

from bench.generate import generate
from bench.measure import run_measured, write_results
from bench.pipeline import REPO, generated, run_case


def peer_data(case: str, workdir: str, prepare: str | None) -> str:
    """A folder with the case's rows as one CSV, for the peer."""
    folder = os.path.join(workdir, f"peer-data-{case}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "penguins.csv")
    if prepare:
        count = "" if case == "embedded" else case
        subprocess.run(shlex.split(prepare.format(data=folder, rows=count)), check=True)
    elif case == "embedded":
        rows: list[list[str]] = []
        header: list[str] = []
        for part in sorted(glob.glob(os.path.join(REPO, "data", "penguins", "span-*", "*.csv"))):
            with open(part, newline="") as f:
                reader = csv.reader(f)
                header = next(reader)
                rows += list(reader)
        with open(path, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([header, *rows])
    else:
        generate(int(case), path)
    return folder


def run_peer(template: str, data: str, root: str, report: str | None) -> dict:
    """The peer's command on `data` and `root`, measured from outside: wall time, the largest
    process's peak RSS, the tree's (RSS and PSS); then what `report` prints of it."""
    command = shlex.split(template.format(data=data, root=root))
    memory: dict = {}
    seconds, peak, output = run_measured(command, os.getcwd(), memory=memory)
    result = {
        "total_seconds": round(seconds, 2),
        "peak_process_rss_mb": round(memory["peak_process_rss"] / 2**20),
        "peak_rss_mb": round(peak / 2**20),
        "peak_pss_mb": round(memory["peak_tree_pss"] / 2**20),
        "tail": output[-500:],
    }
    if report:
        done = subprocess.run(
            shlex.split(report.format(root=root)), capture_output=True, text=True, check=False
        )
        result["report"] = done.stdout
    return result


def run_ours(case: str, workdir: str, pair: int, rerun: bool = False) -> dict:
    if case == "embedded":
        root = os.path.join(workdir, f"ours-embedded-{pair}")
        name = "embedded, rerun" if rerun else "embedded, cold"
        return run_case(name, root, None, None, cache=rerun)
    return generated(int(case), os.path.join(workdir, f"ours-{pair}"))


def _line(case: str, peer: dict, ours: dict) -> str:
    ratio = ours["total_seconds"] / peer["total_seconds"]
    memory = ours["peak_process_rss_mb"] / peer["peak_process_rss_mb"]
    return (
        f"{case:>16}: peer {peer['total_seconds']:7.1f} s {peer['peak_process_rss_mb']:5} MB | "
        f"ours {ours['total_seconds']:7.1f} s {ours['peak_process_rss_mb']:5} MB | "
        f"time {ratio:.2f}x, memory {memory:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, help="the peer's command; {data} and {root} are filled in")
    parser.add_argument("--peer-prepare", help="writes the peer's data; {data} and {rows} are filled in")
    parser.add_argument("--peer-report", help="prints the peer's per-step times; {root} is filled in")
    parser.add_argument("--cases", default="embedded,200000,1000000")
    parser.add_argument("--pairs", type=int, default=1, help="alternating peer/ours pairs per case")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "side_by_side.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in args.cases.split(","):
            data = peer_data(case, workdir, args.peer_prepare)
            for pair in range(args.pairs):
                peer_root = os.path.join(workdir, f"peer-root-{case}-{pair}")
                os.makedirs(peer_root)
                runs = [
                    (
                        case,
                        run_peer(args.peer, data, peer_root, args.peer_report),
                        run_ours(case, workdir, pair),
                    )
                ]
                if case == "embedded":
                    again = run_peer(args.peer, data, peer_root, args.peer_report)
                    runs.append(("embedded, rerun", again, run_ours(case, workdir, pair, rerun=True)))
                for name, peer, ours in runs:
                    results.append({"case": name, "pair": pair, "peer": peer, "ours": ours})
                    print(_line(name, peer, ours), flush=True)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
