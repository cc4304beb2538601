"""The statistics page: one self-contained HTML file with a chart per feature and split, and the anomalies."""

from __future__ import annotations

import base64
import html
import io

SPLIT_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]


def write_page(
    path: str, datasets: dict, findings: list, span: int | None, drift: dict | None = None
) -> None:
    """Writes `path`: per feature, each split's histogram (numeric) or top values (strings) with
    its missing count, then a table of every anomaly and warning, and each feature's distance
    from the previous span (`drift`: {"span": its number, "splits": {split: [Distance]}}).
    Images are embedded PNGs."""
    from components.statistics_gen.statistics import feature_stats

    per_split = {split: feature_stats(d) for split, d in datasets.items()}
    names = sorted({name for stats in per_split.values() for name in stats})
    sections = [_feature_section(name, per_split, datasets) for name in names]
    rows = "".join(
        f"<tr class='{'warn' if f.warning else 'bad'}'><td>{'warning' if f.warning else 'anomaly'}</td>"
        f"<td>{html.escape(f.kind)}</td><td>{html.escape(f.feature)}</td><td>{html.escape(f.split)}</td>"
        f"<td>{html.escape(f.expected)}</td><td>{html.escape(f.found)}</td>"
        f"<td>{html.escape(', '.join(f.examples[:5]))}</td></tr>"
        for f in findings
    )
    table = (
        "<table><tr><th>level</th><th>kind</th><th>feature</th><th>split</th><th>expected</th>"
        f"<th>found</th><th>offending values</th></tr>{rows}</table>"
        if findings
        else "<p class='ok'>No anomalies: every split matches the schema.</p>"
    )
    counts = ", ".join(f"{split}: {d.num_examples} examples" for split, d in datasets.items())
    table += _drift_table(drift)
    with open(path, "w") as f:
        f.write(_PAGE.format(span=span, counts=html.escape(counts), table=table, sections="".join(sections)))


def _drift_table(drift: dict | None) -> str:
    """Each feature's distance from the previous span, largest first."""
    if not drift or not drift.get("splits"):
        return "<p>No previous span to compare with.</p>"
    parts = []
    for split, found in drift["splits"].items():
        rows = "".join(
            f"<tr><td>{html.escape(d.feature)}</td>"
            + (
                f"<td>L-infinity {d.linf:.3f}</td><td>{html.escape(repr(d.value))}</td>"
                if d.linf is not None
                else f"<td>mean shift {d.shift:+.2f} sd"
                + (f", JSD {d.jsd:.3f}" if d.jsd is not None else "")
                + f"</td><td>mean {d.means[0]:.4g} &rarr; {d.means[1]:.4g}</td>"
            )
            + "</tr>"
            for d in found
        )
        parts.append(
            f"<h2>Drift from span {drift['span']} ({html.escape(split)})</h2><table><tr><th>feature</th>"
            f"<th>distance</th><th>previous span &rarr; this span</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _feature_section(name: str, per_split: dict, datasets: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in per_split if name in per_split[s]]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 2.6), squeeze=False)
    notes = []
    for i, split in enumerate(splits):
        stats, ax = per_split[split][name], axes[0][i]
        colour = SPLIT_COLOURS[i % len(SPLIT_COLOURS)]
        if stats.HasField("string_stats"):
            common = stats.string_stats.common_stats
            top = list(stats.string_stats.top_values)[:10][::-1]
            ax.barh([v.value for v in top], [v.frequency for v in top], color=colour)
            ax.set_xlabel("count")
            notes.append(f"{split}: {stats.string_stats.unique} unique")
        else:
            common = stats.num_stats.common_stats
            [hist] = [h for h in stats.num_stats.histograms if h.type == 0] or [None]
            if hist is not None and hist.buckets:
                ax.bar(
                    [b.low_value for b in hist.buckets],
                    [b.sample_count for b in hist.buckets],
                    width=[b.high_value - b.low_value or 1 for b in hist.buckets],
                    align="edge",
                    color=colour,
                )
            notes.append(
                f"{split}: mean {stats.num_stats.mean:.4g}, std {stats.num_stats.std_dev:.4g}, "
                f"min {stats.num_stats.min:.4g}, max {stats.num_stats.max:.4g}"
            )
        ax.set_title(f"{split}: {common.num_missing} missing of {datasets[split].num_examples}", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    image = base64.b64encode(buffer.getvalue()).decode()
    return (
        f"<section><h3>{html.escape(name)}</h3><p>{html.escape('; '.join(notes))}</p>"
        f"<img alt='{html.escape(name)}' src='data:image/png;base64,{image}'></section>"
    )


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Statistics of span {span}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 14px; text-align: left; }}
tr.bad td {{ background: #fde8e8; }} tr.warn td {{ background: #fff6dd; }}
p.ok {{ color: #1a7f37; }} section {{ margin-bottom: 1.5em; }} section p {{ font-size: 13px; color: #555; }}
</style></head>
<body><h1>Statistics of span {span}</h1><p>{counts}</p>
<h2>Anomalies</h2>{table}
<h2>Features</h2>{sections}
</body></html>
"""
