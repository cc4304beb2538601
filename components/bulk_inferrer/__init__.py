"""BulkInferrer: a span of rows scored with a training pipeline's served (or blessed) model.

Modules:
- `component`: the declaration: which model (resolved in the store), the step, its records;
- `scoring`: the scoring itself, streamed: PredictionLogs as TFX's BulkInferrer writes them, and a CSV.
"""

from components.bulk_inferrer.component import BulkInferrer, BulkInferrerParams

__all__ = ["BulkInferrer", "BulkInferrerParams"]
