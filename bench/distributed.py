"""Scaling out on one machine: the data steps on three Beam set-ups, and training on one and two workers.

    python -m bench.distributed [--rows 1000000] [--out bench/results/distributed.json]

Data steps (ExampleGen, StatisticsGen, Transform, the Evaluator) on N generated rows, each set-up
a cold `runner.py run` on a fresh root:
  direct, in-process     Beam's DirectRunner in the launching process (the default)
  direct, 2 processes    the DirectRunner with 2 worker processes (multi_processing)
  portable, 2 workers    Beam's Python job server and an external worker pool (the job and Fn APIs
                         of Flink, Spark and Dataflow), the pool running 2 SDK workers
Training: the Trainer alone (upstream cached) for a fixed 600 steps on one device, then on two
worker processes (MultiWorkerMirroredStrategy), in steps per second (the median of its progress
lines; a step is one global batch of 32). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap

from bench.beam_services import local_portable_services
from bench.generate import generate
from bench.measure import write_results
from bench.pipeline import REPO, run_case

DATA_STEPS = ("ExampleGen", "StatisticsGen", "Transform", "Evaluator")
FIXED_TRAINING = {"train_steps": 600, "eval_every_steps": 300, "early_stopping_patience": 100}


def training_pipeline(workdir: str, name: str, **trainer) -> str:
    path = os.path.join(workdir, f"{name}.py")
    with open(path, "w") as f:
        f.write(
            textwrap.dedent(f"""
                from penguin.pipeline import create_pipeline as penguin

                def create_pipeline():
                    pipeline = penguin()
                    pipeline.override(**{trainer!r})
                    return pipeline
            """)
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "distributed.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        os.makedirs(os.path.join(workdir, "data", "span-1"))
        generate(args.rows, os.path.join(workdir, "data", "span-1", "penguins.csv"))
        data = os.path.join(workdir, "data", "span-{SPAN}", "*.csv")

        def case(name: str, root: str, *extra: str, cache: bool = False) -> dict:
            result = run_case(name, os.path.join(workdir, root), data, args.rows, cache, extra)
            shown = ", ".join(
                f"{s} {result['steps'][s]['seconds']:.1f} s" for s in DATA_STEPS if s in result["steps"]
            )
            print(f"{name}: {result['total_seconds']:.1f} s ({shown})", flush=True)
            results.append(result)
            return result

        case("direct, in-process", "direct")
        case(
            "direct, 2 processes",
            "multi",
            "--beam-arg=--direct_running_mode=multi_processing",
            "--beam-arg=--direct_num_workers=2",
        )
        with local_portable_services(workdir, project_path=REPO) as (job_server, workers, _):
            case(
                "portable, 2 workers",
                "portable",
                "--job-server",
                job_server,
                "--workers",
                workers,
                "--beam-arg=--sdk_worker_parallelism=2",
            )
        for name, trainer in (
            ("training, 1 worker", {"distribution": "one_device"}),
            ("training, 2 workers", {"distribution": "multi_worker", "workers": 2}),
        ):
            pipeline = training_pipeline(
                workdir, name.split(", ")[1].replace(" ", "-"), **FIXED_TRAINING, **trainer
            )
            result = case(name, "direct", "--pipeline", pipeline, cache=True)
            print(f"  {result['training_steps_per_second']} steps/s", flush=True)
    print(f"\n{'case':<24}" + "".join(f"{s:>15}" for s in (*DATA_STEPS, "Trainer", "steps/s")))
    for r in results:
        cells = [r["steps"].get(s) for s in (*DATA_STEPS, "Trainer")]
        shown = [("" if c is None or c["status"] == "CACHED" else f"{c['seconds']:.1f} s") for c in cells]
        rate = r["training_steps_per_second"]
        print(f"{r['case']:<24}" + "".join(f"{c:>15}" for c in shown) + f"{'' if rate is None else rate:>15}")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
