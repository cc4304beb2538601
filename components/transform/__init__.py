"""Transform: a user's preprocessing_fn on tensorflow-transform and Beam.

Modules:
- `component`: the declaration and the user function's checks;
- `beam`: the Beam pipeline.
"""

from components.transform.component import Transform, TransformParams

__all__ = ["Transform", "TransformParams"]
