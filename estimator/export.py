"""Export: the estimator's PREDICT graph as a SavedModel for serving (no optimizer, no input pipeline).

Serving input receivers turn what a client sends into the model's features, as tf.estimator's
`serving_input_receiver_fn`s did:
- `parsing_receiver`: a string tensor of serialized raw tf.Examples, parsed with the raw feature
  spec (labels left out) and then preprocessed (the Transform graph);
- `raw_receiver`: one named tensor per raw feature, [batch] for a scalar feature (NaN or "" marks
  a missing optional value).

Signatures: `serving_default` and every other export output of the model_fn, through the parsing
receiver (inputs `examples`; Classify and Regress outputs take TF Serving's input key `inputs`);
and `raw_<output>` for the default output through the raw receiver.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from estimator.spec import SERVING_DEFAULT, ClassificationOutput, ModeKeys, RegressionOutput
from pipeline.errors import UserInputError


@dataclass
class ServingInputReceiver:
    """What a signature takes (`input_signature`: name -> TensorSpec) and how it becomes features."""

    input_signature: dict[str, tf.TensorSpec]
    features_fn: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


def parsing_receiver(raw_feature_spec: dict, transform: Callable | None = None, input_key: str = "examples"):
    def features_fn(inputs):
        raw = tf.io.parse_example(inputs[input_key], raw_feature_spec)
        return transform(raw) if transform else raw

    return ServingInputReceiver({input_key: tf.TensorSpec([None], tf.string, name=input_key)}, features_fn)


def raw_receiver(raw_feature_spec: dict, transform: Callable | None = None) -> ServingInputReceiver:
    """One dense input per raw feature. Optional (VarLen) features: floats use NaN and strings ""
    for a missing value; optional int features are taken as float32 for the same reason."""
    signature, optional, scalar = {}, {}, set()
    for name, spec in sorted(raw_feature_spec.items()):
        if isinstance(spec, tf.io.FixedLenFeature) and list(spec.shape) in ([], [1]):
            signature[name] = tf.TensorSpec([None], spec.dtype, name=name)
            if spec.shape:
                scalar.add(name)
        elif isinstance(spec, tf.io.FixedLenFeature):
            signature[name] = tf.TensorSpec([None, *spec.shape], spec.dtype, name=name)
        else:
            dtype = tf.float32 if spec.dtype in (tf.int64, tf.float32) else tf.string
            signature[name] = tf.TensorSpec([None], dtype, name=name)
            optional[name] = spec.dtype

    def features_fn(inputs):
        raw = {}
        for name, value in inputs.items():
            if name not in optional:
                raw[name] = tf.expand_dims(value, 1) if name in scalar else value
                continue
            present = (
                tf.not_equal(value, "") if value.dtype == tf.string else tf.logical_not(tf.math.is_nan(value))
            )
            indices = tf.where(present)
            values = tf.cast(tf.gather_nd(value, indices), optional[name])
            rows = tf.shape(value, out_type=tf.int64)[0]
            raw[name] = tf.sparse.SparseTensor(
                tf.concat([indices, tf.zeros_like(indices)], axis=1), values, tf.stack([rows, 1])
            )
        return transform(raw) if transform else raw

    return ServingInputReceiver(signature, features_fn)


class ServingModel(tf.Module):
    """The variables, the Transform layer (tracked so its assets are saved) and the signatures."""

    def __init__(self, estimator, transform_layer=None):
        super().__init__(name="serving")
        self.model_variables = list(estimator.variables.created)
        self.transform_layer = transform_layer


def export_saved_model(
    estimator,
    export_dir: str,
    receiver: ServingInputReceiver,
    raw: ServingInputReceiver | None = None,
    transform_layer=None,
    extra: dict[str, ServingInputReceiver] | None = None,
) -> dict[str, list[str]]:
    """Writes a SavedModel of the estimator's current variables to `export_dir` (which must not
    exist); returns each signature's output names. `extra`: more receivers, name ->
    ServingInputReceiver, each a signature of that name serving the default output."""
    kinds = _export_output_kinds(estimator, receiver)
    signatures = {}
    for name, kind in kinds.items():
        takes_inputs = (
            kind in (ClassificationOutput, RegressionOutput) and "examples" in receiver.input_signature
        )
        signatures[name] = _signature_fn(
            estimator, _as_inputs_key(receiver) if takes_inputs else receiver, name
        )
    if raw is not None:
        signatures[f"raw_{SERVING_DEFAULT}"] = _signature_fn(estimator, raw, SERVING_DEFAULT)
    for name, receiver in (extra or {}).items():
        if name in signatures:
            raise UserInputError(
                f"a serving receiver named {name!r} would replace the signature of that name"
            )
        signatures[name] = _signature_fn(estimator, receiver, SERVING_DEFAULT)
    concrete = {name: fn.get_concrete_function() for name, fn in signatures.items()}
    with _without_keras_traces():
        tf.saved_model.save(ServingModel(estimator, transform_layer), export_dir, signatures=concrete)
    _set_method_names(export_dir, {name: METHOD_NAMES.get(kind) for name, kind in kinds.items()})
    return {name: sorted(fn.structured_outputs) for name, fn in concrete.items()}


def _without_keras_traces():
    """The Transform layer is a Keras layer: saved as such, Keras traces its `call` again for a
    Keras reload (`model.save(save_traces=True)`), 1 to 1.5 s of the Trainer on the embedded data,
    which nothing here uses: the signatures are the ones given, and the layer's tables and
    vocabulary assets are saved as its tracked children either way. This is Keras's own
    `save_traces=False` scope."""
    import contextlib

    try:
        from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope
    except ImportError:  # another Keras: save as it does
        return contextlib.nullcontext()
    return keras_option_scope(save_traces=False)


METHOD_NAMES = {
    ClassificationOutput: "tensorflow/serving/classify",
    RegressionOutput: "tensorflow/serving/regress",
}


def _set_method_names(export_dir: str, method_names: dict[str, str | None]) -> None:
    """TF Serving routes Classify and Regress requests only to signatures with those method names,
    which tf.saved_model.save cannot set: rewrite them in saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    with open(path, "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            if method and name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    with open(path, "wb") as f:
        f.write(saved_model.SerializeToString())


def _export_output_kinds(estimator, receiver: ServingInputReceiver) -> dict[str, type]:
    """The model_fn's export outputs and their classes, learnt by tracing it once in PREDICT mode."""
    kinds: dict[str, type] = {}

    @tf.function(input_signature=[receiver.input_signature], autograph=False)
    def probe(inputs):
        spec = estimator.call_model_fn(receiver.features_fn(inputs), None, ModeKeys.PREDICT)
        kinds.update({name: type(output) for name, output in spec.export_outputs.items()})
        return tf.constant(0)

    probe.get_concrete_function()
    return kinds


def _as_inputs_key(receiver: ServingInputReceiver) -> ServingInputReceiver:
    """Classify and Regress signatures take serialized examples under TF Serving's key `inputs`."""
    return ServingInputReceiver(
        {"inputs": tf.TensorSpec([None], tf.string, name="inputs")},
        lambda inputs: receiver.features_fn({"examples": inputs["inputs"]}),
    )


def _signature_fn(estimator, receiver: ServingInputReceiver, output_name: str):
    @tf.function(input_signature=[receiver.input_signature], autograph=False)
    def serve(inputs):
        spec = estimator.call_model_fn(receiver.features_fn(inputs), None, ModeKeys.PREDICT)
        return spec.export_outputs[output_name].signature_outputs()

    return serve


def saved_model_size(export_dir: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(export_dir) for f in fs)
