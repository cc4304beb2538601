"""Feature statistics as mergeable accumulators (bounded memory), as TFDV's protos, and schema inference.

An accumulator summarizes any number of tf.Examples in constant memory: counts, Welford mean and
variance, min/max, the few most extreme values, and tfx-bsl's C++ sketches (quantiles, distinct
count, top values). Accumulators of shards merge into one per split, which becomes a
`DatasetFeatureStatistics` exactly where TFDV would put each number.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INT, FLOAT, STRING = "INT", "FLOAT", "STRING"
QUANTILE_POINTS = 100  # resolution of the quantile sketch read-out, for histograms
QUANTILE_EPS = 0.01  # rank error of the quantile sketch; its size grows as log(n) / eps
HISTOGRAM_BUCKETS = 10
TOP_VALUES = 20
EXTREMES = 5  # the smallest and largest values kept per numeric feature, to show offenders
STATS_FILE = "FeatureStats.pb"


def _sketches():
    from tfx_bsl import sketches

    return sketches


@dataclass
class FeatureAccumulator:
    kind: str
    present: int = 0
    min_values: int = 1 << 62
    max_values: int = 0
    total_values: int = 0
    # numeric
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    zeros: int = 0
    nans: int = 0
    infs: int = 0
    smallest: list = field(default_factory=list)
    largest: list = field(default_factory=list)
    quantiles: Any = None
    # strings
    total_length: int = 0
    top: Any = None
    distinct: Any = None

    def __post_init__(self):
        sketches = _sketches()
        if self.kind == STRING:
            self.top = self.top or sketches.MisraGriesSketch(1000)
            self.distinct = self.distinct or sketches.KmvSketch(4096)
        else:
            self.quantiles = self.quantiles or sketches.QuantilesSketch(QUANTILE_EPS, 1 << 32, 1)

    def __getstate__(self) -> dict:
        # A compacted quantile sketch has a fixed size whatever the number of values added.
        if self.quantiles is not None:
            self.quantiles.Compact()
        return self.__dict__

    def add(self, column: pa.Array) -> None:
        """Adds a batch's column: a list array, null where the feature is absent."""
        lengths = pc.list_value_length(column).drop_null().to_numpy()
        self.present += len(lengths)
        if len(lengths):
            self.min_values = min(self.min_values, int(lengths.min()))
            self.max_values = max(self.max_values, int(lengths.max()))
            self.total_values += int(lengths.sum())
        values = pc.list_flatten(column)
        if self.kind == STRING:
            self._add_strings(values)
        else:
            self._add_numbers(values.to_numpy(zero_copy_only=False).astype(np.float64))

    def _add_numbers(self, values: np.ndarray) -> None:
        # NaN and infinities (where the schema allows them) are counted apart, as TFDV's
        # histograms count NaN: the moments, extremes and quantiles are the finite values'.
        nan = np.isnan(values)
        self.nans += int(nan.sum())
        infinite = np.isinf(values)
        self.infs += int(infinite.sum())
        values = values[~nan & ~infinite]
        if not len(values):
            return
        self._merge_moments(len(values), float(values.mean()), float(((values - values.mean()) ** 2).sum()))
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        self.zeros += int((values == 0).sum())
        ordered = np.sort(values)
        self.smallest = sorted([*self.smallest, *ordered[:EXTREMES].tolist()])[:EXTREMES]
        self.largest = sorted([*self.largest, *ordered[-EXTREMES:].tolist()])[-EXTREMES:]
        self.quantiles.AddValues(pa.array(values))

    def _add_strings(self, values: pa.Array) -> None:
        values = values.cast(pa.large_binary())
        self.total_length += int(pc.sum(pc.binary_length(values)).as_py() or 0)
        self.top.AddValues(values)
        self.distinct.AddValues(values)

    def _merge_moments(self, count: int, mean: float, m2: float) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def merge(self, other: FeatureAccumulator) -> None:
        if other.kind != self.kind:
            raise ValueError(f"type changed between shards: {self.kind} and {other.kind}")
        self.present += other.present
        self.min_values = min(self.min_values, other.min_values)
        self.max_values = max(self.max_values, other.max_values)
        self.total_values += other.total_values
        if self.kind == STRING:
            self.total_length += other.total_length
            self.top.Merge(other.top)
            self.distinct.Merge(other.distinct)
            return
        if other.count:
            self._merge_moments(other.count, other.mean, other.m2)
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.zeros += other.zeros
        self.nans += other.nans
        self.infs += other.infs
        self.smallest = sorted(self.smallest + other.smallest)[:EXTREMES]
        self.largest = sorted(self.largest + other.largest)[-EXTREMES:]
        self.quantiles.Merge(other.quantiles)


@dataclass
class SplitAccumulator:
    """Statistics of one split so far: the example count and one accumulator per feature."""

    num_examples: int = 0
    features: dict = field(default_factory=dict)

    def add_batch(self, batch: pa.RecordBatch) -> None:
        self.num_examples += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns):
            accumulator = self.features.get(name)
            if accumulator is None:  # its sketches once per feature, not once per batch
                accumulator = self.features[name] = FeatureAccumulator(_kind_of(column.type))
            accumulator.add(column)

    def merge(self, other: SplitAccumulator) -> SplitAccumulator:
        self.num_examples += other.num_examples
        for name, acc in other.features.items():
            if name in self.features:
                self.features[name].merge(acc)
            else:
                self.features[name] = acc
        return self


def _kind_of(list_type: pa.DataType) -> str:
    value_type = list_type.value_type
    if pa.types.is_integer(value_type):
        return INT
    if pa.types.is_floating(value_type):
        return FLOAT
    return STRING


def decode_examples(records: list[bytes]) -> pa.RecordBatch:
    from tfx_bsl.coders import example_coder

    return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(records))


# ---- to TFDV's protos --------------------------------------------------------------------------


def to_proto(name: str, acc: SplitAccumulator):
    """A DatasetFeatureStatistics for one split, as TFDV would write it."""
    from tensorflow_metadata.proto.v0 import statistics_pb2 as stats_pb

    dataset = stats_pb.DatasetFeatureStatistics(name=name, num_examples=acc.num_examples)
    for feature_name in sorted(acc.features):
        f = acc.features[feature_name]
        feature = dataset.features.add()
        feature.path.step.append(feature_name)
        feature.type = {
            INT: stats_pb.FeatureNameStatistics.INT,
            FLOAT: stats_pb.FeatureNameStatistics.FLOAT,
            STRING: stats_pb.FeatureNameStatistics.STRING,
        }[f.kind]
        stats = feature.string_stats if f.kind == STRING else feature.num_stats
        _fill_common(stats.common_stats, f, acc.num_examples)
        if f.kind == STRING:
            _fill_strings(stats, f)
        else:
            _fill_numbers(stats, f, stats_pb)
            # JSON, whose Python reading takes NaN and Infinity too: any value may be an extreme.
            feature.custom_stats.add(name="smallest_values", str=json.dumps(f.smallest))
            feature.custom_stats.add(name="largest_values", str=json.dumps(f.largest))
            if f.infs:
                feature.custom_stats.add(name="num_inf", num=f.infs)
    return dataset


def _fill_common(common, f: FeatureAccumulator, num_examples: int) -> None:
    common.num_non_missing = f.present
    common.num_missing = num_examples - f.present
    if f.present:
        common.min_num_values = f.min_values
        common.max_num_values = f.max_values
        common.avg_num_values = f.total_values / f.present
    common.tot_num_values = f.total_values


def _fill_numbers(stats, f: FeatureAccumulator, stats_pb) -> None:
    if f.count == 0:
        if f.nans:  # every value NaN: still say how many
            stats.histograms.add(type=stats_pb.Histogram.STANDARD, num_nan=f.nans)
        return
    stats.mean = f.mean
    stats.std_dev = math.sqrt(f.m2 / f.count)
    stats.num_zeros = f.zeros
    stats.min, stats.max = f.minimum, f.maximum
    points = _quantile_points(f)
    stats.median = float(np.interp(0.5, np.linspace(0, 1, len(points)), points))
    standard = stats.histograms.add(type=stats_pb.Histogram.STANDARD, num_nan=f.nans)
    edges = np.linspace(f.minimum, f.maximum, HISTOGRAM_BUCKETS + 1)
    cdf = None
    if f.maximum > f.minimum:
        cdf = np.interp(edges, points, np.linspace(0, 1, len(points)))
        cdf[0], cdf[-1] = 0.0, 1.0  # every value lies within [min, max]
    for i in range(HISTOGRAM_BUCKETS):
        share = (cdf[i + 1] - cdf[i]) if cdf is not None else (1.0 if i == 0 else 0.0)
        standard.buckets.add(low_value=edges[i], high_value=edges[i + 1], sample_count=share * f.count)
    quantiles = stats.histograms.add(type=stats_pb.Histogram.QUANTILES, num_nan=f.nans)
    deciles = np.interp(np.linspace(0, 1, HISTOGRAM_BUCKETS + 1), np.linspace(0, 1, len(points)), points)
    for i in range(HISTOGRAM_BUCKETS):
        quantiles.buckets.add(
            low_value=deciles[i], high_value=deciles[i + 1], sample_count=f.count / HISTOGRAM_BUCKETS
        )


def _quantile_points(f: FeatureAccumulator) -> np.ndarray:
    f.quantiles.Compact()
    return np.asarray(f.quantiles.GetQuantiles(QUANTILE_POINTS).flatten().to_numpy(), dtype=np.float64)


def _fill_strings(stats, f: FeatureAccumulator) -> None:
    stats.unique = int(round(f.distinct.Estimate()))
    if f.total_values:
        stats.avg_length = f.total_length / f.total_values
    counts = f.top.Estimate().to_pylist()
    counts.sort(key=lambda item: (-item["counts"], item["values"]))
    # As TFDV: top_values holds the most frequent few; rank_histogram every value the sketch kept.
    for rank, item in enumerate(counts):
        value = item["values"].decode("utf-8", errors="replace")
        if rank < TOP_VALUES:
            stats.top_values.add(value=value, frequency=item["counts"])
        stats.rank_histogram.buckets.add(
            low_rank=rank, high_rank=rank, label=value, sample_count=item["counts"]
        )


def save_statistics(uri: str, split: str, dataset) -> None:
    from tensorflow_metadata.proto.v0 import statistics_pb2 as stats_pb

    directory = os.path.join(uri, f"Split-{split}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, STATS_FILE), "wb") as f:
        f.write(stats_pb.DatasetFeatureStatisticsList(datasets=[dataset]).SerializeToString())


def load_statistics(statistics, split: str):
    """The DatasetFeatureStatistics of one split of an ExampleStatistics artifact."""
    from tensorflow_metadata.proto.v0 import statistics_pb2 as stats_pb

    with open(os.path.join(statistics.split_uri(split), STATS_FILE), "rb") as f:
        return stats_pb.DatasetFeatureStatisticsList.FromString(f.read()).datasets[0]


def feature_stats(dataset) -> dict:
    """name -> FeatureNameStatistics of a DatasetFeatureStatistics."""
    return {".".join(f.path.step) or f.name: f for f in dataset.features}
