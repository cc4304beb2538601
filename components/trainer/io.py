"""The Trainer's edges: tf.data input functions over transformed examples, the export with the
Transform graph embedded, and the training-curves page."""

from __future__ import annotations

import glob
import os

import tensorflow as tf

CACHE_BYTES = 256 << 20
CACHE_EXPANSION = 6  # serialized records take about this many times their gzipped size


def input_fn(
    examples, split: str, feature_spec: dict, label_key: str, batch_size: int, train: bool, where: str = ""
):
    """(features, label) batches from `Split-<split>/*.gz` of transformed Examples: read in
    parallel, shuffled and repeated for training, batched, parsed per batch, prefetched."""
    files = sorted(glob.glob(os.path.join(examples.split_uri(split), "*.gz")))
    if not files:
        from pipeline.errors import UserInputError

        raise UserInputError(f"no transformed examples for split {split!r} in {examples.uri}")
    check_label(feature_spec, label_key, where)

    def make():
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
        if train:
            # Serialized records of a split small enough for memory are kept after the first pass,
            # so later epochs skip decompression; larger ones stream from disk every epoch.
            if sum(os.path.getsize(f) for f in files) * CACHE_EXPANSION <= CACHE_BYTES:
                dataset = dataset.cache()
            dataset = dataset.shuffle(10_000, seed=0, reshuffle_each_iteration=True).repeat()
        # In order, training too: the same data and seed give the same model whatever the load
        # on the machine (out of order, a busy machine changed the batches' order, and with it
        # where early stopping stopped).
        dataset = dataset.batch(batch_size).map(
            lambda records: _split_label(tf.io.parse_example(records, feature_spec), label_key),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return dataset.prefetch(tf.data.AUTOTUNE)

    return make


def check_label(feature_spec: dict, label_key: str, where: str = "") -> None:
    """Raises a UserInputError naming the parameter to set when Transform outputs no `label_key`."""
    if label_key not in feature_spec:
        from pipeline.errors import UserInputError

        raise UserInputError(
            f"the transformed examples have no label {label_key!r} (features: {', '.join(sorted(feature_spec))}); "
            f"set Trainer(label_key=...) {where or 'in the pipeline definition'} to the preprocessing_fn "
            "output that holds the label, or make preprocessing_fn output it under that name"
        )


def label_moments(examples, split: str, feature_spec: dict, label_key: str, limit: int = 20_000):
    """(mean, standard deviation) of the label over the first `limit` examples of a split, for a
    regression head to standardize it (a deviation of 0 becomes 1)."""
    files = sorted(glob.glob(os.path.join(examples.split_uri(split), "*.gz")))
    label_spec = {label_key: feature_spec[label_key]}
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .take(limit)
        .batch(1024)
        .map(lambda records: tf.reshape(tf.io.parse_example(records, label_spec)[label_key], [-1]))
    )
    values = tf.cast(tf.concat(list(dataset), axis=0), tf.float64).numpy()
    if len(values) == 0:
        return 0.0, 1.0
    deviation = float(values.std())
    return float(values.mean()), deviation if deviation > 0 else 1.0


def label_counts(examples, split: str, feature_spec: dict, label_key: str, n_classes: int) -> list[int]:
    """The examples of each class id in a split (every example: one pass over the label alone)."""
    import numpy as np

    files = sorted(glob.glob(os.path.join(examples.split_uri(split), "*.gz")))
    label_spec = {label_key: feature_spec[label_key]}
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(4096)
        .map(lambda records: tf.reshape(tf.io.parse_example(records, label_spec)[label_key], [-1]))
    )
    counts = np.zeros(n_classes, dtype=np.int64)
    for batch in dataset:
        ids = batch.numpy().astype(np.int64)
        counts += np.bincount(ids[(ids >= 0) & (ids < n_classes)], minlength=n_classes)
    return counts.tolist()


def _split_label(features: dict, label_key: str):
    features = dict(features)
    label = features.pop(label_key)
    return features, label


def export_model(
    estimator, tft_output, label_key: str, export_dir: str, receivers_fn=None
) -> dict[str, list[str]]:
    """Exports the estimator with the Transform graph in front: serialized raw tf.Examples (or raw
    tensors) in, parsed with the raw schema less the label and the features the graph does not
    read, transformed, predicted. `receivers_fn(raw_feature_spec, transform)`, the model module's
    `serving_receivers` when it has one, returns more receivers, name -> ServingInputReceiver, each
    a signature of that name serving the default output."""
    from estimator.export import export_saved_model, parsing_receiver, raw_receiver

    layer = tft_output.transform_features_layer()
    raw_spec = _served_features(
        layer, {k: v for k, v in tft_output.raw_feature_spec().items() if k != label_key}
    )

    def transform(raw):
        transformed = dict(layer(raw))
        transformed.pop(label_key, None)
        return transformed

    extra = receivers_fn(dict(raw_spec), transform) if receivers_fn else {}
    return export_saved_model(
        estimator,
        export_dir,
        parsing_receiver(raw_spec, transform),
        raw_receiver(raw_spec, transform),
        layer,
        extra=extra,
    )


def _served_features(layer, raw_spec: dict) -> dict:
    """The raw features the Transform graph reads: a client need not send the others (such as the
    span key `year`). A feature is read if leaving it out drops some transformed output."""

    def outputs_without(name: str | None) -> set:
        spec = {k: v for k, v in raw_spec.items() if k != name}
        return set(layer(tf.io.parse_example(tf.constant([], tf.string), spec)))

    everything = outputs_without(None)
    return {name: spec for name, spec in raw_spec.items() if outputs_without(name) != everything}


def write_training_page(path: str, result, train_losses: list, params) -> None:
    """The training curves (train loss, eval loss and the monitored metric by step) as an HTML page."""
    from pipeline import charts, pages

    metric = params.early_stopping_metric
    steps = [h["global_step"] for h in result.history]
    losses = [("eval loss", steps, [h["loss"] for h in result.history], charts.COLOURS[1])]
    if train_losses:
        losses.insert(
            0, ("train loss", [s for s, _ in train_losses], [v for _, v in train_losses], charts.COLOURS[0])
        )
    shown = metric if metric != "loss" else "accuracy"
    values = [h.get(metric) if metric != "loss" else h.get("accuracy", h["loss"]) for h in result.history]
    best = [(result.best_step, f"best step {result.best_step}", "#C44E52")]
    figures = charts.lines(losses, "loss", "step", "loss", points=False, marks=best) + charts.lines(
        [(shown, steps, values, charts.COLOURS[2])], shown, "step", shown, points=True, marks=best
    )
    columns = sorted(k for k in result.history[0] if "/" not in k) if result.history else []
    pages.write(
        path,
        "training.html",
        best_step=result.best_step,
        metric=metric,
        note="stopped early" if result.stopped_early else f"ran to step {result.last_step}",
        resumed_from=result.resumed_from,
        charts=pages.Markup(figures),
        columns=columns,
        rows=[
            [f"{h[k]:.4f}" if isinstance(h.get(k), float) else str(h.get(k, "")) for k in columns]
            for h in result.history
        ],
    )
