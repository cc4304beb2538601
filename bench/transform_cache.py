"""Transform over a rolling window of spans: a moved window with tensorflow-transform's analyzer
cache against the same window without it.

    python -m bench.transform_cache [--spans 12] [--rows 100000] [--repeats 2] [--out bench/results/transform_cache.json]

Set-up, untimed: spans 1..N+1 of generated penguin rows (`bench.generate`, seeded by the span),
written as ExampleGen writes them (`components.example_gen.stages`), each an Examples artifact with
an id and a content fingerprint. Then, each in a fresh process running `transform_spans` with
penguin/module.py: the window 1..N from scratch, writing its analyzer cache; the window moved by
one, 2..N+1, with that cache and without it (alternating, `--repeats` times each); and the same two
as analysis only (no transformed examples written), which says how much of Transform is analysis.
Per run: the call's wall and CPU seconds (CPU time is the steadier figure where other work shares
the machine; the in-memory DirectRunner does all the work in the process), the process's wall
time, the peak RSS of its process tree. Prints a table and a summary (medians), writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from bench.measure import run_measured, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_spans(workdir: str, count: int, rows: int) -> None:
    """Spans 1..count as Examples (ExampleGen's layout), described in `<workdir>/spans.json`."""
    import schemas
    from bench.generate import generate
    from components.example_gen.component import feature_names, schema_column_types, schema_non_finite
    from components.example_gen.stages import write_examples_here
    from pipeline import ExecutionContext
    from pipeline.artifacts import Examples, Schema
    from pipeline.cache import directory_fingerprint

    schema = Schema(os.path.join(workdir, "schema"))
    os.makedirs(schema.uri)
    shutil.copy(schemas.PENGUIN_SCHEMA, os.path.join(schema.uri, "schema.pbtxt"))
    ctx = ExecutionContext("bench", workdir, "ExampleGen", 1, "bench", sink=None)
    described = []
    for span in range(1, count + 1):
        csv = os.path.join(workdir, "csv", f"span-{span}", "penguins.csv")
        os.makedirs(os.path.dirname(csv))
        generate(rows, csv, seed=span)
        with open(csv) as f:
            header = feature_names(f.readline().strip().split(","))
        examples = Examples(os.path.join(workdir, "examples", str(span)))
        report = write_examples_here(
            ctx,
            [csv],
            header,
            schema_column_types(schema),
            ["NA"],
            {"train": 2, "eval": 1},
            examples,
            schema_non_finite(schema),
            threads=os.cpu_count() or 1,
        )
        assert not report.errors, report.errors[:3]
        described.append(
            {
                "uri": examples.uri,
                "span": span,
                "id": 100 + span,
                "fingerprint": directory_fingerprint(examples.uri),
            }
        )
    with open(os.path.join(workdir, "spans.json"), "w") as f:
        json.dump(described, f)


def run_child(workdir: str, name: str, first: int, last: int, args) -> None:
    """One transform_spans call over spans first..last; prints its seconds and report."""
    import penguin.module
    import schemas
    from components.schema_gen.schema_io import read_schema_file
    from components.transform.beam import transform_spans
    from pipeline import ExecutionContext
    from pipeline.artifacts import Examples

    with open(os.path.join(workdir, "spans.json")) as f:
        described = {d["span"]: d for d in json.load(f)}
    spans = []
    for span in range(first, last + 1):
        examples = Examples(described[span]["uri"], id=described[span]["id"])
        examples.split_names = ["train", "eval"]
        examples.set("span", span)
        examples.custom_properties["fingerprint"] = described[span]["fingerprint"]
        spans.append(examples)
    out = os.path.join(workdir, "runs", name)
    ctx = ExecutionContext("bench", workdir, "Transform", 1, "bench", sink=None)
    started, cpu = time.monotonic(), time.process_time()
    report = transform_spans(
        ctx,
        penguin.module.preprocessing_fn,
        read_schema_file(schemas.PENGUIN_SCHEMA),
        spans,
        ["train"],
        os.path.join(out, "graph"),
        None if args.analysis_only else Examples(os.path.join(out, "examples")),
        os.path.join(out, "tmp"),
        cache_in=args.cache_in,
        cache_out=args.cache_out,
    )
    print(f"seconds {time.monotonic() - started:.3f}")
    print(f"cpu {time.process_time() - cpu:.3f}")
    print("report " + json.dumps({"analyzed": report.analyzed_spans, "rows": sum(report.counts.values())}))


def measure(workdir: str, name: str, first: int, last: int, *flags: str) -> dict:
    command = [sys.executable, "-m", "bench.transform_cache", "--child", workdir, name, str(first), str(last)]
    wall, peak, output = run_measured([*command, *flags], REPO)
    lines = dict(
        line.split(" ", 1) for line in output.splitlines() if line.startswith(("seconds ", "cpu ", "report "))
    )
    if "seconds" not in lines:
        raise SystemExit(f"{name} failed:\n{output[-3000:]}")
    report = json.loads(lines["report"])
    shutil.rmtree(os.path.join(workdir, "runs", name), ignore_errors=True)
    return {
        "run": name,
        "window": f"{first}..{last}",
        "seconds": round(float(lines["seconds"]), 2),
        "cpu_seconds": round(float(lines["cpu"]), 2),
        "process_seconds": round(wall, 2),
        "peak_rss_mb": round(peak / 2**20),
        "spans_analyzed": len(report["analyzed"]),
        "rows_written": report["rows"],
        "at": time.strftime("%H:%M:%S"),
    }


def bench(count: int, rows: int, repeats: int, workdir: str) -> dict:
    started = time.monotonic()
    write_spans(workdir, count + 1, rows)
    print(f"set-up: {count + 1} spans of {rows} rows in {time.monotonic() - started:.0f} s", flush=True)
    cache = os.path.join(workdir, "cache")
    runs = [measure(workdir, "first", 1, count, "--cache-out", os.path.join(cache, "first"))]
    show(runs[-1])
    for analysis_only in (False, True):
        only = ["--analysis-only"] if analysis_only else []
        suffix = "-analysis" if analysis_only else ""
        for i in range(repeats):
            cached_flags = [
                "--cache-in",
                os.path.join(cache, "first"),
                "--cache-out",
                os.path.join(cache, f"moved{suffix}-{i}"),
            ]
            runs.append(measure(workdir, f"moved-cached{suffix}", 2, count + 1, *cached_flags, *only))
            show(runs[-1])
            runs.append(measure(workdir, f"moved-uncached{suffix}", 2, count + 1, *only))
            show(runs[-1])
    return summarize(runs, count, rows)


def show(run: dict) -> None:
    print(
        f"{run['at']}  {run['run']:<26} {run['window']:>6}  {run['seconds']:7.1f} s (CPU {run['cpu_seconds']:6.1f} s)  "
        f"process {run['process_seconds']:6.1f} s  "
        f"peak RSS {run['peak_rss_mb']:>5} MB  spans analyzed {run['spans_analyzed']:>2}  rows {run['rows_written']}",
        flush=True,
    )


def summarize(runs: list[dict], count: int, rows: int) -> dict:
    def median(name: str, figure: str = "seconds") -> float:
        return round(statistics.median(r[figure] for r in runs if r["run"] == name), 2)

    cached, uncached = median("moved-cached"), median("moved-uncached")
    analysis_cached, analysis_uncached = median("moved-cached-analysis"), median("moved-uncached-analysis")
    summary = {
        "spans": count,
        "rows_per_span": rows,
        "first_seconds": median("first"),
        "first_cpu_seconds": median("first", "cpu_seconds"),
        "moved_cached_seconds": cached,
        "moved_uncached_seconds": uncached,
        "ratio": round(cached / uncached, 2),
        "target_ratio": 0.33,
        "analysis_only_cached_seconds": analysis_cached,
        "analysis_only_uncached_seconds": analysis_uncached,
        "analysis_ratio": round(analysis_cached / analysis_uncached, 2),
        "moved_cached_cpu_seconds": median("moved-cached", "cpu_seconds"),
        "moved_uncached_cpu_seconds": median("moved-uncached", "cpu_seconds"),
        "analysis_only_cached_cpu_seconds": median("moved-cached-analysis", "cpu_seconds"),
        "analysis_only_uncached_cpu_seconds": median("moved-uncached-analysis", "cpu_seconds"),
    }
    summary["cpu_ratio"] = round(
        summary["moved_cached_cpu_seconds"] / summary["moved_uncached_cpu_seconds"], 2
    )
    print(
        f"\nwindow 1..{count} from scratch, writing the cache (a cold cache): {summary['first_seconds']:.1f} s "
        f"(CPU {summary['first_cpu_seconds']:.1f} s)"
        f"\nmoved window {2}..{count + 1} (medians): with the cache {cached:.1f} s, without {uncached:.1f} s: "
        f"{summary['ratio']:.2f}x (target <= 0.33x: {'met' if summary['ratio'] <= 0.33 else 'not met'})\n"
        f"analysis alone: with the cache {analysis_cached:.1f} s, without {analysis_uncached:.1f} s "
        f"({summary['analysis_ratio']:.2f}x); the rest, transforming and writing every split of every span, "
        f"about {cached - analysis_cached:.1f} s with the cache and {uncached - analysis_uncached:.1f} s without\n"
        f"CPU seconds: moved window {summary['moved_cached_cpu_seconds']:.1f} with the cache, "
        f"{summary['moved_uncached_cpu_seconds']:.1f} without ({summary['cpu_ratio']:.2f}x); analysis alone "
        f"{summary['analysis_only_cached_cpu_seconds']:.1f} and {summary['analysis_only_uncached_cpu_seconds']:.1f}"
    )
    return {"summary": summary, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=12)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "transform_cache.json"))
    parser.add_argument(
        "--child", nargs=4, metavar=("WORKDIR", "NAME", "FIRST", "LAST"), help=argparse.SUPPRESS
    )
    parser.add_argument("--cache-in", help=argparse.SUPPRESS)
    parser.add_argument("--cache-out", help=argparse.SUPPRESS)
    parser.add_argument("--analysis-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workdir, name, first, last = args.child
        run_child(workdir, name, int(first), int(last), args)
        return
    with tempfile.TemporaryDirectory() as workdir:
        results = bench(args.spans, args.rows, args.repeats, workdir)
    write_results(args.out, [results])


if __name__ == "__main__":
    main()
