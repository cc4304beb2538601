"""The data gate end to end: the penguin pipeline's first steps on crafted spans.

Span 1 is the real 2007 data; span 2 is the real 2008 data, altered per test. The clean data
passes; each kind of anomaly stops the run before anything downstream, with a readable message,
a LIVE ExampleAnomalies artifact and the BLOCKED decision in ML Metadata.
"""

import csv
import os
import re

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

import schemas
from components.example_gen.component import ExampleGen
from components.example_validator import anomalies as checks
from components.example_validator.component import ExampleValidator
from components.schema_gen.component import ImportSchemaGen
from components.schema_gen.schema_io import read_schema_file
from components.statistics_gen.component import StatisticsGen
from pipeline import Pipeline
from pipeline.metadata import MetadataStore, custom
from tests.helpers import quiet_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def real_rows(year: int) -> tuple[list[str], list[list[str]]]:
    with open(os.path.join(REPO, "data", "penguins", f"span-{year}", "penguins.csv"), newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_span(root, span: int, header: list[str], rows: list[list[str]]) -> None:
    os.makedirs(root / "data" / f"span-{span}", exist_ok=True)
    with open(root / "data" / f"span-{span}" / "penguins.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def gate_pipeline(root, schema_file: str = schemas.PENGUIN_SCHEMA, **validator_params) -> Pipeline:
    schema = ImportSchemaGen(schema_file=schema_file)
    gen = ExampleGen(
        input_pattern=str(root / "data" / "span-{SPAN}" / "*.csv"), schema=schema.outputs["schema"]
    )
    stats = StatisticsGen(examples=gen.outputs["examples"])
    validator = ExampleValidator(
        statistics=stats.outputs["statistics"],
        schema=schema.outputs["schema"],
        drift_exclude=("year",),
        **validator_params,
    )
    return Pipeline("gate", [schema, gen, stats, validator])


def run_spans(tmp_path, alter, **validator_params):
    """Runs span 1 (real 2007 rows), then span 2 (2008 rows changed by `alter`)."""
    header, rows = real_rows(2007)
    write_span(tmp_path, 1, header, rows)
    first = quiet_run(gate_pipeline(tmp_path, **validator_params), tmp_path / "root")
    assert first.ok, first.error
    header, rows = real_rows(2008)
    header, rows = alter(header, [list(r) for r in rows])
    write_span(tmp_path, 2, header, rows)
    return quiet_run(gate_pipeline(tmp_path, **validator_params), tmp_path / "root")


def blocked_message(result) -> str:
    assert not result.ok
    assert result.step("ExampleValidator").status == "BLOCKED"
    assert re.match(
        r"ExampleValidator stopped the run \(execution \d+\): \d+ data anomalies", str(result.error)
    )
    return str(result.error)


def test_clean_spans_pass_including_drift_checks(tmp_path):
    result = run_spans(tmp_path, lambda header, rows: (header, rows))
    assert result.ok, result.error
    anomalies = result.step("ExampleValidator").outputs["anomalies"]
    assert anomalies.get("decision") == "PASSED" and anomalies.get("previous_span") == 1
    log = "\n".join(result.log)
    # The real 2008 penguins have longer flippers than 2007's (+0.34 std dev): told, not blocking.
    assert "0 anomalies, 1 warnings, compared with span 1" in log
    assert (
        "[warning] numeric_drift: feature 'flipper_length_mm', split train: expected a mean within "
        "0.25 std dev of the previous span's 196.4, found mean 201.2, 0.34 std dev away, JSD 0.15"
    ) in log
    assert (
        "drift from span 1 (train), largest: island L-inf 0.15 ('Biscoe'); flipper_length_mm mean +0.34 sd"
        in log
    )
    assert "Drift from span 1 (train)" in open(os.path.join(anomalies.uri, "statistics.html")).read()
    proto = anomalies_pb2.Anomalies.FromString(
        open(os.path.join(anomalies.split_uri("train"), "SchemaDiff.pb"), "rb").read()
    )
    assert set(proto.anomaly_info) == {"flipper_length_mm"}  # the warning, as TFDV's proto records it
    assert proto.anomaly_info["flipper_length_mm"].description.startswith("[warning] numeric_drift")


def test_new_island_value(tmp_path):
    def alter(header, rows):
        rows[5][1] = rows[9][1] = "Atlantis"
        return header, rows

    message = blocked_message(run_spans(tmp_path, alter))
    assert "unexpected_value: feature 'island'" in message
    assert (
        "expected one of ['Biscoe', 'Dream', 'Torgersen'], found 1 other value(s); e.g. 'Atlantis'" in message
    )


def test_column_removed(tmp_path):
    def alter(header, rows):
        index = header.index("flipper_length_mm")
        return [h for i, h in enumerate(header) if i != index], [
            [c for i, c in enumerate(r) if i != index] for r in rows
        ]

    message = blocked_message(run_spans(tmp_path, alter))
    assert (
        "missing_column: feature 'flipper_length_mm', split train: expected the column to be present"
        in message
    )


def test_a_column_empty_in_every_row_is_said_to_be_empty_not_missing(tmp_path):
    def alter(header, rows):
        index = header.index("flipper_length_mm")
        return header, [[("" if i == index else c) for i, c in enumerate(r)] for r in rows]

    message = blocked_message(run_spans(tmp_path, alter))
    assert (
        "missing_column: feature 'flipper_length_mm', split train: expected the column to be present, "
        "found the column is in the header but empty in every row"
    ) in message


def test_new_column(tmp_path):
    message = blocked_message(run_spans(tmp_path, lambda h, rows: (h + ["tag"], [r + ["x"] for r in rows])))
    assert "new_column: feature 'tag'" in message


def test_string_in_a_numeric_column_stops_at_ingestion_with_the_line(tmp_path):
    def alter(header, rows):
        rows[3][header.index("body_mass_g")] = "heavy"
        return header, rows

    result = run_spans(tmp_path, alter)
    assert result.step("ExampleGen").status == "FAILED"
    assert "line 5: column 'body_mass_g' is int, but the value is 'heavy'" in str(result.error)


def test_out_of_range_values_are_shown(tmp_path):
    def alter(header, rows):
        rows[0][header.index("body_mass_g")] = "12000"
        return header, rows

    message = blocked_message(run_spans(tmp_path, alter))
    assert re.search(
        r"out_of_range: feature 'body_mass_g', split (train|eval): expected values in \[2000, 7000\], "
        r"found min \d+, max 12000; e.g. 12000",
        message,
    )


def test_too_many_missing(tmp_path):
    def alter(header, rows):
        for row in rows[:40]:
            row[header.index("sex")] = "NA"
        return header, rows

    message = blocked_message(run_spans(tmp_path, alter))
    assert (
        "too_many_missing: feature 'sex', split train: expected present in at least 85% of examples"
        in message
    )


def _numeric(name, mean, std, low, high, counts):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    feature = statistics_pb2.FeatureNameStatistics(name=name, type=statistics_pb2.FeatureNameStatistics.FLOAT)
    feature.num_stats.mean, feature.num_stats.std_dev = mean, std
    histogram = feature.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
    edges = [low + (high - low) * i / len(counts) for i in range(len(counts) + 1)]
    for i, count in enumerate(counts):
        histogram.buckets.add(low_value=edges[i], high_value=edges[i + 1], sample_count=count)
    return feature


def test_drift_speaks_for_a_moved_label_and_a_constant_that_changed():
    """A monthly table: the label's mean moved from 0.3 to 15.1 minutes on a spread of about 40
    (0.37 std dev) and `month`, constant within a span, changed: both warned with their distance;
    an unchanged feature is measured and not flagged."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    before, now = statistics_pb2.DatasetFeatureStatistics(), statistics_pb2.DatasetFeatureStatistics()
    before.features.extend(
        [
            _numeric("delay", 0.3, 40.0, -60, 300, [40, 500, 300, 100, 30, 15, 8, 4, 2, 1]),
            _numeric("month", 1.0, 0.0, 1, 1, [1000]),
            _numeric("distance", 800.0, 300.0, 100, 2500, [100, 300, 300, 150, 80, 40, 20, 6, 3, 1]),
        ]
    )
    now.features.extend(
        [
            _numeric("delay", 15.1, 45.0, -60, 300, [20, 380, 330, 150, 60, 30, 16, 8, 4, 2]),
            _numeric("month", 2.0, 0.0, 2, 2, [1000]),
            _numeric("distance", 801.0, 300.0, 100, 2500, [100, 300, 300, 150, 80, 40, 20, 6, 3, 1]),
        ]
    )
    findings, found = checks.check_drift("train", now, before, 0.25, 1.0, warn_linf=0.15, warn_stddevs=0.25)
    by_feature = {f.feature: f for f in findings}
    assert set(by_feature) == {"delay", "month"} and all(f.warning for f in findings)
    assert "found mean 15.1, 0.37 std dev away, JSD 0." in str(by_feature["delay"])
    assert "a constant changed" in str(by_feature["month"])
    ranked = [d.feature for d in found]
    assert ranked == ["month", "delay", "distance"]
    distance = found[-1]
    assert distance.shift == pytest.approx(1 / 300) and distance.jsd == pytest.approx(0.0, abs=1e-12)
    assert 0.0 < found[1].jsd < 1.0


def test_drifted_span(tmp_path):
    def alter(header, rows):
        bill = header.index("bill_length_mm")
        for row in rows:
            row[1] = "Biscoe"
            if row[bill] != "NA":
                row[bill] = f"{float(row[bill]) + 12:.1f}"
        return header, rows

    message = blocked_message(run_spans(tmp_path, alter))
    assert (
        "categorical_drift: feature 'island', split train: expected an L-infinity distance of at most 0.25"
        in message
    )
    assert "numeric_drift: feature 'bill_length_mm', split train: expected a mean within 1 std dev" in message


def test_warn_only_lets_the_run_go_on_and_records_the_warning(tmp_path):
    def alter(header, rows):
        rows[5][1] = "Atlantis"
        return header, rows

    result = run_spans(tmp_path, alter, warn_only=("unexpected_value",))
    assert result.ok, result.error
    anomalies = result.step("ExampleValidator").outputs["anomalies"]
    # The new island, and the flipper drift every 2007 -> 2008 comparison warns of.
    assert anomalies.get("warning_count") == 2 and anomalies.get("decision") == "PASSED"
    assert any("[warning] unexpected_value: feature 'island'" in line for line in result.log)


def test_non_finite_values_the_schema_allows_are_counted_and_reported_not_refused(tmp_path):
    """`float_domain { disallow_nan: false disallow_inf: false }` lets NaN and infinities through
    ExampleGen; statistics count them apart (histograms' num_nan, custom stat num_inf) and the
    validator reports each as a warning. Where the schema does not allow them, the same counts
    are anomalies that stop the run."""
    text = (
        open(schemas.PENGUIN_SCHEMA)
        .read()
        .replace(
            "float_domain { min: 25.0 max: 70.0 }",
            "float_domain { min: 25.0 max: 70.0 disallow_nan: false disallow_inf: false }",
        )
    )
    schema_file = tmp_path / "schema.pbtxt"
    schema_file.write_text(text)
    header, rows = real_rows(2008)
    column = header.index("bill_length_mm")
    for row, cell in zip(rows[:4], ("nan", "NaN", "inf", "-1e400")):
        row[column] = cell
    write_span(tmp_path, 1, header, rows)
    result = quiet_run(gate_pipeline(tmp_path, str(schema_file)), tmp_path / "root")
    assert result.ok, result.error
    anomalies = result.step("ExampleValidator").outputs["anomalies"]
    assert anomalies.get("decision") == "PASSED" and anomalies.get("warning_count") >= 2
    logged = "\n".join(result.log)
    assert re.search(
        r"\[warning\] nan_values: feature 'bill_length_mm', split \w+: expected NaN values "
        r"allowed by the schema \(disallow_nan: false\), found \d NaN value",
        logged,
    ), logged
    assert "[warning] inf_values: feature 'bill_length_mm'" in logged

    from components.statistics_gen.statistics import feature_stats, load_statistics

    statistics = result.step("StatisticsGen").outputs["statistics"]
    nans = infs = 0
    for split in statistics.split_names:
        stats = feature_stats(load_statistics(statistics, split))["bill_length_mm"]
        nans += max(h.num_nan for h in stats.num_stats.histograms)
        infs += sum(int(c.num) for c in stats.custom_stats if c.name == "num_inf")
        assert 25 <= stats.num_stats.min <= stats.num_stats.mean <= stats.num_stats.max <= 70
    assert (nans, infs) == (2, 2)

    # The same statistics against the curated schema, which allows neither: anomalies.
    strict = read_schema_file(schemas.PENGUIN_SCHEMA)
    found = [
        f
        for split in statistics.split_names
        for f in checks.check_split(split, load_statistics(statistics, split), strict)
    ]
    kinds = {f.kind for f in found if f.feature == "bill_length_mm"}
    assert kinds == {"nan_values", "inf_values"} and not any(f.warning for f in found)


def test_blocked_decision_is_recorded_and_stays_blocked_when_cached(tmp_path):
    def alter(header, rows):
        rows[5][1] = "Atlantis"
        return header, rows

    result = run_spans(tmp_path, alter)
    blocked_message(result)
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    anomalies = result.step("ExampleValidator").outputs["anomalies"]
    [stored] = store.artifacts_by_id([anomalies.id])
    assert stored.state == "LIVE" and stored.get("decision") == "BLOCKED" and stored.get("anomaly_count") == 1
    execution = store.mlmd.get_executions_by_id([result.step("ExampleValidator").execution_id])[0]
    assert custom(execution, "blocked").startswith("1 data anomalies")
    assert custom(store.pipeline_runs("gate")[0], "status") == "BLOCKED"
    page = os.path.join(anomalies.uri, "statistics.html")
    text = open(page).read()
    assert "Atlantis" in text and "png" not in text
    assert text.count("<svg") == 8 * 2  # a chart per feature and split

    again = quiet_run(gate_pipeline(tmp_path), tmp_path / "root")
    assert again.step("ExampleValidator").status == "BLOCKED" and not again.ok


def test_wrong_type_is_an_anomaly_when_ingestion_inferred_the_type():
    from tests.test_statistics import statistics_of

    schema = read_schema_file(schemas.PENGUIN_SCHEMA)
    dataset = statistics_of({"mass": ["1", "2"], "bill": ["1.5", "2"], "island": ["Dream", "Dream"]})
    for feature in dataset.features:
        feature.path.step[:] = [
            {"mass": "body_mass_g", "bill": "sex", "island": "island"}[feature.path.step[0]]
        ]
    findings = {f.kind: f for f in checks.check_split("train", dataset, schema)}
    assert (
        str(findings["wrong_type"])
        == "[anomaly] wrong_type: feature 'sex', split train: expected BYTES, found FLOAT"
    )


@pytest.mark.parametrize("kind", sorted(checks.KINDS))
def test_every_anomaly_kind_maps_to_a_tfdv_type(kind):
    assert anomalies_pb2.AnomalyInfo.Type.Value(checks.KINDS[kind]) > 0


def test_range_check_reads_extremes_of_any_value_and_of_either_format():
    """The statistics keep each numeric feature's extremes as JSON (NaN and Infinity included);
    statistics written before kept a Python list repr. Neither crashes the validator."""
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    from components.example_validator.anomalies import _check_range

    bounds = schema_pb2.FloatDomain(min=0.0, max=10.0)
    for smallest, largest in (("[-1.0, 2.0]", "[5.0, Infinity]"), ("[-1.0, 2.0]", "[5.0, inf]")):
        stats = statistics_pb2.FeatureNameStatistics(
            num_stats=statistics_pb2.NumericStatistics(min=-1.0, max=float("inf"))
        )
        stats.custom_stats.add(name="smallest_values", str=smallest)
        stats.custom_stats.add(name="largest_values", str=largest)
        [finding] = _check_range("train", "x", bounds, stats)
        assert finding.kind == "out_of_range" and finding.examples == ["-1", "inf"]


def test_statistics_page_draws_each_split_over_the_previous_span_in_one_category_order(tmp_path):
    """Inline SVG only; strings in the first split's order in every split, with the count of
    values not shown; long labels cut with the whole one on hover; markup from data escaped; the
    previous span drawn in each chart; linear in features (bench/validator_page.py times it)."""
    from components.example_validator.page import write_page
    from tests.test_statistics import statistics_of

    long = "a category name far longer than any label column of a chart"
    train_values = [f"c{i:02d}" for i in range(15) for _ in range(15 - i)] + [long] * 12 + ["<script>"] * 20
    eval_values = [f"c{i:02d}" for i in range(15) for _ in range(i + 1)] + [long] + ["<script>"]
    types = {"kind": "string", "size": "int"}

    def stats(values, scale=1):
        return statistics_of(
            {"kind": values, "size": [str(scale * i) for i in range(len(values))]}, types=types
        )

    train, evaluation, previous = stats(train_values), stats(eval_values), stats(train_values[:40], 2)
    path = tmp_path / "statistics.html"
    write_page(
        str(path),
        {"train": train, "eval": evaluation},
        [],
        2,
        drift={"span": 1, "splits": {}},
        previous={"train": previous, "eval": previous},
    )
    page = path.read_text()
    assert "png" not in page and page.count("<svg") == 4
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "train: 17 unique, top 10 shown; eval: 17 unique, top 10 shown" in page
    kind = page[page.index("<h3>kind</h3>") : page.index("<h3>size</h3>")]
    train_chart, eval_chart = kind.split("<svg")[1:3]
    order = re.findall(r"text-anchor='end'>(?:<title>[^<]*</title>)?([^<]+)</text>", train_chart)
    cut = "a category name far l…"
    assert order == ["&lt;script&gt;", "c00", "c01", "c02", cut, "c03", "c04", "c05", "c06", "c07"]
    assert re.findall(r"text-anchor='end'>(?:<title>[^<]*</title>)?([^<]+)</text>", eval_chart) == order
    assert "span 1" in train_chart and "span 1" in page[page.index("<h3>size</h3>") :]
    assert kind.count(f"<title>{long}</title>") == 2  # the whole label on hover, in each chart


def test_many_findings_of_one_kind_are_a_few_lines_and_the_page_keeps_them_all(tmp_path):
    """Wide data: 300 columns drifting at once print three findings and one line counting the rest;
    the page lists all 300, in a section of their kind (closed: more than 20)."""
    from components.example_validator.component import summarized
    from components.example_validator.page import write_page
    from tests.test_statistics import statistics_of

    drifting = [
        checks.Finding("train", f"n{i}", "numeric_drift", "a mean within 1 std dev", f"{i} std dev away")
        for i in range(300)
    ]
    other = [checks.Finding("train", "island", "unexpected_value", "one of ['Biscoe']", "'Atlantis'")]
    lines = summarized(drifting + other, "/root/statistics.html")
    assert len(lines) == 5 and lines[:3] == [str(f) for f in drifting[:3]]
    assert lines[3] == (
        "[anomaly] numeric_drift: 297 more (n10, n100, n101, n102, n103, n104, n105, n106, ...); "
        "every one on /root/statistics.html"
    )
    assert lines[4] == str(other[0])
    dataset = statistics_of({"n0": ["1", "2"]}, types={"n0": "float"})
    write_page(str(tmp_path / "statistics.html"), {"train": dataset}, drifting + other, 2)
    page = (tmp_path / "statistics.html").read_text()
    assert page.count("<td>numeric_drift</td>") == 300
    assert "<details><summary>anomalies: numeric_drift (300)</summary>" in page
    assert "<details open><summary>anomalies: unexpected_value (1)</summary>" in page
