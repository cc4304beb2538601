"""The evaluation page: one self-contained HTML file with the verdict, each threshold, a chart of the
candidate beside the baseline, and every slice's metrics."""

from __future__ import annotations

import base64
import html
import io
import math

from components.evaluator.tfma import BASELINE, CANDIDATE, OVERALL, TRIVIAL, Results

COLOURS = {CANDIDATE: "#4C72B0", BASELINE: "#BBBBBB"}


def write_page(
    path: str,
    results: Results,
    model,
    baseline,
    class_names: list[str] | None,
    headline: str,
    confusion=None,
) -> None:
    """Writes `path` for the evaluation of `model` (against `baseline`, or none); `class_names`
    None means a regression model; `headline` the line of headline metrics; `confusion` the
    candidate's confusion matrix on the whole split (true class x predicted class)."""
    blessed = results.validation_ok
    against = f"baseline: model {baseline.id} ({html.escape(baseline.uri)})" if baseline else "no baseline"
    rows = "".join(
        f"<tr class='{'ok' if v.passed else 'bad'}'><td>{'PASS' if v.passed else 'FAIL'}</td>"
        f"<td>{html.escape(v.threshold.metric)}</td>"
        f"<td>{html.escape(_kind(v.threshold))} {html.escape(v.threshold.needs())}</td>"
        f"<td>{_number(v.value)}</td></tr>"
        for v in results.verdicts
    )
    thresholds = (
        f"<table><tr><th>verdict</th><th>metric</th><th>needs</th><th>value</th></tr>{rows}</table>"
        if results.verdicts
        else "<p>No floor (floor_margin=None) and no threshold applied (none configured, or change "
        "thresholds and no baseline yet): blessed.</p>"
    )
    slices = sorted({s for s, _ in results.metrics}, key=lambda s: (s != OVERALL, s))
    with open(path, "w") as f:
        f.write(
            _PAGE.format(
                model=model.id,
                uri=html.escape(model.uri),
                verdict="BLESSED" if blessed else "NOT BLESSED",
                verdict_class="ok" if blessed else "bad",
                against=against,
                headline=html.escape(headline),
                thresholds=thresholds,
                image=_chart(results, slices, class_names, baseline is not None),
                table=_metrics_table(results, slices, baseline is not None),
                confusion=_confusion_table(confusion, class_names),
            )
        )


def _kind(threshold) -> str:
    return {"value": "value", "change": "change vs baseline"}.get(
        threshold.kind, f"floor: trivial baseline {threshold.note};"
    )


def _panels(slices: list[str], class_names: list[str] | None) -> tuple[str, list]:
    """The headline metric, and the two panels: the headline per slice, and the overall details
    (classification: precision and recall per class; regression: the errors and the means)."""
    if class_names is None:
        details = ["mean_absolute_error", "root_mean_squared_error", "mean_label", "mean_prediction"]
        headline = "root_mean_squared_error"
    else:
        details = [f"{m}/{c}" for m in ("precision", "recall", "f1") for c in class_names]
        headline = "accuracy"
    return headline, [
        (f"{headline} by slice", [(s, headline) for s in slices], True),
        ("overall" if class_names is None else "overall, per class", [(OVERALL, m) for m in details], False),
    ]


def _chart(results: Results, slices: list[str], class_names: list[str] | None, with_baseline: bool) -> str:
    """The headline metric per slice (accuracy, or RMSE for regression) and the overall details:
    candidate beside baseline, with the headline's value threshold (if any) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = [CANDIDATE, BASELINE] if with_baseline else [CANDIDATE]
    headline, panels = _panels(slices, class_names)
    rows = max(len(bars) for _, bars, _ in panels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * rows + 1.6))
    width = 0.8 / len(models)
    for ax, (title, bars, by_slice) in zip(axes, panels):
        y = np.arange(len(bars))
        for i, name in enumerate(models):
            values = [results.value(metric, name, s) for s, metric in bars]
            ax.barh(y + i * width, np.nan_to_num(values), height=width, color=COLOURS[name], label=name)
        ax.set_yticks(y + width * (len(models) - 1) / 2, [b[0] if by_slice else b[1] for b in bars])
        ax.invert_yaxis()
        if class_names is not None:
            ax.set_xlim(0, 1.05)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
    trivial = results.value(headline, TRIVIAL)
    if not math.isnan(trivial):
        axes[0].axvline(trivial, color="#888888", linestyle=":", label="trivial baseline")
    for verdict in results.verdicts:
        if verdict.threshold.metric == headline and verdict.threshold.kind in ("value", "floor"):
            label = "threshold" if verdict.threshold.kind == "value" else "floor"
            colour = "#C44E52" if verdict.threshold.kind == "value" else "#DD8452"
            axes[0].axvline(verdict.threshold.bound, color=colour, linestyle="--", label=label)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _metrics_table(results: Results, slices: list[str], with_baseline: bool) -> str:
    """One row per slice, one column per metric: the candidate's value, and under it the
    baseline's and the change when there is a baseline."""
    metrics = sorted(
        {m for (_, model), values in results.metrics.items() if model == CANDIDATE for m in values},
        key=lambda m: (m != "example_count", m not in ("accuracy", "root_mean_squared_error"), m),
    )

    def cell(metric: str, slice_name: str) -> str:
        value = results.value(metric, CANDIDATE, slice_name)
        base = results.value(metric, BASELINE, slice_name)
        text = _number(value)
        if with_baseline and not (math.isnan(value) and math.isnan(base)):
            change = results.value(metric, "change", slice_name)
            shown = "&ndash;" if math.isnan(change) else f"{change:+.4f}"
            text += f"<br><small>baseline {_number(base)}, {shown}</small>"
        return f"<td>{text}</td>"

    header = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    rows = "".join(
        f"<tr><td>{html.escape(s)}</td>{''.join(cell(m, s) for m in metrics)}</tr>" for s in slices
    )
    return f"<table><tr><th>slice</th>{header}</tr>{rows}</table>"


def _confusion_table(matrix, class_names: list[str] | None) -> str:
    """The candidate's confusion matrix: a row per true class, a column per predicted class."""
    if matrix is None or class_names is None:
        return ""
    header = "".join(f"<th>{html.escape(c)}</th>" for c in class_names)
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td>"
        + "".join(
            f"<td{' class=ok' if i == j else ''}>{int(matrix[i][j])}</td>" for j in range(len(class_names))
        )
        + f"<td>{int(sum(matrix[i]))}</td></tr>"
        for i, c in enumerate(class_names)
    )
    return (
        "<h2>Confusion matrix (whole split)</h2><table><tr><th>true \\ predicted</th>"
        f"{header}<th>examples</th></tr>{rows}</table>"
    )


def _number(value: float) -> str:
    if math.isnan(value):
        return "&ndash;"
    return f"{value:.0f}" if value == int(value) and abs(value) > 1 else f"{value:.4f}"


_PAGE = """<!doctype html><html><head><meta charset='utf-8'><title>Evaluation of model {model}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}table{{border-collapse:collapse;margin-bottom:1em}}
.ok{{color:#1a7f37}}.bad{{color:#c62828}}</style></head><body>
<h1>Evaluation of model {model}: <span class='{verdict_class}'>{verdict}</span></h1>
<p>{uri}; {against}. {headline}. Thresholds and the floor apply to the whole split; slices are reported.</p>
<h2>Thresholds</h2>{thresholds}
<img alt='candidate and baseline metrics' src='data:image/png;base64,{image}'>
{confusion}
<h2>Metrics by slice</h2>{table}
</body></html>
"""
