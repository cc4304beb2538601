"""The Estimator: a model_fn called in TRAIN, EVAL and PREDICT modes over shared variables, trained
with a Keras optimizer, with checkpoints that resume.

As tf.estimator's model_fn did, ours builds its layers afresh in every call; the estimator makes
those calls share one set of variables (matched by creation order and shape), so a model_fn may
use Keras 3 layers and plain TensorFlow ops freely.

On disk, `model_dir/` (the Model's run directory) holds `ckpt-*` checkpoints (variables,
optimizer, global step and the early-stopping state), `best/` (the best evaluated weights),
and TensorBoard event files under `train/` and `eval/`. A checkpoint is never written over: each
save takes a number no file in its folder has yet (TensorFlow renames a new data file into place
before it writes the index beside it, so a process killed while it rewrote `ckpt-N` would leave a
data file and an index that disagree); its global step is read from the checkpoint itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from estimator.spec import EstimatorSpec, ModeKeys
from pipeline.errors import UserInputError

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("estimator")


def get_global_step() -> tf.Variable:
    """The global step of the estimator whose model_fn is running (tf.estimator's
    `tf.compat.v1.train.get_global_step()`), e.g. for a learning-rate schedule."""
    estimator = _CURRENT.get(None)
    if estimator is None:
        raise RuntimeError("get_global_step() is only available inside a model_fn called by an Estimator")
    return estimator.global_step


@dataclass
class RunConfig:
    """As tf.estimator's: checkpoint and logging cadence, the seed, and the distribution strategy
    (None: one device; a MirroredStrategy or MultiWorkerMirroredStrategy otherwise, as
    `train_distribute` was). `is_chief`: this process writes checkpoints and `best/`; the other
    workers of a multi-worker job read them and write nothing."""

    save_checkpoints_steps: int = 100
    keep_checkpoint_max: int = 3
    log_step_count_steps: int = 50
    random_seed: int = 0
    strategy: Any = None
    is_chief: bool = True


class SharedVariables(tf.Module):
    """Variables created by the first model_fn call, handed back to every later call."""

    def __init__(self):
        super().__init__(name="model")
        self.created: list[tf.Variable] = []
        self._next = 0
        self._frozen = False

    @contextlib.contextmanager
    def scope(self, where: str):
        self._next = 0

        def creator(next_creator, **kwargs):
            index = self._next
            self._next += 1
            if index < len(self.created):
                existing = self.created[index]
                shape = kwargs.get("shape")
                if shape is not None and tuple(tf.TensorShape(shape).as_list()) != tuple(
                    existing.shape.as_list()
                ):
                    raise UserInputError(
                        f"{where} created variable #{index} with shape {tf.TensorShape(shape)}, but the first "
                        f"call created {existing.name} with shape {existing.shape}; a model_fn must create the "
                        "same variables in the same order in every mode"
                    )
                return existing
            if self._frozen:
                raise UserInputError(f"{where} created a variable in a later call that the first did not")
            variable = next_creator(**kwargs)
            self.created.append(variable)
            return variable

        with tf.variable_creator_scope(creator):
            yield
        self._frozen = True


class Estimator:
    """`model_fn(features, labels, mode, params) -> EstimatorSpec`, trained in `model_dir`.

    optimizer: a callable `params -> keras optimizer` (default Adam with params['learning_rate'],
    or 0.01). warm_start_from: a checkpoint directory or prefix whose model variables (matched by
    order and shape) initialize this one's before training starts from step 0.
    """

    def __init__(
        self,
        model_fn: Callable[..., EstimatorSpec],
        model_dir: str,
        params: dict[str, Any] | None = None,
        config: RunConfig | None = None,
        optimizer: Callable[[dict], Any] | None = None,
        warm_start_from: str | None = None,
    ):
        self.model_fn = model_fn
        self.model_dir = model_dir
        self.params = dict(params or {})
        self.config = config or RunConfig()
        self.warm_start_from = warm_start_from
        self.strategy = self.config.strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.variables = SharedVariables()
        # Plain variables, outside the strategy: updated between steps, the same on every worker.
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.early_stopping_state = {
            "best_value": tf.Variable(float("nan"), dtype=tf.float64, trainable=False),
            "best_step": tf.Variable(-1, dtype=tf.int64, trainable=False),
            "evaluations_without_improvement": tf.Variable(0, dtype=tf.int64, trainable=False),
            "stopped": tf.Variable(0, dtype=tf.int64, trainable=False),
            "last_evaluated_step": tf.Variable(-1, dtype=tf.int64, trainable=False),
        }
        import keras

        make_optimizer = optimizer or (lambda p: keras.optimizers.Adam(p.get("learning_rate", 0.01)))
        with self.strategy.scope():
            self.optimizer = make_optimizer(self.params)
        self._built = False
        self.train_losses: list[tuple[int, float]] = []
        self._train_step: Any = None  # tf.functions and the iterator, made on first use
        self._train_iterator: Any = None
        self._eval_step: Any = None
        self._checkpoint = tf.train.Checkpoint(
            model=self.variables,
            optimizer=self.optimizer,
            global_step=self.global_step,
            **self.early_stopping_state,
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, model_dir, max_to_keep=self.config.keep_checkpoint_max
        )
        self._best = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=self.variables, global_step=self.global_step),
            os.path.join(model_dir, "best"),
            max_to_keep=1,
        )
        tf.random.set_seed(self.config.random_seed)

    # ---- calling the model_fn --------------------------------------------------------------

    def call_model_fn(self, features, labels, mode: str) -> EstimatorSpec:
        where = _where(self.model_fn)
        token = _CURRENT.set(self)
        try:
            with self.variables.scope(where):
                spec = self.model_fn(features, labels, mode, self.params)
        except UserInputError:
            raise
        except Exception as error:
            raise UserInputError(
                f"{where} raised in mode {mode!r}: {type(error).__name__}: {error}"
            ) from error
        finally:
            _CURRENT.reset(token)
        if not isinstance(spec, EstimatorSpec):
            raise UserInputError(f"{where} must return an EstimatorSpec, got {type(spec).__name__}")
        return spec

    def build(self, element) -> None:
        """Creates the variables and optimizer slots from one (features, labels) element, then
        restores the latest checkpoint, or warm-starts."""
        if self._built:
            return
        features, labels = element
        with self.strategy.scope():
            self.call_model_fn(features, labels, ModeKeys.TRAIN)
            self.optimizer.build(self.trainable_variables)
        self._built = True
        restored = self._manager.restore_or_initialize()
        if restored:
            return
        if self.warm_start_from:
            self._warm_start(self.warm_start_from)

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return [v for v in self.variables.created if v.trainable]

    def _warm_start(self, source: str) -> None:
        prefix = tf.train.latest_checkpoint(source) or source
        reader = tf.train.load_checkpoint(prefix)
        for index, variable in enumerate(self.variables.created):
            key = f"model/created/{index}/.ATTRIBUTES/VARIABLE_VALUE"
            if reader.has_tensor(key) and tuple(reader.get_variable_to_shape_map()[key]) == tuple(
                variable.shape
            ):
                variable.assign(reader.get_tensor(key))

    # ---- training, evaluation, prediction ------------------------------------------------

    def train(self, input_fn: Callable, max_steps: int, log: Callable[[str], None] = print) -> None:
        """Trains until the global step reaches `max_steps`, saving checkpoints on the way."""
        if self._train_iterator is None:
            self._train_iterator = iter(self._distribute(input_fn()))
            self._train_spec = self._train_iterator.element_spec
        if not self._built:
            self.build(next(iter(input_fn().take(1))))
        if self._train_step is None:
            self._train_step = tf.function(
                self._step, input_signature=list(self._train_spec), autograph=False
            )
        writer = self._summary_writer("train")
        started, first = time.monotonic(), int(self.global_step.numpy())
        while int(self.global_step.numpy()) < max_steps:
            try:
                features, labels = next(self._train_iterator)
            except StopIteration:
                log(f"the training input ended at step {int(self.global_step.numpy())}")
                break
            loss = self._run_step(features, labels)
            step = int(self.global_step.numpy())
            if step % self.config.log_step_count_steps == 0 or step == max_steps:
                rate = (step - first) / max(time.monotonic() - started, 1e-9)
                log(f"step {step}: loss {loss:.4f} ({rate:.0f} steps/s)")
                self.train_losses.append((step, loss))
                write_scalars(writer, step, {"loss": loss})
            if step % self.config.save_checkpoints_steps == 0:
                self.save()
        writer.flush()

    def _run_step(self, features, labels) -> float:
        try:
            loss = self._train_step(features, labels)
        except tf.errors.InvalidArgumentError as error:
            raise UserInputError(f"{_where(self.model_fn)}: {error.message.splitlines()[0]}") from None
        value = float(loss.numpy())
        if value != value or value in (float("inf"), float("-inf")):
            raise UserInputError(
                f"the loss became {value} at step {int(self.global_step.numpy())} ({_where(self.model_fn)}); "
                "lower the learning rate or check the inputs for extreme values"
            )
        return value

    def _distribute(self, dataset):
        """The training input as the strategy feeds it: each global batch split between the
        replicas; across workers, sharded by element (a split may be a single file)."""
        if self.replicas == 1 and not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _step(self, features, labels):
        """One training step on every replica; the loss averaged over them."""
        losses = self.strategy.run(self._replica_step, args=(features, labels))
        self.global_step.assign_add(1)
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    def _replica_step(self, features, labels):
        with tf.GradientTape() as tape:
            spec = self.call_model_fn(features, labels, ModeKeys.TRAIN)
            loss = tf.convert_to_tensor(spec.loss)
            # The optimizer sums the replicas' gradients: each contributes its share of the mean.
            scaled = loss / self.replicas
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return loss

    def evaluate(self, input_fn: Callable, steps: int | None = None) -> dict[str, float]:
        """Loss and metrics averaged over `steps` batches of the eval input (all of it if None)."""
        dataset = input_fn()
        if steps is not None:
            dataset = dataset.take(steps)
        if not self._built:
            self.build(next(iter(dataset.take(1))))
        eval_step = self._eval_step_for(dataset.element_spec)
        totals: dict[str, list[float]] = {}
        for features, labels in dataset:
            try:
                batch = eval_step(features, labels)
            except tf.errors.InvalidArgumentError as error:
                raise UserInputError(f"{_where(self.model_fn)}: {error.message.splitlines()[0]}") from None
            for name, (total, count) in batch.items():
                acc = totals.setdefault(name, [0.0, 0.0])
                acc[0] += float(total)
                acc[1] += float(count)
        results = {
            name: (total / count if count else float("nan")) for name, (total, count) in totals.items()
        }
        results["global_step"] = int(self.global_step.numpy())
        writer = self._summary_writer("eval")
        write_scalars(
            writer, results["global_step"], {k: v for k, v in results.items() if k != "global_step"}
        )
        writer.flush()
        return results

    def _eval_step_for(self, element_spec):
        """The traced evaluation step, traced once per input signature: early stopping evaluates
        every few hundred steps, and retracing each time would cost more than a small evaluation."""
        if self._eval_step is None or self._eval_step[0] != element_spec:

            @tf.function(input_signature=list(element_spec), autograph=False)
            def eval_step(features, labels):
                spec = self.call_model_fn(features, labels, ModeKeys.EVAL)
                batch = tf.cast(tf.shape(tf.nest.flatten(labels)[0])[0], tf.float64)
                sums = {"loss": (tf.cast(spec.loss, tf.float64) * batch, batch)}
                sums.update({name: (m.total, m.count) for name, m in spec.eval_metric_ops.items()})
                return sums

            self._eval_step = (element_spec, eval_step)
        return self._eval_step[1]

    def predict(self, input_fn: Callable):
        """Yields one dict of predictions per example."""
        for features in input_fn():
            if isinstance(features, tuple):
                features = features[0]
            spec = self.call_model_fn(features, None, ModeKeys.PREDICT)
            predictions = (
                spec.predictions if isinstance(spec.predictions, dict) else {"output": spec.predictions}
            )
            batch = {k: v.numpy() for k, v in predictions.items()}
            for i in range(len(next(iter(batch.values())))):
                yield {k: v[i] for k, v in batch.items()}

    def _summary_writer(self, name: str):
        """TensorBoard events of the chief; the other workers would write the same."""
        if not self.config.is_chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.model_dir, name))

    # ---- checkpoints -------------------------------------------------------------------------

    def save(self) -> str | None:
        """A checkpoint of the chief; the other workers write nothing (they hold the same values)."""
        if not self.config.is_chief:
            return None
        return self._manager.save(checkpoint_number=unused_checkpoint_number(self.model_dir))

    def save_best(self) -> str | None:
        if not self.config.is_chief:
            return None
        return self._best.save(
            checkpoint_number=unused_checkpoint_number(os.path.join(self.model_dir, "best"))
        )

    def restore_best(self) -> int:
        """Loads the best evaluated weights; returns their step."""
        if self._best.latest_checkpoint is None:
            raise UserInputError(f"no best checkpoint in {self.model_dir}/best: nothing was evaluated yet")
        step = self.global_step.numpy()
        tf.train.Checkpoint(model=self.variables, global_step=self.global_step).restore(
            self._best.latest_checkpoint
        ).expect_partial()
        best_step = int(self.global_step.numpy())
        self.global_step.assign(step)
        return best_step

    @property
    def latest_checkpoint(self) -> str | None:
        return self._manager.latest_checkpoint


def write_scalars(writer, step: int | float, values: dict[str, float]) -> None:
    """TensorBoard scalars without the tensorboard package (TensorFlow 2.21 does not bring it):
    `tf.summary.write` with the scalars plugin's metadata is what `tf.summary.scalar` writes."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.write(name, tf.constant(value, tf.float32), metadata=metadata)


def _where(fn) -> str:
    target = getattr(fn, "build_fn", fn)
    code = getattr(target, "__code__", None)
    return f"{target.__name__} in {code.co_filename}" if code else repr(target)


def unused_checkpoint_number(directory: str) -> int:
    """One more than the number of any `ckpt-N` file in `directory`, finished or not."""
    numbers = [
        int(match.group(1))
        for name in (os.listdir(directory) if os.path.isdir(directory) else [])
        if (match := _CHECKPOINT_FILE.match(name))
    ]
    return max(numbers, default=0) + 1


_CHECKPOINT_FILE = re.compile(r"ckpt-(\d+)(?:\.|_temp|$)")


def checkpoint_step(prefix: str) -> int:
    """The global step a checkpoint holds."""
    return int(tf.train.load_checkpoint(prefix).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def latest_checkpoint_step(model_dir: str) -> int:
    """The global step of the latest checkpoint in `model_dir`, 0 when there is none."""
    prefix = tf.train.latest_checkpoint(model_dir)
    return checkpoint_step(prefix) if prefix else 0
