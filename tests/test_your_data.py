"""A new user's path, end to end, on three data sets the product does not ship as its default:
`runner.py init` -> `run` -> a pushed model -> a prediction in a fresh process -> `lineage --pushed
latest` -> a cached rerun. The three runs go in parallel, one process each, as users' jobs would.

- field: penguin measurements under a field export's headers (spaces, parentheses, a dot, a slash
  after a leading digit, non-ASCII letters); a classification of `Species Name`;
- prices: a generated regression target `price` from two numbers and a zone;
- notes: a raw export with ids, dates, free text with quoted commas and `NA` cells; a
  classification of `Species` whose classes are long names;
- noise: a label no column predicts, which the defaults `init` writes must not bless.
"""

import csv
import glob
import json
import os
import random
import re
import subprocess
import sys

import pytest

from tests.helpers import run_commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(REPO, "data", "penguins", "span-2008", "penguins.csv")

FIELD_HEADERS = {
    "species": "Species Name",
    "island": "Island",
    "bill_length_mm": "Culmen Length (mm)",
    "bill_depth_mm": "Culmen Depth (mm)",
    "flipper_length_mm": "Flipper Length (mm)",
    "body_mass_g": "Body Mass (g)",
    "sex": "Sex",
    "year": "Année d'étude",
}
LONG_NAMES = {
    "Adelie": "Adelie Penguin (Pygoscelis adeliae)",
    "Chinstrap": "Chinstrap penguin (Pygoscelis antarctica)",
    "Gentoo": "Gentoo penguin (Pygoscelis papua)",
}


def runner(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "runner.py"), *args], cwd=cwd, capture_output=True, text=True
    )


def penguin_rows():
    with open(PENGUINS) as f:
        return list(csv.DictReader(f))


def write_field(folder):
    """The penguins under field headers, plus `Clutch.Size` and `15N/14N ratio` columns."""
    rng = random.Random(1)
    path = os.path.join(folder, "field export.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*FIELD_HEADERS.values(), "Clutch.Size", "15N/14N ratio"])
        for row in penguin_rows():
            writer.writerow(
                [*(row[k] for k in FIELD_HEADERS), rng.choice([1, 2]), f"{rng.uniform(7, 10):.3f}"]
            )
    return path


def write_rows(folder, name: str, header: list[str], rows) -> str:
    """`folder/name`, a CSV of `header` and `rows`."""
    path = os.path.join(folder, name)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_prices(folder):
    """price = 100 + 20 x1 - 10 x2 + a zone's offset + noise, 300 rows."""
    rng = random.Random(2)

    def row():
        x1, x2, zone = rng.uniform(0, 10), rng.uniform(-5, 5), rng.choice("ABC")
        price = 100 + 20 * x1 - 10 * x2 + {"A": 0, "B": 30, "C": -30}[zone] + rng.gauss(0, 2)
        return [f"{x1:.3f}", f"{x2:.3f}", zone, f"{price:.2f}"]

    return write_rows(folder, "prices.csv", ["x1", "x2", "zone", "price"], [row() for _ in range(300)])


def write_notes(folder):
    """A raw export: row numbers (`rownames`), `Sample Number`, `Individual ID`, `Date Egg`,
    free-text `Comments` (commas, quotes, mostly NA, few distinct), measurements with NA cells, and
    the label `Species` as long names, NA in every 25th row."""
    rng = random.Random(3)
    comments = ['Nest never observed with full clutch, "late"', "Adult not sampled, blood only.", "NA"]
    path = os.path.join(folder, "penguins_raw.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "rownames",
                "Sample Number",
                "Individual ID",
                "Date Egg",
                "Species",
                "Island",
                "Culmen Length (mm)",
                "Body Mass (g)",
                "Comments",
            ]
        )
        for i, row in enumerate(penguin_rows()):
            length = row["bill_length_mm"] if rng.random() > 0.05 else "NA"
            comment = comments[i % 3] if rng.random() < 0.3 else "NA"
            date = f"2008-11-{1 + i % 28:02d}"
            writer.writerow(
                [
                    i + 1,
                    i % 40 + 1,
                    f"N{i}A{i % 2 + 1}",
                    date,
                    "NA" if i % 25 == 7 else LONG_NAMES[row["species"]],
                    row["island"],
                    length,
                    row["body_mass_g"],
                    comment,
                ]
            )
    return path


def write_noise(folder):
    """A label no column predicts: `renewed` is yes for a random 65% of 300 customers."""
    rng = random.Random(4)
    rows = [
        [
            rng.randint(1, 60),
            f"{rng.uniform(5, 200):.2f}",
            rng.choice(["basic", "plus", "pro"]),
            "yes" if rng.random() < 0.65 else "no",
        ]
        for _ in range(300)
    ]
    return write_rows(folder, "customers.csv", ["tenure", "spend", "plan", "renewed"], rows)


def write_credit(folder):
    """An imbalanced two-class label: `default` is Yes for about 10% of 400 rows, likelier with `usage`."""
    rng = random.Random(5)

    def row():
        usage = rng.random()
        default = rng.random() < 0.01 + 0.5 * usage**4
        return [f"{usage:.3f}", rng.randint(20, 70), rng.choice(["hs", "uni"]), "Yes" if default else "No"]

    return write_rows(
        folder, "credit.csv", ["usage", "age", "education", "default"], [row() for _ in range(400)]
    )


def write_weather(folder):
    """Four classes, one rare: fog (humid and mild, about 4% of 500 rows), snow (cold), rain (humid), sun."""
    rng = random.Random(7)

    def row():
        temperature, humidity, wind = rng.uniform(-10, 30), rng.random(), rng.uniform(0, 20)
        if temperature < 0:
            sky = "snow"
        elif humidity > 0.95:
            sky = "fog"
        elif humidity > 0.6:
            sky = "rain"
        else:
            sky = "sun"
        return [f"{temperature:.1f}", f"{humidity:.3f}", f"{wind:.1f}", sky]

    return write_rows(
        folder, "weather.csv", ["temperature", "humidity", "wind", "sky"], [row() for _ in range(500)]
    )


# noise: a label whose model must not reach serving with the defaults `init` writes; credit: an
# imbalanced label, gated on its positive class.
NOISE = {
    "noise": (write_noise, "renewed", "classification", None),
    "credit": (write_credit, "default", "classification", None),
    "weather": (write_weather, "sky", "classification", None),
}

DATA_SETS = {
    # name: (writer, label column, task init must infer, what init's summary must say)
    "field": (write_field, "Species Name", "classification", []),
    "prices": (write_prices, "price", "regression", []),
    "notes": (
        write_notes,
        "Species",
        "classification",
        [
            "  dates: date_egg (year, month, day of week)",
            "  not used: Comments (free text), individual_id (named like an id), rownames (named like an "
            "id), sample_number (named like an id)",
            "  rows without a label: 5 of 114; ExampleGen drops them",
        ],
    ),
}


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """Each data set through `init` and a first `run`, one after another in one process (one step
    worker: TensorFlow imported once)."""
    base = tmp_path_factory.mktemp("your-data")
    commands = {}
    for name, (write, label, _, _) in {**DATA_SETS, **NOISE}.items():
        source = base / "exports" / name
        os.makedirs(source)
        write(str(source))
        commands[f"init {name}"] = ["init", name, "--data", str(source / "*.csv"), "--label", label]
    names = [*DATA_SETS, *NOISE]
    commands.update({f"run {n}": ["run", "--pipeline", f"{n}/pipeline.py"] for n in names})
    # New rows for the notes project's scoring pipeline (init's scoring.py): its export without
    # the species, the first 40 rows.
    with open(base / "exports" / "notes" / "penguins_raw.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    label = header.index("Species")
    os.makedirs(base / "to-score" / "span-1")
    with open(base / "to-score" / "span-1" / "rows.csv", "w", newline="") as f:
        csv.writer(f).writerows([[c for i, c in enumerate(r) if i != label] for r in [header, *rows[:40]]])
    commands["score notes"] = [
        "score",
        "--pipeline",
        "notes/scoring.py",
        "--data",
        str(base / "to-score" / "span-{SPAN}" / "*.csv"),
    ]
    done = run_commands(commands, str(base), str(base / "driver.json"))
    inits = {name: done[f"init {name}"] for name in names}
    for name in names:
        assert inits[name].returncode == 0, inits[name].stderr
    runs = {name: done[f"run {name}"] for name in names}
    runs["score notes"] = done["score notes"]
    return base, inits, runs


@pytest.mark.parametrize("name", list(DATA_SETS))
def test_init_then_run_reaches_a_pushed_model(projects, name):
    base, inits, runs = projects
    _, label, task, said = DATA_SETS[name]
    assert f"{task} of " in inits[name].stdout
    for line in said:
        assert line in inits[name].stdout, inits[name].stdout
    if name == "notes":
        assert (
            "dropped 5 of 114 row(s) without 'Species' (5) (drop_rows_missing): penguins_raw.csv line 9"
            in (runs[name].stdout)
        )
        preprocessing = (base / name / "preprocessing.py").read_text()
        assert (
            "'Comments': 'free text'" in preprocessing
            and "DATE_FEATURES = {'date_egg': False}" in preprocessing
        )
    done = runs[name]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(
        rf"pushed model \d+ as version 1: {re.escape(str(base / name))}/runs/serving/{name}/1", done.stdout
    )
    assert "COMPLETE in" in done.stdout.splitlines()[-1]
    # Blessed on examples the Trainer never saw: the test split init's ExampleGen makes.
    assert re.search(
        r"evaluating model \d+ with no baseline \(no blessed model yet\) on split 'test' through", done.stdout
    )
    assert re.search(r"(accuracy|root_mean_squared_error) on \d+ 'test' examples: candidate ", done.stdout)


def test_headers_become_valid_feature_names_recorded_and_shown_by_lineage(projects):
    base, inits, _ = projects
    assert "classification of 'species_name'" in inits["field"].stdout
    schema = open(base / "field" / "schema.pbtxt").read()
    for feature in ("culmen_length_mm", "annee_d_etude", "clutch_size", "f_15n_14n_ratio"):
        assert f'name: "{feature}"' in schema
    lineage = runner("lineage", "--pushed", "latest", "--pipeline", "field/pipeline.py", cwd=str(base))
    assert lineage.returncode == 0, lineage.stderr
    assert (
        "CSV columns renamed: 'Species Name' -> species_name, 'Culmen Length (mm)' -> culmen_length_mm"
        in lineage.stdout
    )
    assert "'15N/14N ratio' -> f_15n_14n_ratio" in lineage.stdout


def test_a_label_no_feature_predicts_is_not_blessed_by_the_defaults_and_says_why(projects):
    """The floor nobody configures: the first model of a noise label is held back (exit 3), its
    reason names the trivial baseline, and nothing is pushed."""
    base, _, runs = projects
    done = runs["noise"]
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(
        r"accuracy on \d+ 'test' examples: candidate [\d.]+, trivial baseline [\d.]+", done.stdout
    )
    assert "FAIL accuracy vs the trivial baseline (always 'yes': " in done.stdout
    assert "not pushed" in done.stdout and not os.path.exists(base / "noise" / "runs" / "serving")
    models = runner("models", "--pipeline", "noise/pipeline.py", cwd=str(base))
    assert "NOT BLESSED: no better than the trivial baseline" in models.stdout
    assert "not pushed" in models.stdout


def test_an_imbalanced_label_gates_on_its_positive_class_and_weighs_it_up(projects):
    """init names the minority class the positive one and the Evaluator's floor is on its
    precision-recall AUC (a model that always says No has the class's share), not on accuracy;
    the Trainer weighs the classes so that each counts the same in the loss."""
    base, inits, runs = projects
    assert "blessed on: auc_precision_recall/Yes" in inits["credit"].stdout
    pipeline_file = open(base / "credit" / "pipeline.py").read()
    assert "floor_metric='auc_precision_recall/Yes'" in pipeline_file
    assert 'class_weights="balanced"' in pipeline_file
    done = runs["credit"]
    weights = re.search(
        r"class weights: 'No' ([\d.]+) \((\d+) train examples\), 'Yes' ([\d.]+) \((\d+) train examples\)",
        done.stdout,
    )
    assert weights, done.stdout[-3000:]
    no, n_no, yes, n_yes = (float(g) for g in weights.groups())
    assert n_yes < n_no and yes > 1 > no
    assert no * n_no == pytest.approx(yes * n_yes, rel=1e-2) == pytest.approx((n_no + n_yes) / 2, rel=1e-2)
    assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-3000:]
    line = re.search(
        r"(PASS|FAIL) auc_precision_recall/Yes vs the trivial baseline \(always 'No': ([\d.]+)", done.stdout
    )
    assert line, done.stdout[-3000:]
    examples = re.search(r"auc_precision_recall/Yes on (\d+) 'test' examples", done.stdout)
    assert examples and 0 < float(line.group(2)) < 0.25


def test_a_rare_class_among_several_gates_on_macro_f1_and_its_recall_is_reported(projects):
    """fog is ~4% of the rows: init gates on macro-F1 (accuracy would hide it) and weighs classes;
    the Evaluator's page and TFMA's result files give fog's own recall."""
    import tensorflow_model_analysis as tfma

    base, inits, runs = projects
    assert "blessed on: macro_f1" in inits["weather"].stdout and "'fog' is " in inits["weather"].stdout
    assert 'class_weights="balanced"' in open(base / "weather" / "pipeline.py").read()
    done = runs["weather"]
    assert re.search(r"macro_f1 on \d+ 'test' examples: candidate [\d.]+, trivial baseline ", done.stdout)
    page = re.search(r"Evaluator page: (\S+)", done.stdout)
    assert page, done.stdout[-3000:]
    assert "recall/fog" in open(page.group(1)).read()
    evaluation = os.path.dirname(page.group(1))
    [assets] = glob.glob(
        str(base / "weather" / "runs" / "Trainer" / "model" / "*" / "Format-Serving" / "assets")
    )
    with open(os.path.join(assets, "sky")) as f:
        vocabulary = [line.strip() for line in f if line.strip()]
    [overall] = [m for m in tfma.load_metrics(evaluation) if not m.slice_key.single_slice_keys]
    recall = {
        vocabulary[entry.key.sub_key.class_id.value]: entry.value.double_value.value
        for entry in overall.metric_keys_and_values
        if entry.key.name == "recall" and entry.key.sub_key.HasField("class_id")
    }
    assert sorted(recall) == ["fog", "rain", "snow", "sun"] and 0 <= recall["fog"] <= 1
    assert f"{recall['fog']:.4f}" in open(page.group(1)).read()


def test_the_gate_follows_the_labels_balance():
    from scaffold import gate_metric

    assert gate_metric({"a": 50, "b": 50}) == ("accuracy", "")
    assert gate_metric({"No": 97, "Yes": 3})[0] == "auc_precision_recall/Yes"
    assert gate_metric({"sun": 60, "rain": 30, "snow": 2, "fog": 8})[0] == "macro_f1"
    assert gate_metric({"x": 40, "y": 30, "z": 30}) == ("accuracy", "")


def test_columns_are_told_apart_by_their_values_not_their_count():
    from components.schema_gen.columns import DATE, DATETIME, TEXT, named_like_id, value_kind

    species = {"Adelie Penguin (Pygoscelis adeliae)": 50, "Gentoo penguin (Pygoscelis papua)": 40}
    assert value_kind(species, 90, 90) is None  # several words, in every row, repeating: a category
    assert value_kind({"Nest never observed with full clutch.": 9, "Not enough blood.": 3}, 12, 120) == TEXT
    assert value_kind({"arrived late box damaged": 3, "left at the door": 2}, 5, 6, distinct=5) == TEXT
    assert value_kind({"Adult, 1 Egg Stage": 120}, 120, 120) is None
    assert value_kind({"2008-11-01": 10, "2008-11-2": 4}, 14, 14) == DATE
    assert value_kind({"2008-11-01 13:05": 10, "2008-11-01T07:00:00Z": 4}, 14, 14) == DATETIME
    assert value_kind({"11/9/07": 3, "12/1/07": 3}, 6, 6) == "other date"
    assert value_kind({"Biscoe": 40, "Dream": 30}, 70, 70) is None
    for name in (
        "id",
        "customer_id",
        "CustomerID",
        "sample_number",
        "Sample Number",
        "row_index",
        "Unnamed: 0",
    ):
        assert named_like_id(name), name
    for name in ("idle_time", "number_of_rooms", "flight", "kidney"):
        assert not named_like_id(name), name


def test_init_leaves_ids_and_free_text_out_and_turns_dates_into_features(tmp_path):
    """An integer unique per row is an id whatever its name; a date-time becomes year, month, day of
    the week and hour, computed in the graph as the calendar does; free text is left out."""
    import datetime
    import importlib.util

    import tensorflow as tf

    from scaffold import init_project

    rng = random.Random(6)
    serials = rng.sample(range(10_000, 99_999), 60)
    notes = ["Box was damaged on arrival.", "Customer asked for a refund!", "NA", "NA"]
    rows = [
        [
            serials[i],
            f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:30",
            rng.choice(notes),
            rng.choice("ab"),
            rng.uniform(0, 1),
            rng.choice(["yes", "no"]),
        ]
        for i in range(60)
    ]
    write_rows(tmp_path, "orders.csv", ["serial", "placed", "note", "kind", "size", "ok"], rows)
    project = init_project(str(tmp_path / "p"), str(tmp_path / "orders.csv"), "ok", log=lambda _: None)
    assert project.unused == {"note": "free text", "serial": "an id: unique per row"}
    assert (
        project.dates == {"placed": True} and project.numeric == ["size"] and project.categorical == ["kind"]
    )
    assert "placed (year, month, day of week, hour)" in project.summary()

    spec = importlib.util.spec_from_file_location("orders_preprocessing", tmp_path / "p" / "preprocessing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    days = [
        datetime.datetime(1900, 1, 1) + datetime.timedelta(days=d, hours=d % 24) for d in range(0, 80000, 97)
    ]
    texts = [d.strftime("%Y-%m-%d %H:%M:%S") for d in days] + ["2024/3/5", "", "soon", "5/3/2024"]
    parts, valid = module._date_parts(tf.constant(texts))
    assert valid.numpy().tolist() == [1.0] * (len(days) + 1) + [0.0] * 3
    expected = (
        [(d.year, d.month - 1, d.weekday(), d.hour) for d in days] + [(2024, 2, 1, 0)] + [(0, 0, 0, 0)] * 3
    )
    found = list(zip(*(parts[k].numpy().astype(int).tolist() for k in ("year", "month", "weekday", "hour"))))
    assert found == expected


def test_regression_is_evaluated_with_its_own_metrics(projects):
    base, _, runs = projects
    assert "regression label 'price': standardized" in runs["prices"].stdout
    models = runner("models", "--pipeline", "prices/pipeline.py", cwd=str(base))
    assert "BLESSED" in models.stdout and "pushed as version 1" in models.stdout
    evaluation = re.search(r"Evaluator page: (\S+)", runs["prices"].stdout).group(1)
    page = open(evaluation).read()
    assert "root_mean_squared_error by slice" in page and "Residuals (whole split)" in page
    for metric in ("mean_squared_error", "root_mean_squared_error", "mean_absolute_error", "r_squared"):
        assert metric in page


PREDICT = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
features = json.loads(sys.argv[2])
def feature(value):
    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    if isinstance(value, int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
example = tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in features.items()}))
out = model.signatures["serving_default"](examples=tf.constant([example.SerializeToString()]))
print(json.dumps({k: v.numpy()[0].tolist() if v.dtype != tf.string else v.numpy()[0].decode() for k, v in out.items()}))
"""

QUERIES = {
    # name: (features a client sends, under the feature names, and a check of the answer)
    "field": (
        # Headers that were valid names already (Island, Sex) keep them.
        {
            "Island": "Biscoe",
            "culmen_length_mm": 47.5,
            "culmen_depth_mm": 15.0,
            "flipper_length_mm": 218,
            "body_mass_g": 4950,
            "Sex": "female",
            "annee_d_etude": 2008,
            "clutch_size": 1,
            "f_15n_14n_ratio": 8.5,
        },
        lambda out: out["classes"] == "Gentoo",
    ),
    "prices": (
        {"x1": 5.0, "x2": 0.0, "zone": "B"},
        lambda out: abs(out["outputs"] - 230.0) < 25.0,
    ),
    "notes": (
        {"Island": "Dream", "culmen_length_mm": 49.5, "body_mass_g": 3800, "date_egg": "2008-11-20"},
        lambda out: out["classes"] in LONG_NAMES.values(),
    ),
}


@pytest.mark.parametrize("name", list(DATA_SETS))
def test_pushed_model_predicts_in_a_fresh_process_and_a_rerun_is_cached(projects, name):
    base, _, _ = projects
    features, check = QUERIES[name]
    served = base / name / "runs" / "serving" / name / "1"
    done = subprocess.run(
        [sys.executable, "-c", PREDICT, str(served), json.dumps(features)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert check(answer), answer

    rerun = runner("run", "--pipeline", f"{name}/pipeline.py", cwd=str(base))
    assert rerun.returncode == 0, rerun.stdout[-2000:]
    assert len(re.findall(r"^\w+(\[span \d+\])?\s+CACHED", rerun.stdout, re.M)) == 8


def test_init_refuses_a_label_with_one_class_naming_the_column(tmp_path):
    from scaffold import InitError, init_project

    rows = [[i * 0.5, "Adelie"] for i in range(40)]
    write_rows(tmp_path, "one.csv", ["mass", "Species"], rows)
    with pytest.raises(
        InitError,
        match=r"the label 'Species' holds one value in every labelled row \('Adelie'\): a classifier needs at least two classes",
    ):
        init_project(str(tmp_path / "p"), str(tmp_path / "one.csv"), "Species", log=lambda _: None)
    assert not os.path.exists(tmp_path / "p" / "pipeline.py")


def test_init_writes_a_scoring_pipeline_that_scores_new_rows_with_the_served_model(projects):
    """scoring.py beside pipeline.py: unlabeled rows through the gate (the label not expected when
    serving), scored by the served model, the ids init found copied to each line."""
    base, _, runs = projects
    done = runs["score notes"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    found = re.search(r"^predictions: (\S+) \(40 rows, span 1, 'notes' model version 1\)$", done.stdout, re.M)
    assert found, done.stdout[-3000:]
    with open(found.group(1), newline="") as f:
        header, *rows = list(csv.reader(f))
    ids = header[: header.index("predicted_class")]
    assert sorted(ids) == ["individual_id", "rownames", "sample_number"]
    with open(base / "to-score" / "span-1" / "rows.csv", newline="") as f:
        source = list(csv.DictReader(f))
    column = {"individual_id": "Individual ID", "rownames": "rownames", "sample_number": "Sample Number"}
    assert [[r[header.index(i)] for i in ids] for r in rows] == [[s[column[i]] for i in ids] for s in source]
    assert {r[header.index("predicted_class")] for r in rows} <= set(LONG_NAMES.values())
    assert {r[-1] for r in rows} == {"1"}
