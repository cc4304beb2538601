"""The statistics page: one self-contained HTML file with the anomalies, the drift from the
previous span, and a chart per feature and split (inline SVG, this span beside the previous one)."""

from __future__ import annotations

from typing import Any

from pipeline import charts as charts_svg
from pipeline import pages

TOP_SHOWN = 10


def write_page(
    path: str,
    datasets: dict,
    findings: list,
    span: int | None,
    drift: dict | None = None,
    previous: dict | None = None,
) -> None:
    """Writes `path`: a table of every anomaly and warning, each feature's distance from the
    previous span (`drift`: {"span": its number, "splits": {split: [Distance]}}), then per
    feature each split's histogram (numbers) or most frequent values (strings) with its missing
    count, over the previous span's (`previous`: {split: DatasetFeatureStatistics})."""
    from components.statistics_gen.statistics import feature_stats

    per_split = {split: feature_stats(d) for split, d in datasets.items()}
    before = {split: feature_stats(d) for split, d in (previous or {}).items()}
    previous_span = (drift or {}).get("span")
    names = sorted({name for stats in per_split.values() for name in stats})
    pages.write(
        path,
        "statistics.html",
        span=span,
        counts=", ".join(f"{split}: {d.num_examples} examples" for split, d in datasets.items()),
        findings=findings,
        previous_span=previous_span,
        drift=[
            (split, [_drift_row(d) for d in found])
            for split, found in (drift or {}).get("splits", {}).items()
        ],
        features=[_feature_section(name, per_split, datasets, before, previous_span) for name in names],
    )


def _drift_row(d) -> tuple[str, str, str]:
    """(feature, distance, previous -> this span) of one feature's Distance."""
    if d.linf is not None:
        return d.feature, f"L-infinity {d.linf:.3f}", repr(d.value)
    distance = f"mean shift {d.shift:+.2f} sd" + (f", JSD {d.jsd:.3f}" if d.jsd is not None else "")
    return d.feature, distance, f"mean {d.means[0]:.4g} \u2192 {d.means[1]:.4g}"


def _feature_section(name: str, per_split: dict, datasets: dict, previous: dict, previous_span) -> dict:
    """One chart per split: this span's values, and the previous span's of the same split as an
    outline (numbers) or a grey bar (strings), both as shares so that sizes compare. Strings
    show the first split's ten most frequent values, in its order, in every split."""
    splits = [s for s in per_split if name in per_split[s]]
    first = per_split[splits[0]][name]
    order: list[str] = (
        [v.value for v in list(first.string_stats.top_values)[:TOP_SHOWN]]
        if first.HasField("string_stats")
        else []
    )
    charts, notes = [], []
    series: list[tuple[str, Any, str]]
    for i, split in enumerate(splits):
        stats = per_split[split][name]
        before = previous.get(split, {}).get(name)
        colour = charts_svg.COLOURS[i % len(charts_svg.COLOURS)]
        earlier = f"span {previous_span}"
        if stats.HasField("string_stats"):
            common = stats.string_stats.common_stats
            series = [(f"{split}", _shares(stats, order), colour)]
            if before is not None and before.HasField("string_stats"):
                series.append((earlier, _shares(before, order), charts_svg.GREY))
            title = f"{split}: {common.num_missing} missing of {datasets[split].num_examples}"
            charts.append(charts_svg.bars(order, series, title=title, width=340, percent=True))
            unique = stats.string_stats.unique
            shown = min(unique, len(order))
            notes.append(f"{split}: {unique} unique" + (f", top {shown} shown" if unique > shown else ""))
        else:
            common = stats.num_stats.common_stats
            series = [(split, _buckets(stats), colour)]
            if before is not None and before.HasField("num_stats"):
                series.append((earlier, _buckets(before), "#333333"))
            title = f"{split}: {common.num_missing} missing of {datasets[split].num_examples}"
            charts.append(charts_svg.histogram(series, title=title))
            n = stats.num_stats
            notes.append(f"{split}: mean {n.mean:.4g}, std {n.std_dev:.4g}, min {n.min:.4g}, max {n.max:.4g}")
    return {"name": name, "notes": "; ".join(notes), "charts": pages.Markup("".join(charts))}


def _shares(stats, order: list[str]) -> list[float]:
    """Each value of `order`'s share of the feature's values (0 for one this split never had)."""
    counts = {b.label: b.sample_count for b in stats.string_stats.rank_histogram.buckets}
    counts.update({v.value: v.frequency for v in stats.string_stats.top_values})
    total = stats.string_stats.common_stats.tot_num_values or sum(counts.values()) or 1
    return [counts.get(value, 0) / total for value in order]


def _buckets(stats) -> list[tuple[float, float, float]]:
    hist = next((h for h in stats.num_stats.histograms if h.type == 0), None)
    return [(b.low_value, b.high_value, b.sample_count) for b in hist.buckets] if hist is not None else []
