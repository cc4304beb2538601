"""Evaluator: TFMA through the model's serving signature against the latest blessed model, deciding the ModelBlessing.

Modules:
- `component`: the declaration, its parameters and the blessing;
- `tfma`: the EvalConfig, the Beam run, the results;
- `metrics`: metrics from one shared accumulator per model and slice;
- `page`: evaluation.html.
"""

from components.evaluator.component import Evaluator, EvaluatorParams

__all__ = ["Evaluator", "EvaluatorParams"]
