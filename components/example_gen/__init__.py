"""ExampleGen: the CSV files of one span to gzipped TFRecord tf.Examples, split by a stable hash.

Modules:
- `component`: the declaration: spans, headers, feature names;
- `stages`: the pipeline's stages as functions, and the in-process path that calls them without Beam;
- `beam`: the Beam pipeline;
- `csv_to_examples`: CSV rows to tf.Example in Arrow batches.
"""

from components.example_gen.component import ExampleGen, ExampleGenParams, RollingWindow, SpanRange

__all__ = ["ExampleGen", "ExampleGenParams", "RollingWindow", "SpanRange"]
