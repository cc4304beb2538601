"""Anomaly checks: one split's statistics against a schema, and one span's statistics against the
previous span's (drift). Each finding names the feature, the split, what was expected, what was
found and a few offending values; findings become TFDV's Anomalies proto."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

# Our names for the anomaly kinds (used by ExampleValidator's `warn_only`) and TFDV's types.
KINDS = {
    "missing_column": "SCHEMA_MISSING_COLUMN",
    "new_column": "SCHEMA_NEW_COLUMN",
    "wrong_type": "UNEXPECTED_DATA_TYPE",
    "unexpected_value": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
    "out_of_range": "FLOAT_TYPE_BIG_FLOAT",
    "nan_values": "FLOAT_TYPE_HAS_NAN",
    "inf_values": "FLOAT_TYPE_HAS_INF",
    "too_many_missing": "FEATURE_TYPE_LOW_FRACTION_PRESENT",
    "value_count": "FEATURE_TYPE_HIGH_NUMBER_VALUES",
    "categorical_drift": "COMPARATOR_L_INFTY_HIGH",
    "numeric_drift": "COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH",
}


@dataclass
class Finding:
    split: str
    feature: str
    kind: str
    expected: str
    found: str
    examples: list[str] = field(default_factory=list)
    warning: bool = False

    def __str__(self) -> str:
        shown = f"; e.g. {', '.join(self.examples[:5])}" if self.examples else ""
        level = "warning" if self.warning else "anomaly"
        return (
            f"[{level}] {self.kind}: feature {self.feature!r}, split {self.split}: "
            f"expected {self.expected}, found {self.found}{shown}"
        )


def check_split(split: str, dataset, schema) -> list[Finding]:
    """Findings for one split's DatasetFeatureStatistics against a Schema."""
    from components.statistics_gen.statistics import feature_stats

    stats = feature_stats(dataset)
    findings = []
    declared = {f.name: f for f in schema.feature}
    domains = {d.name: list(d.value) for d in schema.string_domain}
    for name in sorted(set(stats) - set(declared)):
        findings.append(
            Finding(
                split,
                name,
                "new_column",
                "no such column (not in the schema)",
                "a new column",
                _top(stats[name]),
            )
        )
    for name, feature in declared.items():
        if name not in stats:
            findings.append(
                Finding(split, name, "missing_column", "the column to be present", "no such column")
            )
            continue
        findings.extend(_check_feature(split, name, feature, stats[name], dataset.num_examples, domains))
    return findings


def _check_feature(split, name, feature, stats, num_examples, domains) -> list[Finding]:
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_metadata.proto.v0 import statistics_pb2 as stats_pb

    expected_type = schema_pb2.FeatureType.Name(feature.type)
    found_type = stats_pb.FeatureNameStatistics.Type.Name(stats.type)
    compatible = {"INT": ("INT",), "FLOAT": ("FLOAT", "INT"), "BYTES": ("STRING", "BYTES")}
    if found_type not in compatible.get(expected_type, (expected_type,)):
        return [Finding(split, name, "wrong_type", expected_type, found_type, _top(stats))]
    findings = []
    common = (
        stats.string_stats.common_stats if stats.HasField("string_stats") else stats.num_stats.common_stats
    )
    present = common.num_non_missing / num_examples if num_examples else 1.0
    if feature.presence.min_fraction and present < feature.presence.min_fraction:
        findings.append(
            Finding(
                split,
                name,
                "too_many_missing",
                f"present in at least {feature.presence.min_fraction:.0%} of examples",
                f"present in {present:.1%} ({common.num_missing} missing of {num_examples})",
            )
        )
    high = (
        feature.value_count.max
        if feature.HasField("value_count")
        else (1 if feature.HasField("shape") else 0)
    )
    if high and common.max_num_values > high:
        findings.append(
            Finding(
                split,
                name,
                "value_count",
                f"at most {high} value(s) per example",
                f"up to {common.max_num_values}",
            )
        )
    domain = list(feature.string_domain.value) or domains.get(feature.domain, [])
    if domain and stats.HasField("string_stats"):
        unexpected = [b.label for b in stats.string_stats.rank_histogram.buckets if b.label not in domain]
        if unexpected:
            findings.append(
                Finding(
                    split,
                    name,
                    "unexpected_value",
                    f"one of {domain}",
                    f"{len(unexpected)} other value(s)",
                    [repr(v) for v in unexpected],
                )
            )
    bounds = (
        feature.float_domain
        if feature.HasField("float_domain")
        else (feature.int_domain if feature.HasField("int_domain") else None)
    )
    if bounds is not None and stats.HasField("num_stats") and common.num_non_missing:
        findings.extend(_check_range(split, name, bounds, stats))
    if stats.HasField("num_stats"):
        findings.extend(_check_non_finite(split, name, feature, stats))
    return findings


def _check_non_finite(split, name, feature, stats) -> list[Finding]:
    """NaN and infinities: an anomaly where the schema does not allow them, a warning (counted and
    reported, not blocking) where it does."""
    from components.schema_gen.component import allowed_non_finite

    allowed = allowed_non_finite(feature)
    counts = {
        "nan": max((h.num_nan for h in stats.num_stats.histograms), default=0),
        "inf": int(next((c.num for c in stats.custom_stats if c.name == "num_inf"), 0)),
    }
    findings = []
    for kind, count in counts.items():
        if not count:
            continue
        label = "NaN" if kind == "nan" else "infinite"
        flag = f"disallow_{kind}"
        findings.append(
            Finding(
                split,
                name,
                f"{kind}_values",
                "finite values"
                if kind not in allowed
                else f"{label} values allowed by the schema ({flag}: false)",
                f"{count} {label} value(s)",
                warning=kind in allowed,
            )
        )
    return findings


def _check_range(split, name, bounds, stats) -> list[Finding]:
    low = bounds.min if bounds.HasField("min") else float("-inf")
    high = bounds.max if bounds.HasField("max") else float("inf")
    num = stats.num_stats
    if low <= num.min and num.max <= high:
        return []
    extremes = {c.name: _values(c.str) for c in stats.custom_stats if c.name.endswith("_values")}
    candidates = extremes.get("smallest_values", []) + extremes.get("largest_values", [])
    offenders = sorted({v for v in candidates if v < low or v > high})
    return [
        Finding(
            split,
            name,
            "out_of_range",
            f"values in [{low:g}, {high:g}]",
            f"min {num.min:g}, max {num.max:g}",
            [f"{v:g}" for v in offenders],
        )
    ]


def _top(stats) -> list[str]:
    if stats.HasField("string_stats"):
        return [repr(v.value) for v in stats.string_stats.top_values[:5]]
    return []


def check_drift(
    split: str, current, previous, linf_threshold: float, stddevs: float, exclude: tuple = ()
) -> list[Finding]:
    """Drift of `current` from `previous` (DatasetFeatureStatistics of two spans, same split):
    a categorical feature whose value distribution moved by more than `linf_threshold` (L-infinity
    distance), a numeric one whose mean moved by more than `stddevs` of the previous std dev."""
    from components.statistics_gen.statistics import feature_stats

    now, before = feature_stats(current), feature_stats(previous)
    findings = []
    for name in sorted(set(now) & set(before) - set(exclude)):
        a, b = now[name], before[name]
        if a.HasField("string_stats") and b.HasField("string_stats"):
            distance, value = _linf(a.string_stats, b.string_stats)
            if distance > linf_threshold:
                findings.append(
                    Finding(
                        split,
                        name,
                        "categorical_drift",
                        f"an L-infinity distance of at most {linf_threshold:g} from the previous span",
                        f"{distance:.3f} (largest change in {value!r})",
                    )
                )
        elif a.HasField("num_stats") and b.HasField("num_stats") and b.num_stats.std_dev > 0:
            moved = abs(a.num_stats.mean - b.num_stats.mean) / b.num_stats.std_dev
            if moved > stddevs:
                findings.append(
                    Finding(
                        split,
                        name,
                        "numeric_drift",
                        f"a mean within {stddevs:g} std dev of the previous span's "
                        f"{b.num_stats.mean:.4g} (std dev {b.num_stats.std_dev:.4g})",
                        f"mean {a.num_stats.mean:.4g}, {moved:.2f} std dev away",
                    )
                )
    return findings


def _linf(a, b) -> tuple[float, str]:
    def shares(s):
        total = s.common_stats.tot_num_values or 1
        return {v.value: v.frequency / total for v in s.top_values}

    pa_, pb_ = shares(a), shares(b)
    worst = max(set(pa_) | set(pb_), key=lambda v: abs(pa_.get(v, 0) - pb_.get(v, 0)), default="")
    return abs(pa_.get(worst, 0) - pb_.get(worst, 0)), worst


def to_proto(findings: list[Finding], schema):
    """TFDV's Anomalies proto for one split's findings, keyed by feature name."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    result = anomalies_pb2.Anomalies(anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH)
    result.baseline.CopyFrom(schema)
    for finding in findings:
        info = result.anomaly_info[finding.feature]
        info.path.step[:] = [finding.feature]
        info.severity = (
            anomalies_pb2.AnomalyInfo.WARNING if finding.warning else anomalies_pb2.AnomalyInfo.ERROR
        )
        reason = info.reason.add(type=anomalies_pb2.AnomalyInfo.Type.Value(KINDS[finding.kind]))
        reason.short_description = finding.kind
        reason.description = str(finding)
        info.short_description = "; ".join(r.short_description for r in info.reason)
        info.description = " ".join(r.description for r in info.reason)
    return result


def _values(text: str) -> list[float]:
    """The extremes kept by the statistics: JSON (NaN and Infinity included), or the Python list
    repr that statistics written before used; never a crash on a value."""
    import json

    try:
        return [float(v) for v in json.loads(text)]
    except ValueError:
        pass
    try:
        return [float(v) for v in ast.literal_eval(text)]
    except (ValueError, SyntaxError):
        return [float(v) for v in text.strip("[]").split(",") if v.strip()]
