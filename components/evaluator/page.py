"""The evaluation page: one self-contained HTML file with the verdict, each threshold, charts of the
candidate beside the baseline (inline SVG): the headline per slice, the per-class or error details,
the confusion matrix, ROC and precision-recall curves (two classes) or the residuals (regression),
and every slice's metrics."""

from __future__ import annotations

import math

from components.evaluator.tfma_results import BASELINE, CANDIDATE, OVERALL, TRIVIAL, Results
from pipeline import charts, pages

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
    slices = sorted({s for s, _ in results.metrics}, key=lambda s: (s != OVERALL, s))
    with_baseline = baseline is not None
    metrics = sorted(
        {m for (_, name), values in results.metrics.items() if name == CANDIDATE for m in values},
        key=lambda m: (m != "example_count", m not in ("accuracy", "root_mean_squared_error"), m),
    )
    pages.write(
        path,
        "evaluation.html",
        model=model,
        baseline=baseline,
        blessed=results.validation_ok,
        headline=headline,
        verdicts=[
            {
                "passed": v.passed,
                "metric": v.threshold.metric,
                "needs": f"{_kind(v.threshold)} {v.threshold.needs()}",
                "value": _number(v.value),
            }
            for v in results.verdicts
        ],
        charts=_charts(results, slices, class_names, with_baseline),
        confusion=_confusion(confusion, class_names),
        positive=(scores or {}).get("positive", ""),
        curves=_curves(scores),
        residuals=_residuals(residuals),
        metrics=metrics,
        slices=[(s, [_cell(results, m, s, with_baseline) for m in metrics]) for s in slices],
    )


def _cell(results: Results, metric: str, slice_name: str, with_baseline: bool) -> tuple[str, str]:
    """The candidate's value and, with a baseline, the baseline's and the change under it."""
    value = results.value(metric, CANDIDATE, slice_name)
    base = results.value(metric, BASELINE, slice_name)
    if not with_baseline or (math.isnan(value) and math.isnan(base)):
        return _number(value), ""
    change = results.value(metric, "change", slice_name)
    shown = "\u2013" if math.isnan(change) else f"{change:+.4f}"
    return _number(value), f"baseline {_number(base)}, {shown}"


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
    return pages.Markup("".join(drawn))


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
    return pages.Markup(figure)


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
    return pages.Markup(
        charts.curves(roc, "ROC", "false positive rate", "true positive rate", diagonal=True)
        + charts.curves(pr, "precision-recall", "recall", "precision")
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
    return pages.Markup(figure)


def _number(value: float) -> str:
    if math.isnan(value):
        return "\u2013"
    return f"{value:.0f}" if value == int(value) and abs(value) > 1 else f"{value:.4f}"
