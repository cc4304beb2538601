"""Trainer: the user's build_fn or model_fn on the custom estimator (`estimator`).

Modules:
- `component`: the declaration, heads and the Model's properties;
- `io`: input functions, the export with the Transform graph, the training page.
"""

from components.trainer.component import Trainer, TrainerParams

__all__ = ["Trainer", "TrainerParams"]
