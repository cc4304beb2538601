"""ExampleGen on inline CSV rows: types, missing values, splits, spans, and every bad-input case."""

import functools
import glob
import json
import os
import re

import pyarrow as pa
import pytest

from components.example_gen import csv_to_examples as csv2ex
from components.example_gen.component import ExampleGen, feature_name, feature_names, find_span
from pipeline import Pipeline, UserInputError
from tests.helpers import decode_examples, quiet_run, read_tfrecords, write_csv

HEADER = "species,island,bill_length_mm,body_mass_g,sex\n"
ROWS = [
    "Adelie,Torgersen,39.1,3750,male",
    "Adelie,Torgersen,NA,NA,NA",
    "Gentoo,Biscoe,47.3,4725,",
    "Chinstrap,Dream,46.5,3500,female",
    "Gentoo,Biscoe,50.0,5700,male",
    "Adelie,Dream,37.2,3900,female",
]


def make_span(tmp_path, span=1, rows=ROWS, header=HEADER, name="part.csv"):
    return write_csv(tmp_path / "data" / f"span-{span}" / name, header + "\n".join(rows) + "\n")


def run_gen(tmp_path, **params):
    pattern = str(tmp_path / "data" / "span-{SPAN}" / "*.csv")
    return quiet_run(Pipeline("eg", [ExampleGen(input_pattern=pattern, **params)]), tmp_path / "root")


def all_examples(result):
    examples = result.step("ExampleGen").outputs["examples"]
    return {
        split: decode_examples(read_tfrecords(examples.split_uri(split))) for split in examples.split_names
    }


def failure(result) -> str:
    assert not result.ok, "the run should have failed"
    return str(result.error)


# ---- the batch functions ------------------------------------------------------------------


def batch_of(rows: dict) -> csv2ex.CsvBatch:
    """A chunk of file f.csv starting at line 2, holding `rows` (column -> cells, None = missing)."""
    lines = [",".join("" if v is None else v for v in row) for row in zip(*rows.values())]
    table = pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in rows.items()})
    return csv2ex.CsvBatch(csv2ex.Chunk("f.csv", 0, 0, 0, 0, 2), table, "\n".join(lines).encode())


def test_type_inference_takes_the_narrowest_type_over_all_batches():
    first = csv2ex.infer_types(
        batch_of({"a": ["1", None], "b": ["1.5", "2"], "c": ["x", "1"], "d": [None, None]})
    )
    assert first == {"a": "int", "b": "float", "c": "string", "d": None}
    second = csv2ex.infer_types(
        batch_of({"a": ["2.5", "3"], "b": ["-1e3", "nan"], "c": ["1", "2"], "d": [None, None]})
    )
    assert csv2ex.merge_types([first, second]) == {"a": "float", "b": "float", "c": "string", "d": "string"}


def test_parse_reports_each_bad_cell_with_its_row():
    errors = csv2ex.parse_columns(batch_of({"n": ["1", "two", "3", None]}), {"n": "int"})
    assert [str(e) for e in errors] == [
        "f.csv, line 3: column 'n' is int, but the value is 'two'; fix the value, or declare the column as string"
    ]


def test_missing_cells_become_absent_features_never_zero():
    parsed = csv2ex.parse_columns(
        batch_of({"n": ["+1", None], "s": [None, "x"]}), {"n": "int", "s": "string"}
    )
    rows = decode_examples(csv2ex.encode_examples(parsed))
    assert rows == [{"n": [1]}, {"s": ["x"]}]


def test_chunks_cover_every_line_once_and_end_at_newlines(tmp_path):
    path = make_span(tmp_path, rows=[f"Adelie,Dream,{i}.5,{i},male" for i in range(1000)])
    chunks = csv2ex.plan_chunks(path, 0, target_bytes=1000)
    assert len(chunks) > 10
    data = open(path, "rb").read()
    assert chunks[0].start == len(HEADER) and chunks[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:]))
    assert all(data[c.end - 1 : c.end] == b"\n" for c in chunks)
    assert [c.first_line for c in chunks] == [2 + data[: c.start].count(b"\n") - 1 for c in chunks]
    rows = sum(csv2ex.read_chunk(c, HEADER.strip().split(","), ["NA"])[0].table.num_rows for c in chunks)
    assert rows == 1000


def test_row_hash_is_the_documented_polynomial_hash():
    """Pinned to its definition, so a row's split never changes across versions and machines."""
    import numpy as np

    def reference(value: bytes) -> int:
        h = sum((byte + 1) * pow(0x100000001B3, i, 2**64) for i, byte in enumerate(value)) % 2**64
        for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            h = ((h ^ (h >> shift)) * factor) % 2**64
        return h ^ (h >> 31)

    values = [b"Adelie\x1fDream\x1f39.5", b"\x00", b"x" * 300]
    hashes = csv2ex.row_hashes(pa.array(values * 2, pa.binary()))
    assert hashes.tolist() == [reference(v) for v in values] * 2
    assert hashes.dtype == np.uint64


def test_split_is_a_stable_hash_of_the_row():
    batch = batch_of({"a": [str(i) for i in range(3000)]})
    buckets = csv2ex.split_buckets(batch.table, [2, 1])
    assert (buckets == csv2ex.split_buckets(batch.table, [2, 1])).all()
    assert 0.6 < (buckets == 0).mean() < 0.73
    # A row's split depends on the row alone, not on its neighbours.
    alone = csv2ex.split_buckets(batch_of({"a": ["1234"]}).table, [2, 1])
    assert alone[0] == buckets[1234]


# ---- the component through the runner -----------------------------------------------------


def test_writes_typed_examples_split_and_recorded(tmp_path):
    make_span(tmp_path)
    result = run_gen(tmp_path)
    assert result.ok, result.error
    examples = result.step("ExampleGen").outputs["examples"]
    assert examples.properties["span"] == 1 and examples.properties["version"] == 0
    assert examples.split_names == ["train", "eval"]
    rows = all_examples(result)
    assert examples.get("row_count_train") == len(rows["train"])
    assert examples.get("row_count_eval") == len(rows["eval"])
    everything = sorted(
        rows["train"] + rows["eval"], key=lambda r: (r["species"], r["island"], r.get("body_mass_g", [0]))
    )
    assert len(everything) == len(ROWS)
    missing = next(r for r in everything if r["island"] == ["Torgersen"] and "body_mass_g" not in r)
    assert missing == {"species": ["Adelie"], "island": ["Torgersen"]}
    gentoo = next(r for r in everything if r.get("body_mass_g") == [4725])
    assert "sex" not in gentoo and gentoo["bill_length_mm"] == [pytest.approx(47.3)]
    assert examples.get("input_fingerprint")
    assert os.listdir(examples.split_uri("train")) == ["data_tfrecord-00000-00000.gz"]


def test_rows_without_a_required_column_are_dropped_counted_and_named(tmp_path):
    """drop_rows_missing leaves out the rows whose cell is empty (or NA) in a named column, as a
    label's must be, says how many and where, and records the count; every other row keeps its
    split, and a row with an empty cell elsewhere is kept."""
    make_span(tmp_path)
    kept = run_gen(tmp_path, drop_rows_missing=["sex"])
    assert kept.ok, kept.error
    examples = kept.step("ExampleGen").outputs["examples"]
    assert json.loads(examples.custom_properties["rows_dropped"]) == {"sex": 2}
    [line] = [line for line in kept.log if "dropped" in line]
    assert (
        "dropped 2 of 6 row(s) without 'sex' (2) (drop_rows_missing): part.csv line 3, part.csv line 4"
        in line
    )
    rows = all_examples(kept)
    assert sum(map(len, rows.values())) == 4 and all("sex" in r for split in rows.values() for r in split)
    full = all_examples(run_gen(tmp_path))
    assert rows == {split: [r for r in full[split] if "sex" in r] for split in full}
    unknown = run_gen(tmp_path, drop_rows_missing=["Sex Name"])
    assert "drop_rows_missing names 'Sex Name', not a column of span 1" in failure(unknown)


def test_declared_column_types_win_over_inference(tmp_path):
    make_span(tmp_path)
    result = run_gen(tmp_path, column_types={"body_mass_g": "float"})
    rows = [r for split in all_examples(result).values() for r in split]
    assert {type(r["body_mass_g"][0]) for r in rows if "body_mass_g" in r} == {float}


def test_latest_span_by_default_or_the_one_asked(tmp_path):
    make_span(tmp_path, span=3, rows=ROWS[:2])
    make_span(tmp_path, span=12, rows=ROWS[:4])
    assert find_span(str(tmp_path / "data" / "span-{SPAN}" / "*.csv"), None, None)[0] == 12
    result = run_gen(tmp_path, span=3)
    assert result.step("ExampleGen").outputs["examples"].properties["span"] == 3
    assert sum(len(v) for v in all_examples(result).values()) == 2


def test_span_and_version_placeholders(tmp_path):
    for version in (1, 2):
        write_csv(tmp_path / "d" / "span-5" / f"v{version}" / "a.csv", HEADER + ROWS[0] + "\n")
    assert find_span(str(tmp_path / "d" / "span-{SPAN}" / "v{VERSION}" / "*.csv"), None, None)[:2] == (5, 2)


def test_new_file_in_the_span_is_a_cache_miss(tmp_path):
    make_span(tmp_path)
    assert run_gen(tmp_path).ok
    assert run_gen(tmp_path).step("ExampleGen").status == "CACHED"
    make_span(tmp_path, rows=ROWS[:1], name="more.csv")
    again = run_gen(tmp_path)
    assert again.step("ExampleGen").status == "COMPLETE"
    assert sum(len(v) for v in all_examples(again).values()) == len(ROWS) + 1


def test_no_file_matches(tmp_path):
    with pytest.raises(UserInputError, match=r"no file matches input pattern"):
        find_span(str(tmp_path / "nothing-{SPAN}" / "*.csv"), None, None)
    make_span(tmp_path, span=1)
    assert "no file matches input pattern" in failure(run_gen(tmp_path, span=9))
    assert "spans found: 1" in failure(run_gen(tmp_path, span=9))


def test_headers_differ_between_files(tmp_path):
    make_span(tmp_path, name="a.csv")
    make_span(tmp_path, name="b.csv", header="species,island,bill_length_mm,sex,body_mass_g\n")
    message = failure(run_gen(tmp_path))
    assert "ExampleGen failed (execution" in message
    assert "b.csv differs from that of" in message and "a.csv" in message


def test_row_with_wrong_number_of_cells_names_file_and_line(tmp_path):
    path = make_span(tmp_path, rows=[*ROWS[:3], "Adelie,Dream,1.0", *ROWS[3:]])
    message = failure(run_gen(tmp_path))
    assert f"{path}, line 5: expected 5 cells as in the header, found 3: 'Adelie,Dream,1.0'" in message
    assert "1 bad row(s) in span 1; nothing was written" in message


def test_value_that_does_not_parse_names_file_line_and_column(tmp_path):
    path = make_span(tmp_path, rows=[*ROWS[:4], "Adelie,Dream,12.5,heavy,male"])
    message = failure(run_gen(tmp_path, column_types={"body_mass_g": "int"}))
    assert f"{path}, line 6: column 'body_mass_g' is int, but the value is 'heavy'" in message


def test_empty_file(tmp_path):
    make_span(tmp_path, name="a.csv")
    empty = write_csv(tmp_path / "data" / "span-1" / "b.csv", "")
    assert f"{empty} is empty; remove it, or give it a header line and rows" in failure(run_gen(tmp_path))


def test_span_without_rows(tmp_path):
    make_span(tmp_path, rows=[])
    assert "span 1 has no data rows" in failure(run_gen(tmp_path))


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = make_span(tmp_path)
    with open(path, "ab") as f:
        f.write(b"Adelie,Dr\xe9am,39.0,3000,male\n")
    assert f"{path}, line 8: bytes that are not UTF-8" in failure(run_gen(tmp_path))


def test_failed_generation_leaves_no_live_artifact_or_files(tmp_path):
    make_span(tmp_path, rows=[*ROWS, "x,y"])
    result = run_gen(tmp_path)
    assert not result.ok
    out = tmp_path / "root" / "ExampleGen" / "examples"
    assert os.listdir(out) == []


def test_truncated_gzip_is_named_when_read(tmp_path):
    from components.io.tfrecord import read_gzipped, write_gzipped

    path = str(tmp_path / "data_tfrecord-00000-00000.gz")
    write_gzipped(path, [b"x" * 100] * 50)
    assert sum(len(batch) for batch in read_gzipped(path)) == 50
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"data_tfrecord-00000-00000.gz is not a complete gzip file"):
        list(read_gzipped(path))


@pytest.mark.parametrize(
    "header, name",
    [
        ("bill_length_mm", "bill_length_mm"),
        ("Island", "Island"),
        ("Culmen Length (mm)", "culmen_length_mm"),
        ("Clutch.Size", "clutch_size"),
        ("15N/14N ratio", "f_15n_14n_ratio"),
        ("Année d'étude", "annee_d_etude"),
        ("_private", "private"),
        ("重量", ""),
    ],
)
def test_headers_become_valid_feature_names(header, name):
    assert feature_name(header) == name


def test_two_headers_that_map_to_one_name_are_refused_naming_both():
    assert feature_names(["a b", "重量", "c"]) == ["a_b", "column_2", "c"]
    with pytest.raises(
        UserInputError, match=r"x.csv, line 1: columns 'Body Mass' and 'body mass' both become"
    ):
        feature_names(["Body Mass", "body mass"], "x.csv")


def test_messy_headers_are_renamed_and_the_mapping_recorded(tmp_path):
    make_span(tmp_path, header="Species Name,Island,Culmen Length (mm),Body Mass (g),Sex\n")
    result = run_gen(tmp_path, column_types={"Body Mass (g)": "float"})
    assert result.ok, result.error
    examples = result.step("ExampleGen").outputs["examples"]
    import json

    assert json.loads(examples.get("column_names")) == {
        "Species Name": "species_name",
        "Culmen Length (mm)": "culmen_length_mm",
        "Body Mass (g)": "body_mass_g",
    }
    rows = [r for split in all_examples(result).values() for r in split]
    assert {"species_name", "Island", "culmen_length_mm"} <= set(rows[0])
    assert {type(r["body_mass_g"][0]) for r in rows if "body_mass_g" in r} == {float}


@pytest.mark.parametrize(
    "cell, kind",
    [
        ("nan", "float"),
        ("inf", "float"),
        ("-Infinity", "float"),
        ("1e400", "float"),
        ("1e308", "float"),
        ("99999999999999999999", "int"),
    ],
)
def test_a_value_that_is_not_a_finite_number_is_refused_naming_file_line_and_column(tmp_path, cell, kind):
    """A NaN, an infinity, a float beyond float32's range (which becomes one) or an integer beyond
    64 bits never reaches statistics and Transform unannounced."""
    rows = [
        *ROWS[:2],
        f"Gentoo,Biscoe,{cell if kind == 'float' else '47.3'},{cell if kind == 'int' else '4725'},male",
    ]
    make_span(tmp_path, rows=rows)
    message = failure(run_gen(tmp_path, column_types={"bill_length_mm": "float", "body_mass_g": "int"}))
    column = "bill_length_mm" if kind == "float" else "body_mass_g"
    assert re.search(
        rf"part\.csv, line 4: column '{column}' is {kind}, but the value is '{re.escape(cell)}'", message
    )
    assert ("not a finite number" if kind == "float" else "does not fit in a 64-bit integer") in message


def test_a_pattern_without_span_is_a_definition_error():
    from pipeline import DefinitionError

    with pytest.raises(DefinitionError, match=r"input pattern 'data/\*\.csv' needs a \{SPAN\} placeholder"):
        ExampleGen(input_pattern="data/*.csv")


def test_a_gzip_file_named_csv_is_said_to_be_compressed(tmp_path):
    import gzip

    path = tmp_path / "data" / "span-1" / "part.csv"
    os.makedirs(path.parent)
    path.write_bytes(gzip.compress((HEADER + "\n".join(ROWS) + "\n").encode()))
    assert re.search(r"part\.csv looks gzip-compressed .*; decompress it first", failure(run_gen(tmp_path)))


def test_an_empty_latest_span_folder_is_announced_and_the_latest_with_files_used(tmp_path):
    make_span(tmp_path, span=1)
    os.makedirs(tmp_path / "data" / "span-2")
    result = run_gen(tmp_path)
    assert result.ok, result.error
    examples = result.step("ExampleGen").outputs["examples"]
    assert examples.get("span") == 1 and examples.get("skipped_spans") == "[2]"
    assert any("warning: span 2's folder holds no file matching" in line for line in result.log)


def test_a_span_folder_that_is_a_symlink_loop_is_announced_not_skipped_silently(tmp_path):
    make_span(tmp_path, span=1)
    os.symlink(tmp_path / "data" / "span-3", tmp_path / "data" / "span-3")  # points at itself
    os.symlink(tmp_path / "gone", tmp_path / "data" / "span-4")  # points at nothing
    result = run_gen(tmp_path)
    assert result.ok, result.error
    assert result.step("ExampleGen").outputs["examples"].get("span") == 1
    for span in (3, 4):
        assert any(
            f"warning: span {span}'s folder {tmp_path}/data/span-{span} is a symbolic link to nothing readable"
            in line
            for line in result.log
        ), result.log


def _tree(root) -> dict:
    """Every file under `root` by relative path: its bytes, or for a TFRecord file its decoded
    examples in order (a tf.Example's bytes are not stable: protobuf orders a map's entries by
    a per-process seed)."""
    from components.io.tfrecord import read_gzipped

    def content(path):
        if path.endswith(".gz"):
            return [decode_examples(records) for records in read_gzipped(path)]
        with open(path, "rb") as f:
            return f.read()

    return {
        os.path.relpath(os.path.join(d, n), root): content(os.path.join(d, n))
        for d, _, names in os.walk(root)
        for n in names
    }


@pytest.mark.parametrize("bad, drop", [(False, None), (True, None), (False, ["sex"])])
def test_small_inputs_skip_beam_with_the_same_artifacts(tmp_path, bad, drop):
    """On the DirectRunner, ExampleGen and StatisticsGen call their stages in this process (on a
    thread per core above 4 MB) instead of building a Beam pipeline: the same files holding the same examples in
    the same order, the same statistics byte for byte, and the same report (rows per split,
    types, bad rows named, rows dropped) as the pipeline makes."""
    from components.example_gen import beam, stages
    from components.statistics_gen.component import _summarize_here, _summarize_with_beam
    from pipeline import ExecutionContext
    from pipeline.artifacts import Examples, ExampleStatistics

    rows = [*ROWS, "Adelie,Dream,40.1,forty,female"] if bad else ROWS
    paths = [
        str(make_span(tmp_path, rows=rows, name="a.csv")),
        str(make_span(tmp_path, rows=[r.replace("Dream", "Biscoe") for r in ROWS], name="b.csv")),
    ]
    header = HEADER.strip().split(",")
    ctx = ExecutionContext("eg", str(tmp_path), "ExampleGen", 1, "run", sink=lambda _: None)
    assert ctx.threads_without_pipeline(input_bytes=sum(os.path.getsize(p) for p in paths)) == 1
    here = functools.partial(stages.write_examples_here, threads=2)  # as on inputs over 4 MB
    reports, trees = [], []
    for write in (here, beam.write_examples):
        examples = Examples(str(tmp_path / ("here" if write is here else "beam")))
        os.makedirs(examples.uri)
        reports.append(
            write(
                ctx,
                paths,
                header,
                {"body_mass_g": "float"},
                ["NA"],
                {"train": 2, "eval": 1},
                examples,
                drop_missing=drop,
            )
        )
        if not bad:
            examples.split_names = ["train", "eval"]
            statistics = ExampleStatistics(examples.uri + "-statistics")
            shards = [
                (s, p)
                for s in examples.split_names
                for p in sorted(glob.glob(examples.split_uri(s) + "/*.gz"))
            ]
            if write is here:
                _summarize_here(shards, statistics, threads=2)
            else:
                _summarize_with_beam(ctx, shards, 1, statistics)
            trees.append(_tree(statistics.uri))
        trees.append(_tree(examples.uri))
    assert reports[0] == reports[1]
    half = len(trees) // 2
    assert trees[:half] == trees[half:]
    if bad:
        assert [e.line for e in reports[0].errors] == [len(rows) + 1]
        assert "'forty'" in reports[0].errors[0].message
    else:
        dropped = 4 if drop else 0  # two rows without sex in each file
        assert reports[0].dropped_rows == dropped and len(reports[0].dropped_lines) == dropped
        assert (
            sum(reports[0].counts.values()) == 2 * len(ROWS) - dropped
            and reports[0].types["bill_length_mm"] == "float"
        )
        assert (
            len(trees[0]) == 2 and len(trees[1]) == 4
        )  # a statistics file per split; a shard per file and split


def test_merging_types_in_any_order_keeps_a_column_empty_in_one_chunk_typed_by_the_others():
    """The pipeline merges chunk types in whatever order chunks arrive: a column that is empty in
    the first chunk merged is still a float when a later chunk says so (it was typed string)."""
    from components.example_gen.beam import _MergeTypes

    merge = _MergeTypes()
    for order in (
        [{"a": None, "b": "int"}, {"a": "float", "b": None}],
        [{"a": "float", "b": None}, {"a": None, "b": "int"}],
    ):
        accumulator = merge.create_accumulator()
        for types in order:
            accumulator = merge.add_input(accumulator, types)
        assert merge.extract_output(accumulator) == {"a": "float", "b": "int"}
        halves = [merge.add_input(merge.create_accumulator(), t) for t in order]
        assert merge.extract_output(merge.merge_accumulators(halves)) == {"a": "float", "b": "int"}
    assert merge.extract_output(merge.add_input(merge.create_accumulator(), {"c": None})) == {"c": "string"}


def test_a_file_truncated_while_it_is_read_is_named_with_what_to_do(tmp_path):
    from components.example_gen import csv_to_examples as reader

    path = make_span(tmp_path, rows=ROWS * 2000)
    chunks = reader.plan_chunks(str(path), 0, target_bytes=4096)
    with open(path, "r+b") as f:
        f.truncate(1000)  # a copy replaced it, or it was cut short, after the plan
    header = HEADER.strip().split(",")
    with pytest.raises(
        UserInputError, match=r"part\.csv changed while ExampleGen read it: it is now 1,000 bytes"
    ):
        for chunk in chunks:
            reader.read_chunk(chunk, header, ["NA"])


def test_very_long_values_and_headers_name_the_line_and_stay_short():
    """A 9 MB cell in a bad row is shown cut, with its length; a 300-character header becomes a
    feature name of at most 64 characters, stable and distinct (TF Transform names files after it)."""
    from components.example_gen.component import MAX_FEATURE_NAME, feature_name, feature_names

    long = "Weight of the animal measured at the field station " * 6
    name = feature_name(long)
    assert (
        len(name) <= MAX_FEATURE_NAME
        and name == feature_name(long)
        and name.startswith("weight_of_the_animal")
    )
    names = feature_names([long, long.replace("Weight", "Height")])
    assert len(set(names)) == 2 and all(len(n) <= MAX_FEATURE_NAME for n in names)
    assert feature_name("x" * 64) == "x" * 64


def test_a_huge_cell_is_reported_with_its_file_and_line_and_cut(tmp_path):
    make_span(tmp_path, rows=[*ROWS, "Adelie,Dream," + "1" * 2_000_000 + ",3,male"])
    message = failure(run_gen(tmp_path))
    assert "part.csv, line 8: column 'bill_length_mm' is float, but the value is '111" in message
    assert "... (2,000,000 characters)" in message and len(message) < 1000


def test_date_spans_as_tfx_numbers_them_shown_as_dates(tmp_path):
    """`{YYYY}-{MM}` folders: the span is the first day's number of days since 1970-01-01 (TFX's
    ExampleGen numbering), read and recorded as a date; a given date with no files fails naming
    what was looked for and the dates there are; a folder that is no date is not a span."""
    import datetime

    from components.example_gen.component import ExampleGenParams, span_of_date
    from pipeline import DefinitionError

    for month in ("2024-01", "2024-02", "2024-03", "2024-13"):
        write_csv(tmp_path / "exports" / month / "part.csv", HEADER + "\n".join(ROWS) + "\n")
    pattern = str(tmp_path / "exports" / "{YYYY}-{MM}" / "*.csv")

    def run(span=None):
        return quiet_run(Pipeline("eg", [ExampleGen(input_pattern=pattern, span=span)]), tmp_path / "root")

    latest = run()
    assert latest.ok, latest.error
    examples = latest.step("ExampleGen").outputs["examples"]
    march = span_of_date(datetime.date(2024, 3, 1))
    assert march == 19783 and examples.get("span") == march and examples.get("span_date") == "2024-03-01"
    assert any(f"span 2024-03-01 (span {march}), version 0: 1 file(s)" in line for line in latest.log)
    february = run(span=span_of_date(datetime.date(2024, 2, 1)))
    assert february.step("ExampleGen").outputs["examples"].get("span_date") == "2024-02-01"
    missing = failure(run(span=span_of_date(datetime.date(2024, 4, 1))))
    assert "for span 2024-04-01" in missing and "exports/2024-04/*.csv" in missing
    assert "spans found: 2024-01-01, 2024-02-01, 2024-03-01" in missing
    with pytest.raises(DefinitionError, match=r"a dated pattern has \{YYYY\} and \{MM\}"):
        ExampleGenParams(input_pattern=str(tmp_path / "{YYYY}" / "*.csv"))
