"""ExampleValidator's checks and statistics page by number of features: seconds and ms a feature.

    python -m bench.validator_page [--features 10,100,1000,2000] [--rows 1000]

For each size, builds the statistics of a train and an eval split and of a previous span (half
the features numbers, half strings with 30 values, `--rows` rows each, through the real
statistics accumulator), then times, in this process, what ExampleValidator does with them: the
schema checks and drift against the previous span (`anomalies.check_split`, `check_drift`) and
the page (`page.write_page`, every chart an inline SVG). Prints a table; the time a feature should
stay flat as features grow.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def split_statistics(features: int, rows: int, seed: int, name: str):
    """DatasetFeatureStatistics of `rows` generated rows with `features` columns."""
    import pyarrow as pa

    from components.example_gen import csv_to_examples as csv2ex
    from components.statistics_gen.statistics import SplitAccumulator, decode_examples, to_proto

    rng = np.random.default_rng(seed)
    columns, types = {}, {}
    for i in range(features):
        if i % 2:
            columns[f"s{i:04d}"] = [f"value {v}" for v in rng.integers(0, 30, rows)]
            types[f"s{i:04d}"] = "string"
        else:
            columns[f"n{i:04d}"] = [f"{v:.3f}" for v in rng.normal(i, 1 + i % 7, rows)]
            types[f"n{i:04d}"] = "float"
    table = pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in columns.items()})
    batch = csv2ex.CsvBatch(csv2ex.Chunk("bench.csv", 0, 0, 0, 0, 2), table, b"")
    accumulator = SplitAccumulator()
    accumulator.add_batch(decode_examples(list(csv2ex.encode_examples(csv2ex.parse_columns(batch, types)))))
    return to_proto(name, accumulator)


def time_validation(features: int, rows: int, directory: str) -> tuple[float, float, int]:
    """(seconds for the checks, seconds for the page, page bytes) for one size."""
    from components.example_validator import anomalies as checks
    from components.example_validator.page import write_page
    from components.schema_gen.inference import infer_schema

    splits = {
        name: split_statistics(features, rows, seed, name) for seed, name in enumerate(("train", "eval"))
    }
    previous = {
        name: split_statistics(features, rows, 10 + seed, name) for seed, name in enumerate(("train", "eval"))
    }
    schema = infer_schema([splits["train"]]).proto
    started = time.monotonic()
    findings, moves = [], {}
    for name, dataset in splits.items():
        findings += checks.check_split(name, dataset, schema)
        drift, moves[name] = checks.check_drift(name, dataset, previous[name], 0.25, 1.0, ())
        findings += drift
    checked = time.monotonic()
    path = os.path.join(directory, f"statistics-{features}.html")
    write_page(path, splits, findings, 2, drift={"span": 1, "splits": moves}, previous=previous)
    return checked - started, time.monotonic() - checked, os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="10,100,1000,2000")
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    print(f"{'features':>8} {'checks s':>9} {'page s':>7} {'ms/feature':>10} {'page MB':>8}")
    with tempfile.TemporaryDirectory() as directory:
        for features in (int(n) for n in args.features.split(",")):
            checks_s, page_s, size = time_validation(features, args.rows, directory)
            per_feature = (checks_s + page_s) / features * 1000
            print(f"{features:>8} {checks_s:>9.3f} {page_s:>7.3f} {per_feature:>10.2f} {size / 1e6:>8.2f}")


if __name__ == "__main__":
    main()
