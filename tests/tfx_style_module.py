"""A Trainer module as a TFX user writes one, for TFX's generic trainer contract: `preprocessing_fn`
for Transform and `run_fn(fn_args)` for the Trainer, which trains a Keras model on the transformed
examples that `fn_args.data_accessor` reads and saves it under `fn_args.serving_model_dir` with a
`serving_default` signature that takes serialized raw tf.Examples.

What the export must give, for this product's Evaluator and Pusher: `serving_default(examples)`
returning `scores` (class probabilities, in the order of the label's vocabulary) for a
classification, or `outputs` for a regression.
"""

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
LABEL = "species"


def preprocessing_fn(inputs):
    outputs = {}
    for name in FEATURES:
        values = tf.cast(inputs[name], tf.float32)
        if isinstance(values, tf.SparseTensor):  # optional in the schema: missing becomes the mean
            values = tft.sparse_tensor_to_dense_with_shape(values, [None, 1], default_value=float("nan"))
            values = tf.where(tf.math.is_nan(values), tft.mean(values), values)
        outputs[name] = tft.scale_to_z_score(tf.reshape(values, [-1]))
    outputs[LABEL] = tft.compute_and_apply_vocabulary(tf.reshape(inputs[LABEL], [-1]), vocab_filename=LABEL)
    return outputs


def _dataset(fn_args, files, batch_size):
    options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL)
    schema = fn_args.transform_output.transformed_metadata.schema
    dataset = fn_args.data_accessor.tf_dataset_factory(files, options, schema)
    return dataset.map(
        lambda features, label: (tf.stack([tf.reshape(features[n], [-1]) for n in FEATURES], axis=1), label)
    )


class _Serving(tf.Module):
    """The Keras model with the Transform graph in front: serialized raw tf.Examples in."""

    def __init__(self, model, transform_output):
        super().__init__()
        self.model = model
        self.tft_layer = transform_output.transform_features_layer()
        raw_spec = transform_output.raw_feature_spec()
        self.raw_spec = {name: raw_spec[name] for name in FEATURES}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        transformed = self.tft_layer(tf.io.parse_example(examples, self.raw_spec))
        inputs = tf.stack([tf.reshape(transformed[n], [-1]) for n in FEATURES], axis=1)
        return {"scores": tf.nn.softmax(self.model(inputs))}


def run_fn(fn_args):
    classes = fn_args.transform_output.vocabulary_size_by_name(LABEL)
    model = keras.Sequential(
        [
            keras.Input(shape=(len(FEATURES),)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(classes),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(fn_args.hyperparameters.get("learning_rate", 0.01)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        _dataset(fn_args, fn_args.train_files, 32).repeat(),
        steps_per_epoch=fn_args.train_steps,
        validation_data=_dataset(fn_args, fn_args.eval_files, 64),
        validation_steps=fn_args.eval_steps,
        verbose=0,
    )
    serving = _Serving(model, fn_args.transform_output)
    tf.saved_model.save(serving, fn_args.serving_model_dir, signatures={"serving_default": serving.serve})
