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


def check_split(
    split: str,
    dataset,
    schema,
    columns: set[str] | None = None,
    environment: str | None = None,
    files: list[str] | None = None,
) -> list[Finding]:
    """Findings for one split's DatasetFeatureStatistics against a Schema. With an
    `environment` (TFDV's: `SERVING` for rows to score), only the features expected in it are
    checked, and one that is not (the label, when serving) is ignored whether there or not.
    `files`: the CSV files the split came from, which a missing column's finding names."""
    from components.schema_gen.schema_io import in_environment
    from components.statistics_gen.statistics import feature_stats

    stats = feature_stats(dataset)
    findings = []
    everything = {f.name for f in schema.feature}
    declared = {f.name: f for f in schema.feature if in_environment(f, schema, environment)}
    where = f" in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}" if files else ""
    domains = {d.name: list(d.value) for d in schema.string_domain}
    for name in sorted(set(stats) - everything):
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
            found = (
                "the column is in the header but empty in every row"
                if columns is not None and name in columns
                else f"no such column{where}"
            )
            findings.append(Finding(split, name, "missing_column", "the column to be present", found))
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
    from components.schema_gen.schema_io import allowed_non_finite

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


@dataclass
class Distance:
    """How far one feature moved from the previous span: categorical, the L-infinity distance of
    the value shares (`linf`, with the value that moved most); numeric, the Jensen-Shannon
    divergence of the histograms (`jsd`, base 2: 0 same, 1 disjoint) and the mean's shift in the
    previous span's standard deviations (`shift`; infinite when a constant changed)."""

    feature: str
    linf: float | None = None
    value: str = ""
    jsd: float | None = None
    shift: float | None = None
    means: tuple = ()

    @property
    def size(self) -> float:
        """One number to rank by: the L-infinity distance, or the larger of JSD and shift / 4."""
        if self.linf is not None:
            return self.linf
        return max(self.jsd or 0.0, (self.shift or 0.0) / 4)

    def text(self) -> str:
        if self.linf is not None:
            return f"{self.feature} L-inf {self.linf:.2f} ({self.value!r})"
        shift = "constant changed" if self.shift == float("inf") else f"mean {self.shift:+.2f} sd"
        shift = shift.replace("+", "") if self.shift == float("inf") else shift
        jsd = "" if self.jsd is None else f", JSD {self.jsd:.2f}"
        return f"{self.feature} {shift}{jsd} ({self.means[0]:.4g} -> {self.means[1]:.4g})"


def distances(current, previous, exclude: tuple = ()) -> list[Distance]:
    """Every feature both spans have (DatasetFeatureStatistics, same split), largest move first."""
    from components.statistics_gen.statistics import feature_stats

    now, before = feature_stats(current), feature_stats(previous)
    found = []
    for name in sorted(set(now) & set(before) - set(exclude)):
        a, b = now[name], before[name]
        if a.HasField("string_stats") and b.HasField("string_stats"):
            linf, value = _linf(a.string_stats, b.string_stats)
            found.append(Distance(name, linf=linf, value=value))
        elif a.HasField("num_stats") and b.HasField("num_stats"):
            mean, before_mean, spread = a.num_stats.mean, b.num_stats.mean, b.num_stats.std_dev
            if spread > 0:
                shift = (mean - before_mean) / spread
            else:  # a constant: any change is news (and no scale to measure it by)
                shift = 0.0 if mean == before_mean and a.num_stats.std_dev == 0 else float("inf")
            found.append(
                Distance(name, jsd=_jsd(a.num_stats, b.num_stats), shift=shift, means=(before_mean, mean))
            )
    return sorted(found, key=lambda d: -d.size)


def check_drift(
    split: str,
    current,
    previous,
    linf_threshold: float,
    stddevs: float,
    exclude: tuple = (),
    warn_linf: float | None = None,
    warn_stddevs: float | None = None,
) -> tuple[list[Finding], list[Distance]]:
    """Drift of `current` from `previous` (DatasetFeatureStatistics of two spans, same split), and
    every feature's distance: an anomaly where a categorical feature's value shares moved by more
    than `linf_threshold` (L-infinity distance) or a numeric one's mean by more than `stddevs` of
    the previous std dev; a warning where they moved by more than `warn_linf` / `warn_stddevs`,
    or where a feature that was constant changed."""
    found = distances(current, previous, exclude)
    findings = []
    for d in found:
        if d.linf is not None:
            warn = min(warn_linf if warn_linf is not None else linf_threshold, linf_threshold)
            if d.linf > warn:
                bound = linf_threshold if d.linf > linf_threshold else warn
                findings.append(
                    Finding(
                        split,
                        d.feature,
                        "categorical_drift",
                        f"an L-infinity distance of at most {bound:g} from the previous span",
                        f"{d.linf:.3f} (largest change in {d.value!r})",
                        warning=d.linf <= linf_threshold,
                    )
                )
            continue
        assert d.shift is not None, "a numeric distance always has a mean shift"
        moved = abs(d.shift)
        warn = warn_stddevs if warn_stddevs is not None else stddevs
        if moved == float("inf"):
            findings.append(
                Finding(
                    split,
                    d.feature,
                    "numeric_drift",
                    f"the value {d.means[0]:.4g} it had in every example of the previous span",
                    f"mean {d.means[1]:.4g} (a constant changed: a new period's key, or a broken export?)",
                    warning=True,
                )
            )
        elif moved > min(warn, stddevs):
            bound = stddevs if moved > stddevs else warn
            findings.append(
                Finding(
                    split,
                    d.feature,
                    "numeric_drift",
                    f"a mean within {bound:g} std dev of the previous span's {d.means[0]:.4g}",
                    f"mean {d.means[1]:.4g}, {moved:.2f} std dev away"
                    + (f", JSD {d.jsd:.2f}" if d.jsd is not None else ""),
                    warning=moved <= stddevs,
                )
            )
    return findings, found


def _jsd(a, b) -> float | None:
    """Jensen-Shannon divergence (base 2) of two numeric features' STANDARD histograms, each
    bucket's count spread evenly over it, on the union of their bucket edges."""
    import numpy as np

    def buckets(stats):
        for histogram in stats.histograms:
            if histogram.type == histogram.STANDARD and histogram.buckets:
                return [(x.low_value, x.high_value, x.sample_count) for x in histogram.buckets]
        return None

    ha, hb = buckets(a), buckets(b)
    if not ha or not hb:
        return None
    edges = np.unique([e for h in (ha, hb) for low, high, _ in h for e in (low, high)])
    if len(edges) < 2:
        return 0.0

    def mass(h):
        cdf_x, cdf_y, total = [h[0][0]], [0.0], 0.0
        for low, high, count in h:
            if high > low:
                cdf_x += [low, high]
                cdf_y += [total, total + count]
            total += count
            if high <= low:  # a bucket of one value: a step at it
                cdf_x += [low, low]
                cdf_y += [total - count, total]
        cumulative = np.interp(edges, cdf_x, cdf_y, left=0.0, right=total)
        p = np.diff(cumulative)
        return p / p.sum() if p.sum() > 0 else p

    p, q = mass(ha), mass(hb)
    m = (p + q) / 2

    def kl(x):
        nonzero = x > 0
        return float(np.sum(x[nonzero] * np.log2(x[nonzero] / m[nonzero])))

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


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
