"""The Evaluator's evaluation on growing eval sets: seconds and examples/s, with and without a baseline.

    python -m bench.evaluator [--sizes 1000,10000,100000] [--pipeline-root DIR]

Trains the penguin model once (the default pipeline under `--pipeline-root`, a temporary directory
unless given), then, for each size, writes that many raw eval tf.Examples (the eval split repeated)
and times the Evaluator's batched evaluation (writing TFMA's files) in this process: the candidate
alone, then against a baseline (the same model loaded twice). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from pipeline.artifacts import Examples
from tests.helpers import read_tfrecords


def write_eval_set(records: list[bytes], size: int, path: str) -> None:
    """`size` records cycled from `records`, as one gzipped TFRecord file (CRCs from TensorFlow)."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(size):
            writer.write(records[i % len(records)])


def time_evaluation(model_dir: str, path: str, output: str, with_baseline: bool) -> float:
    """Seconds for the Evaluator's batched evaluation of the records at `path` and TFMA's files."""
    from tensorflow_model_analysis.utils import config_util

    from components.evaluator import batched
    from components.evaluator import tfma_results as t

    vocabulary = t.label_vocabulary(model_dir, "species")
    names = [t.CANDIDATE, t.BASELINE] if with_baseline else [""]
    thresholds = [t.Threshold("accuracy", "value", 0.9)]
    if with_baseline:
        thresholds.append(t.Threshold("accuracy", "change", 0.0))
    slices = [(), ("island",), ("sex",)]
    config = t.eval_config(
        "species", "serving_default", slices, sorted(vocabulary), thresholds, with_baseline
    )
    config = config_util.update_eval_config_with_defaults(config, has_baseline=with_baseline)
    task = batched.Task(
        label_key="species",
        signature_name="serving_default",
        slices=tuple(slices),
        model_dirs={name: os.path.join(model_dir, t.SERVING_DIR) for name in names},
        vocabularies={name: vocabulary for name in names},
        class_names=tuple(sorted(vocabulary)),
    )
    started = time.monotonic()
    accumulator = batched.evaluate([path], task)
    batched.write_results(output, config, accumulator, task, path)
    return time.monotonic() - started


def trained_model(root: str) -> tuple[str, str]:
    """A trained penguin model's directory and its raw eval split, from a run of the default pipeline."""
    from penguin.pipeline import create_pipeline
    from pipeline.local_runner import RunOptions, run_pipeline

    result = run_pipeline(create_pipeline(), RunOptions(pipeline_root=root, log=lambda _: None))
    if not result.ok:
        raise SystemExit(f"the penguin pipeline failed: {result.error}")
    model = result.step("Trainer").outputs["model"]
    examples = result.step("ExampleGen").outputs["examples"]
    assert isinstance(examples, Examples)
    return model.uri, examples.split_uri("eval")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--pipeline-root", help="where to train the model (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        model_dir, eval_dir = trained_model(args.pipeline_root or os.path.join(workdir, "root"))
        records = read_tfrecords(eval_dir)
        print(f"{'examples':>9}  {'candidate':>19}  {'with baseline':>19}")
        for size in map(int, args.sizes.split(",")):
            path = os.path.join(workdir, f"eval-{size}.gz")
            write_eval_set(records, size, path)
            alone = time_evaluation(model_dir, path, os.path.join(workdir, f"out-{size}-1"), False)
            paired = time_evaluation(model_dir, path, os.path.join(workdir, f"out-{size}-2"), True)
            print(
                f"{size:>9}  {alone:>7.1f} s ({size / alone:>7.0f}/s)"
                f"  {paired:>7.1f} s ({size / paired:>7.0f}/s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
