"""ExampleValidator: the data gate. Statistics against the schema and the previous span; anomalies stop the run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Annotated

from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, UserInputError
from pipeline.artifacts import ExampleAnomalies, ExampleStatistics, Schema
from pipeline.resolvers import PreviousSpan

ANOMALIES_FILE = "SchemaDiff.pb"
PAGE_FILE = "statistics.html"


@dataclass(frozen=True)
class ExampleValidatorParams:
    """warn_only: anomaly kinds reported as warnings instead of stopping the run (see
    components.example_validator.anomalies.KINDS). categorical_drift_linf / numeric_drift_stddevs: drift thresholds
    against the previous span, past which the run stops (between the penguin spans they reach
    0.20 and 0.6 at most); categorical_drift_warn_linf / numeric_drift_warn_stddevs: the levels
    past which drift is a warning (a feature that was constant and changed is one too).
    drift_splits: the splits compared for drift (train: the largest, so the least noisy).
    drift_exclude: features not checked for drift (such as the span key itself).
    environment: the schema environment the data is checked in, as TFDV's (`default_environment`,
    `in_environment`, `not_in_environment`): "SERVING" for rows to score, where the label is not
    expected (a label present is ignored); None checks every feature of the schema.
    extra_columns: columns the data may have beyond the schema, neither checked nor reported (the
    ids of rows to score, which the model does not read)."""

    warn_only: tuple = ()
    categorical_drift_linf: float = 0.25
    numeric_drift_stddevs: float = 1.0
    categorical_drift_warn_linf: float = 0.15
    numeric_drift_warn_stddevs: float = 0.25
    drift_splits: tuple = ("train",)
    drift_exclude: tuple = ()
    environment: str | None = None
    extra_columns: tuple = ()


def check_params(
    ctx: ExecutionContext,
    params: ExampleValidatorParams,
    statistics: ExampleStatistics,
    schema: Schema,
    previous_statistics: ExampleStatistics | None,
) -> dict:
    """Checks warn_only before anything runs."""
    from components.example_validator.anomalies import KINDS

    unknown = sorted(set(params.warn_only) - set(KINDS))
    if unknown:
        raise UserInputError(f"warn_only: unknown anomaly kind(s) {unknown}; kinds: {', '.join(KINDS)}")
    if params.environment is not None:
        from components.schema_gen.schema_io import environments, load_schema

        named = environments(load_schema(schema))
        if params.environment not in named:
            raise UserInputError(
                f"environment {params.environment!r} is not one the schema names ({', '.join(sorted(named)) or 'none'}); "
                'add default_environment: "TRAINING" and default_environment: "SERVING" to the schema, and '
                'not_in_environment: "SERVING" to the label'
            )
    return {}


def run_example_validator(
    ctx: ExecutionContext,
    params: ExampleValidatorParams,
    statistics: InputArtifact[ExampleStatistics],
    schema: InputArtifact[Schema],
    previous_statistics: Annotated[ExampleStatistics | None, PreviousSpan(of="statistics")],
    anomalies: OutputArtifact[ExampleAnomalies],
) -> None:
    from components.example_validator import anomalies as checks
    from components.example_validator.page import write_page
    from components.schema_gen.schema_io import load_schema
    from components.statistics_gen.statistics import load_statistics

    schema_proto = load_schema(schema)
    previous = previous_statistics
    all_findings, datasets, moves = [], {}, {}
    header = statistics.custom_properties.get("columns")
    columns = set(json.loads(header)) if header else None
    files = json.loads(statistics.custom_properties.get("input_files") or "[]")
    for split in statistics.split_names:
        datasets[split] = load_statistics(statistics, split)
        findings = checks.check_split(
            split, datasets[split], schema_proto, columns, params.environment, files
        )
        findings = [f for f in findings if not (f.kind == "new_column" and f.feature in params.extra_columns)]
        if previous is not None and split in previous.split_names and split in params.drift_splits:
            drift, moves[split] = checks.check_drift(
                split,
                datasets[split],
                load_statistics(previous, split),
                params.categorical_drift_linf,
                params.numeric_drift_stddevs,
                tuple(params.drift_exclude),
                warn_linf=params.categorical_drift_warn_linf,
                warn_stddevs=params.numeric_drift_warn_stddevs,
            )
            findings += drift
        for finding in findings:
            finding.warning = finding.warning or finding.kind in params.warn_only
        _write_split(anomalies, split, checks.to_proto(findings, schema_proto))
        all_findings += findings
    blocking = [f for f in all_findings if not f.warning]
    anomalies.split_names = statistics.split_names
    anomalies.set("span", statistics.get("span", 0))
    anomalies.custom_properties.update(
        anomaly_count=len(blocking),
        warning_count=len(all_findings) - len(blocking),
        decision="BLOCKED" if blocking else "PASSED",
        page=PAGE_FILE,
        previous_span=(previous.get("span") if previous is not None else 0) or 0,
    )
    previous_span = (previous.get("span_date") or previous.get("span")) if previous is not None else None
    write_page(
        os.path.join(anomalies.uri, PAGE_FILE),
        datasets,
        all_findings,
        statistics.get("span_date") or statistics.get("span"),
        drift={"span": previous_span, "splits": moves},
        previous={
            split: load_statistics(previous, split)
            for split in (previous.split_names if previous is not None else [])
            if split in statistics.split_names
        },
    )
    for split, found in moves.items():
        largest = "; ".join(d.text() for d in found[:4]) or "no feature in common"
        ctx.log(f"drift from span {previous_span} ({split}), largest: {largest}")
        anomalies.custom_properties[f"drift_{split}"] = largest
    from pipeline.launcher import output_uri

    # Where the page will be once the step's output is published (it is staged until then).
    page = os.path.join(
        output_uri(ctx.pipeline_root, ctx.component_id, "anomalies", ctx.execution_id), PAGE_FILE
    )
    for line in summarized(all_findings, page):
        ctx.log(line)
    compared = f", compared with span {previous_span}" if previous is not None else ""
    ctx.log(f"{len(blocking)} anomalies, {len(all_findings) - len(blocking)} warnings{compared}")
    if blocking:
        listed = "\n  ".join(summarized(blocking, page))
        ctx.block_run(
            f"{len(blocking)} data anomalies; fix the data or the schema "
            f"(or list the kind in warn_only):\n  {listed}"
        )


SHOWN_PER_KIND = 3


def summarized(findings: list, page: str) -> list[str]:
    """One line per finding, but for a kind with more than SHOWN_PER_KIND + 2 of them (wide data:
    hundreds of columns drifting at once) the first few and one line counting the rest, with the
    features they are about; the page lists every one."""
    groups: dict[tuple, list] = {}
    for finding in findings:
        groups.setdefault((finding.warning, finding.kind), []).append(finding)
    lines = []
    for (warning, kind), found in groups.items():
        if len(found) <= SHOWN_PER_KIND + 2:
            lines += [str(f) for f in found]
            continue
        lines += [str(f) for f in found[:SHOWN_PER_KIND]]
        rest = found[SHOWN_PER_KIND:]
        names = ", ".join(sorted({f.feature for f in rest})[:8])
        more = ", ..." if len({f.feature for f in rest}) > 8 else ""
        level = "warning" if warning else "anomaly"
        lines.append(f"[{level}] {kind}: {len(rest)} more ({names}{more}); every one on {page}")
    return lines


def _write_split(anomalies: ExampleAnomalies, split: str, proto) -> None:
    directory = anomalies.split_uri(split)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ANOMALIES_FILE), "wb") as f:
        f.write(proto.SerializeToString())


ExampleValidator = Component(
    name="ExampleValidator",
    run=run_example_validator,
    parameters=ExampleValidatorParams,
    version="2",
    resolve=check_params,
    gate=True,
)
