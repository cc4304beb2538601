"""Trainer: the user's build_fn or model_fn on the custom estimator (`estimator`).

Modules:
- `component`: the declaration, heads and the Model's properties;
- `training`: the training job (one process, or each of several workers: `python -m
  components.trainer.training JOB_FILE`);
- `workers`: starting and watching the worker processes of a multi-worker Trainer;
- `io`: input functions, the export with the Transform graph, the training page.
"""

from components.trainer.component import Trainer, TrainerParams

__all__ = ["Trainer", "TrainerParams"]
