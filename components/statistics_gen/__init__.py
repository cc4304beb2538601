"""StatisticsGen: per-split feature statistics on Beam, as TFDV's protos.

Modules:
- `component`: the declaration and the Beam pipeline;
- `statistics`: mergeable accumulators and their protos.
"""

from components.statistics_gen.component import StatisticsGen, StatisticsGenParams

__all__ = ["StatisticsGen", "StatisticsGenParams"]
