"""The evaluation page: one self-contained HTML file with the verdict, each threshold, charts of the
candidate beside the baseline (inline SVG): the headline per slice, the per-class or error details,
the confusion matrix, ROC and precision-recall curves (two classes) or the residuals (regression),
and every slice's metrics."""

from __future__ import annotations

import html
import math

from components.evaluator.tfma_results import BASELINE, CANDIDATE, OVERALL, TRIVIAL, Results
from pipeline import charts
from pipeline.pages import html_page

COLOURS = {CANDIDATE: "#4C72B0", BASELINE: "#BBBBBB"}


def write_page(
    path: str,
    results: Results,
    model,
    baseline,
    class_names: list[str] | None,
    headline: str,
    confusion=None,
    scores: dict | None = None,
    residuals=None,
) -> None:
    """Writes `path` for the evaluation of `model` (against `baseline`, or none); `class_names`
    None means a regression model; `headline` the line of headline metrics; `confusion` the
    candidate's confusion matrix on the whole split (true class x predicted class); `scores`
    (two classes) {"positive": class name, "histograms": {candidate/baseline: [2, buckets]
    score histogram of that class}} for the ROC and precision-recall curves; `residuals`
    (regression) the candidate's `batched.ResidualGrid`."""
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
        f"<table class='numbers'><tr><th>verdict</th><th>metric</th><th>needs</th><th>value</th></tr>{rows}</table>"
        if results.verdicts
        else "<p>No floor (floor_margin=None) and no threshold applied (none configured, or change "
        "thresholds and no baseline yet): blessed.</p>"
    )
    slices = sorted({s for s, _ in results.metrics}, key=lambda s: (s != OVERALL, s))
    figures = _charts(results, slices, class_names, baseline is not None)
    figures += _confusion(confusion, class_names) + _curves(scores) + _residuals(residuals)
    verdict = f"<span class='{'ok' if blessed else 'bad'}'>{'BLESSED' if blessed else 'NOT BLESSED'}</span>"
    body = (
        f"<h1>Evaluation of model {model.id}: {verdict}</h1>"
        f"<p>Model {model.id} is its ML Metadata artifact id (as <code>runner.py models</code> lists it); "
        f"its files: {html.escape(model.uri)}; {against}. {html.escape(headline)}. Thresholds and the "
        "floor apply to the whole split; slices are reported.</p>"
        f"<h2>Thresholds</h2>{thresholds}{figures}"
        f"<h2>Metrics by slice</h2>{_metrics_table(results, slices, baseline is not None)}"
    )
    with open(path, "w") as f:
        f.write(html_page(f"Evaluation of model {model.id}", body))


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


def _charts(results: Results, slices: list[str], class_names: list[str] | None, with_baseline: bool) -> str:
    """The headline metric per slice (accuracy, or RMSE for regression) and the overall details:
    candidate beside baseline, with the trivial baseline, the floor and the headline's value
    threshold (where there are) as dashed lines."""
    models = [CANDIDATE, BASELINE] if with_baseline else [CANDIDATE]
    headline, panels = _panels(slices, class_names)
    lines = []
    trivial = results.value(headline, TRIVIAL)
    if not math.isnan(trivial):
        lines.append((trivial, "trivial baseline", "#888888"))
    for verdict in results.verdicts:
        if verdict.threshold.metric == headline and verdict.threshold.kind in ("value", "floor"):
            kind = verdict.threshold.kind
            lines.append(
                (
                    verdict.threshold.bound,
                    "threshold" if kind == "value" else "floor",
                    "#C44E52" if kind == "value" else "#DD8452",
                )
            )
    drawn = []
    for k, (title, bars, by_slice) in enumerate(panels):
        series = [
            (name, [results.value(metric, name, s) for s, metric in bars], COLOURS[name]) for name in models
        ]
        drawn.append(
            charts.bars(
                [b[0] if by_slice else b[1] for b in bars],
                series,
                title=title,
                x_max=1.0 if class_names is not None else None,
                lines=lines if k == 0 else (),
                width=460,
            )
        )
    return f"<div class='charts'>{''.join(drawn)}</div>"


def _confusion(matrix, class_names: list[str] | None) -> str:
    """The candidate's confusion matrix as a heatmap with the counts written in: a row per true
    class (with its number of examples), a column per predicted class."""
    if matrix is None or class_names is None:
        return ""
    rows = [f"{c} ({int(sum(matrix[i]))})" for i, c in enumerate(class_names)]
    figure = charts.heatmap(
        [[int(v) for v in row] for row in matrix],
        rows,
        class_names,
        row_name="rows: true class (examples); shade: share of row",
        column_name="columns: predicted class",
    )
    return f"<h2>Confusion matrix (whole split)</h2><div class='charts'>{figure}</div>"


def _curves(scores: dict | None) -> str:
    """ROC and precision-recall curves of the positive class, candidate beside baseline, from the
    score histograms (the threshold swept down bucket by bucket, as `batched.auc` sums them)."""
    if not scores or not scores.get("histograms"):
        return ""
    roc, pr = [], []
    for name, histogram in scores["histograms"].items():
        fpr, tpr, precision, recall = (_thin(v) for v in curve_points(histogram))
        roc.append((name, fpr, tpr, COLOURS[name]))
        pr.append((name, recall, precision, COLOURS[name]))
    positive = scores["positive"]
    return (
        f"<h2>Curves for the positive class, {html.escape(positive)}</h2><div class='charts'>"
        + charts.curves(roc, "ROC", "false positive rate", "true positive rate", diagonal=True)
        + charts.curves(pr, "precision-recall", "recall", "precision")
        + "</div>"
    )


def curve_points(histogram) -> tuple:
    """(false positive rate, true positive rate, precision, recall) at every bucket edge of a
    [2, buckets] score histogram (row 0: examples not of the class, row 1: of it), the threshold
    swept from above every score down; buckets no example falls in are left out."""
    import numpy as np

    negatives, positives = (np.asarray(h, dtype=np.float64)[::-1] for h in histogram)
    used = (negatives + positives) > 0
    true = np.concatenate([[0.0], np.cumsum(positives)[used]])
    false = np.concatenate([[0.0], np.cumsum(negatives)[used]])
    tpr = true / max(positives.sum(), 1)
    fpr = false / max(negatives.sum(), 1)
    taken = true + false
    precision = np.divide(true, taken, out=np.ones_like(true), where=taken > 0)
    return fpr.tolist(), tpr.tolist(), precision.tolist(), tpr.tolist()


def _thin(values: list, most: int = 400) -> list:
    """At most `most` points of a curve, evenly spaced, both ends kept (the page stays small)."""
    if len(values) <= most:
        return values
    step = (len(values) - 1) / (most - 1)
    return [values[round(i * step)] for i in range(most)]


def _residuals(grid) -> str:
    """The candidate's residuals (label - prediction) against its predictions: the grid of
    `batched.ResidualGrid`, cropped to the bins any example fell in."""
    if grid is None or not grid.counts.any():
        return ""
    import numpy as np

    counts = grid.counts
    (x_low, x_high), (y_low, y_high) = (
        (int(used[0]), int(used[-1]) + 1)
        for used in (np.flatnonzero(counts.sum(axis=1)), np.flatnonzero(counts.sum(axis=0)))
    )
    figure = charts.density(
        counts[x_low:x_high, y_low:y_high].tolist(),
        grid.edges(0)[x_low : x_high + 1].tolist(),
        grid.edges(1)[y_low : y_high + 1].tolist(),
        "residuals against predictions",
        "prediction",
        "label - prediction",
    )
    return (
        "<h2>Residuals (whole split)</h2><p>Darker: more examples (log scale); the dashed line is "
        f"a residual of 0.</p><div class='charts'>{figure}</div>"
    )


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
    return f"<table class='numbers'><tr><th>slice</th>{header}</tr>{rows}</table>"


def _number(value: float) -> str:
    if math.isnan(value):
        return "&ndash;"
    return f"{value:.0f}" if value == int(value) and abs(value) > 1 else f"{value:.4f}"
