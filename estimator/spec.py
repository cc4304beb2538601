"""What a model_fn returns: modes, the EstimatorSpec, and the export outputs that become signatures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import UserInputError

SERVING_DEFAULT = "serving_default"


class ModeKeys:
    """The three modes a model_fn is called in, as in tf.estimator."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"


@dataclass
class PredictOutput:
    """A Predict signature: any named tensors."""

    outputs: dict[str, Any]

    def signature_outputs(self) -> dict[str, Any]:
        return dict(self.outputs)


@dataclass
class ClassificationOutput:
    """TF Serving's Classify form: `classes` (string class names, [batch, n]) and `scores`
    (probabilities, [batch, n]); either may be left out, not both."""

    scores: Any = None
    classes: Any = None

    def signature_outputs(self) -> dict[str, Any]:
        outputs = {k: v for k, v in (("classes", self.classes), ("scores", self.scores)) if v is not None}
        if not outputs:
            raise UserInputError("ClassificationOutput needs scores, classes or both")
        return outputs


@dataclass
class RegressionOutput:
    """TF Serving's Regress form: one float per example under `outputs`."""

    value: Any

    def signature_outputs(self) -> dict[str, Any]:
        return {"outputs": self.value}


@dataclass
class EstimatorSpec:
    """A model_fn's answer for one mode.

    TRAIN and EVAL need `loss` (the estimator's optimizer minimizes it in TRAIN: tf.estimator's
    `train_op` has no TF2 equivalent); EVAL may add `eval_metric_ops` (name -> `metrics.Mean`);
    PREDICT needs `predictions` and may give `export_outputs` (signature name -> output), one of
    them under `serving_default` when there are several.
    """

    mode: str
    predictions: Any = None
    loss: Any = None
    eval_metric_ops: dict[str, Any] = field(default_factory=dict)
    export_outputs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.mode in (ModeKeys.TRAIN, ModeKeys.EVAL) and self.loss is None:
            raise UserInputError(f"the EstimatorSpec for mode {self.mode!r} needs a loss")
        if self.mode == ModeKeys.PREDICT:
            if self.predictions is None:
                raise UserInputError("the EstimatorSpec for mode 'infer' (PREDICT) needs predictions")
            self.export_outputs = resolve_export_outputs(self.export_outputs, self.predictions)


def resolve_export_outputs(export_outputs: dict | None, predictions: Any) -> dict:
    """A single export output becomes `serving_default`; several need one named so; none means
    a PredictOutput of all predictions."""
    if not export_outputs:
        outputs = predictions if isinstance(predictions, dict) else {"output": predictions}
        return {SERVING_DEFAULT: PredictOutput(outputs)}
    if len(export_outputs) == 1:
        [(name, output)] = export_outputs.items()
        return (
            {SERVING_DEFAULT: output} if name == SERVING_DEFAULT else {SERVING_DEFAULT: output, name: output}
        )
    if SERVING_DEFAULT not in export_outputs:
        raise UserInputError(
            f"export_outputs has {len(export_outputs)} entries ({', '.join(sorted(export_outputs))}) and none is "
            f"'{SERVING_DEFAULT}'; put the one TF Serving should use by default under '{SERVING_DEFAULT}'"
        )
    return dict(export_outputs)
