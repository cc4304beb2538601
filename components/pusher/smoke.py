"""The Pusher's smoke check, run as a script in a fresh Python process: load a SavedModel and call
`serving_default` on a few raw examples with the label removed, as a serving client would.

    python components/pusher/smoke.py SAVED_MODEL_DIR EXAMPLES_DIR LABEL_KEY COUNT
    python components/pusher/smoke.py --wait    (imports TensorFlow, then reads the same four
                                                 arguments as one JSON list on stdin)

Prints one JSON line: {"ok": true, "examples": n, "outputs": {name: shape}, "first": {...}} or
{"ok": false, "error": "..."}; exits 0 only when the check passed. Imports TensorFlow only, so a
model that needs anything else of this process to load or run is caught here.
"""

from __future__ import annotations

import glob
import json
import os
import sys


def raw_examples(examples_dir: str, label_key: str, count: int) -> list[bytes]:
    """The first `count` serialized tf.Examples of `examples_dir/*.gz`, without `label_key`."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples_dir, "*.gz")))
    if not files:
        raise ValueError(f"no examples in {examples_dir}")
    examples = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(count):
        example = tf.train.Example.FromString(record.numpy())
        example.features.feature.pop(label_key, None)
        examples.append(example.SerializeToString())
    return examples


def check(model_dir: str, examples: list[bytes]) -> dict:
    """Calls `serving_default(examples=...)`; every output must have one finite row per example."""
    import numpy as np
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    signature = model.signatures.get("serving_default")
    if signature is None:
        raise ValueError(
            f"no serving_default signature (signatures: {', '.join(model.signatures) or 'none'})"
        )
    inputs = signature.structured_input_signature[1]
    if set(inputs) != {"examples"}:
        raise ValueError(f"serving_default takes {sorted(inputs)}, not one string tensor 'examples'")
    outputs = {k: v.numpy() for k, v in signature(examples=tf.constant(examples)).items()}
    for name, value in outputs.items():
        if value.shape[:1] != (len(examples),):
            raise ValueError(f"output {name!r} has shape {value.shape} for {len(examples)} examples")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"output {name!r} holds NaN or infinite values")
    return {
        "ok": True,
        "examples": len(examples),
        "outputs": {k: list(v.shape) for k, v in outputs.items()},
        "first": {k: _jsonable(v[0]) for k, v in outputs.items()},
    }


def _jsonable(value):
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def main(argv: list[str]) -> int:
    if argv == ["--wait"]:  # started ahead of time: pay TensorFlow's import while the step before runs
        import tensorflow  # noqa: F401

        request = sys.stdin.readline()
        if not request:  # not needed after all
            return 0
        argv = json.loads(request)
    model_dir, examples_dir, label_key, count = argv
    try:
        result = check(model_dir, raw_examples(examples_dir, label_key, int(count)))
    except Exception as error:  # noqa: BLE001 - reported to the Pusher as the reason not to push
        message = " ".join(str(error).split())[:600]
        print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {message}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
