"""Evaluator: TFMA through the model's serving signature against the latest blessed model, deciding the ModelBlessing.

Modules:
- `component`: the declaration, its parameters and the blessing;
- `tfma_results`: the EvalConfig, thresholds, the shared class order, TFMA's results read back;
- `batched`: the evaluation itself, batch by batch (in process or as a Beam pipeline);
- `metrics`: the metrics as TFMA metrics, derived from one shared accumulator per model and slice;
- `page`: evaluation.html.
"""

from components.evaluator.component import Evaluator, EvaluatorParams

__all__ = ["Evaluator", "EvaluatorParams"]
