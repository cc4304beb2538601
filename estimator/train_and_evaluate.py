"""train_and_evaluate: train, evaluate every N steps, stop early on a patience counted in evaluations,
and keep the best evaluated weights. Its state lives in the checkpoints, so a killed run resumes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import UserInputError


@dataclass(frozen=True)
class TrainSpec:
    input_fn: Callable
    max_steps: int


@dataclass(frozen=True)
class EvalSpec:
    """Evaluate `steps` batches (all of the eval input if None) every `every_steps` training steps."""

    input_fn: Callable
    steps: int | None = None
    every_steps: int = 100


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when `metric` has not improved by more than `min_delta` for `patience` evaluations in a
    row; `mode` is "min" (loss) or "max" (accuracy)."""

    metric: str = "loss"
    mode: str = "min"
    min_delta: float = 0.0
    patience: int = 3

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise UserInputError(f"EarlyStopping mode must be 'min' or 'max', got {self.mode!r}")
        if self.patience < 1:
            raise UserInputError(
                f"EarlyStopping patience counts evaluations and must be >= 1, got {self.patience}"
            )

    def improved(self, value: float, best: float) -> bool:
        if math.isnan(best):
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


@dataclass
class TrainResult:
    best_step: int
    best_metrics: dict
    last_step: int
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def train_and_evaluate(
    estimator,
    train_spec: TrainSpec,
    eval_spec: EvalSpec,
    early_stopping: EarlyStopping | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Alternates training and evaluation until max_steps or early stopping; the best evaluation's
    weights are saved under `best/`. Resumes from the latest checkpoint with its early-stopping state."""
    stopping = early_stopping or EarlyStopping(patience=1 << 30)
    state = estimator.early_stopping_state
    first = next(iter(train_spec.input_fn().take(1)))
    estimator.build(first)
    resumed = int(estimator.global_step.numpy())
    if resumed:
        log(
            f"resumed from the checkpoint at step {resumed}: best {stopping.metric} "
            f"{float(state['best_value'].numpy()):.4f} at step {int(state['best_step'].numpy())}, "
            f"{int(state['evaluations_without_improvement'].numpy())} evaluation(s) without improvement"
        )
    history: list[dict] = []
    while not int(state["stopped"].numpy()):
        step = int(estimator.global_step.numpy())
        due = step > 0 and (step % eval_spec.every_steps == 0 or step >= train_spec.max_steps)
        if step > int(state["last_evaluated_step"].numpy()) and due:
            results = estimator.evaluate(eval_spec.input_fn, eval_spec.steps)
            history.append(results)
            state["last_evaluated_step"].assign(step)
            _record(estimator, stopping, results, log)
            estimator.save()
            continue
        if step >= train_spec.max_steps:
            break
        target = min(train_spec.max_steps, (step // eval_spec.every_steps + 1) * eval_spec.every_steps)
        estimator.train(train_spec.input_fn, max_steps=target, log=log)
        reached = int(estimator.global_step.numpy())
        if reached == step:
            break
        if reached < target:  # the training input ran out: evaluate where it ended, then stop
            train_spec = TrainSpec(train_spec.input_fn, reached)
    best_step = int(state["best_step"].numpy())
    return TrainResult(
        best_step=best_step,
        best_metrics=next(
            (h for h in history if h["global_step"] == best_step),
            {stopping.metric: float(state["best_value"].numpy())},
        ),
        last_step=int(estimator.global_step.numpy()),
        stopped_early=bool(int(state["stopped"].numpy())),
        history=history,
        resumed_from=resumed,
    )


def _record(estimator, stopping: EarlyStopping, results: dict, log) -> None:
    state = estimator.early_stopping_state
    if stopping.metric not in results:
        raise UserInputError(
            f"early stopping monitors {stopping.metric!r}, which the evaluation does not report; "
            f"it reports: {', '.join(sorted(results))}"
        )
    value = results[stopping.metric]
    shown = ", ".join(
        f"{k} {v:.4f}" for k, v in sorted(results.items()) if k != "global_step" and "/" not in k
    )
    if stopping.improved(value, float(state["best_value"].numpy())):
        state["best_value"].assign(value)
        state["best_step"].assign(results["global_step"])
        state["evaluations_without_improvement"].assign(0)
        estimator.save_best()
        log(f"evaluation at step {results['global_step']}: {shown} (best so far)")
        return
    state["evaluations_without_improvement"].assign_add(1)
    waited = int(state["evaluations_without_improvement"].numpy())
    log(
        f"evaluation at step {results['global_step']}: {shown} ({waited} of {stopping.patience} without improvement)"
    )
    if waited >= stopping.patience:
        state["stopped"].assign(1)
        log(
            f"early stopping: best {stopping.metric} {float(state['best_value'].numpy()):.4f} "
            f"at step {int(state['best_step'].numpy())}"
        )
