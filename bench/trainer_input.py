"""Is the Trainer's input pipeline the bottleneck? Training steps/s fed by the real input function
(gzipped TFRecords, parsed, shuffled, batched, prefetched) against the same model fed from memory.

    python -m bench.trainer_input [--rows 100000] [--steps 2000] [--batch-size 32]

Runs the penguin pipeline up to Transform on generated rows (once; then cached), then trains the
penguin build_fn both ways in this process, timing steps after the first (tracing) ones.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from bench.generate import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def transformed(rows: int, workdir: str):
    from penguin.pipeline import create_pipeline
    from pipeline import Pipeline
    from pipeline.local_runner import RunOptions, run_pipeline

    os.makedirs(os.path.join(workdir, "data", "span-1"), exist_ok=True)
    generate(rows, os.path.join(workdir, "data", "span-1", "penguins.csv"))
    full = create_pipeline(input_pattern=os.path.join(workdir, "data", "span-{SPAN}", "*.csv"))
    keep = {"ImportSchemaGen", "ExampleGen", "Transform"}
    result = run_pipeline(
        Pipeline(full.name, [n for n in full.nodes if n.id in keep]),
        RunOptions(os.path.join(workdir, "root"), log=lambda m: None),
    )
    assert result.ok, result.error
    step = result.step("Transform")
    return step.outputs["transformed_examples"], step.outputs["transform_graph"]


def steps_per_second(estimator, input_fn, steps: int, warmup: int = 50) -> float:
    estimator.train(input_fn, max_steps=warmup, log=lambda m: None)
    started = time.perf_counter()
    estimator.train(input_fn, max_steps=warmup + steps, log=lambda m: None)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import tensorflow as tf
    import tensorflow_transform as tft

    import estimator as est
    from components.trainer.io import input_fn
    from penguin.model import build_fn

    with tempfile.TemporaryDirectory() as workdir:
        examples, graph = transformed(args.rows, workdir)
        tft_output = tft.TFTransformOutput(graph.uri)
        vocabulary = tft_output.vocabulary_by_name("species")
        params = {
            "n_classes": len(vocabulary),
            "learning_rate": 0.01,
            "vocabulary_sizes": {n: tft_output.vocabulary_size_by_name(n) for n in ("island", "sex")},
        }
        spec = tft_output.transformed_feature_spec()
        real = input_fn(examples, "train", spec, "species", args.batch_size, True)
        # The same batches, already parsed and stacked in memory: each element is a whole batch.
        batches = list(real().take(200))
        features = {k: tf.stack([b[0][k] for b in batches]) for k in batches[0][0]}
        labels = tf.stack([b[1] for b in batches])

        def memory():
            return tf.data.Dataset.from_tensor_slices((features, labels)).repeat()

        rates = {}
        for name, fn in (("input pipeline", real), ("memory", memory)):
            model_fn = est.model_fn_from_build_fn(
                build_fn, est.ClassificationHead(len(vocabulary), vocabulary)
            )
            estimator = est.Estimator(
                model_fn,
                os.path.join(workdir, name),
                params=params,
                config=est.RunConfig(save_checkpoints_steps=10**9, log_step_count_steps=10**9),
            )
            rates[name] = steps_per_second(estimator, fn, args.steps)
    ratio = rates["input pipeline"] / rates["memory"]
    print(
        f"{args.rows} rows, batch {args.batch_size}: input pipeline {rates['input pipeline']:.0f} steps/s, "
        f"from memory {rates['memory']:.0f} steps/s: {ratio:.0%}"
    )
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "trainer_input.json"), "w") as f:
        json.dump(
            {
                "rows": args.rows,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "steps_per_second": rates,
                "ratio": ratio,
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
