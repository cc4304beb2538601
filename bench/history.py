"""The history browser and the history commands on a long history: a store of N runs as a cron job
leaves it, then every page of `runner.py ui` and every read command timed at two sizes.

    .venv/bin/python -m bench.history --runs 500 [--at 100] [--repeat 5] [--out bench/results/history.json]
                                      [--profile NAME] [--keep DIR]

The store is filled by real runs, in this process, of a small pipeline that keeps ML Metadata's
shape of the real one without TensorFlow: ExampleGen over small CSV spans on a rolling window of
two, StatisticsGen, the curated schema, ExampleValidator, and stand-ins for the Trainer, the
Evaluator and the Pusher (`ToyTrainer`, `ToyEvaluator`, `ToyPusher`, below) that write Model,
ModelEvaluation, ModelBlessing and PushedModel artifacts with the properties the real ones
record. Every few runs brings a new span or a changed learning rate; the runs in between find
nothing new (every step CACHED), as a cron tick does. At `--at` runs and at `--runs` runs, each
page (with Flask's test client) and each command (`runner.py`'s own functions, output discarded)
is timed, the median of `--repeat`; a page whose time grows with the number of runs shows it.
`--profile NAME` prints a cProfile of the measures whose name has NAME; `--keep DIR` leaves the
store there. Prints a table and writes JSON with the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from typing import Annotated

from pipeline import Component, ExecutionContext, InputArtifact, OutputArtifact, Pipeline
from pipeline.artifacts import Examples, Model, ModelBlessing, ModelEvaluation, PushedModel, Schema
from pipeline.resolvers import LatestBlessedModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ("x", "kind", "size")
KINDS = ("a", "b", "c")
SCHEMA = """\
feature { name: "x" type: INT presence { min_fraction: 1.0 min_count: 1 } }
feature { name: "kind" type: BYTES domain: "kind" presence { min_fraction: 1.0 min_count: 1 } }
feature { name: "size" type: INT presence { min_fraction: 1.0 min_count: 1 } }
string_domain { name: "kind" value: "a" value: "b" value: "c" }
"""


# ---- stand-ins for the Trainer, the Evaluator and the Pusher ------------------------------------


@dataclass(frozen=True)
class ToyTrainerParams:
    learning_rate: float = 0.1


def toy_accuracy(spans: list[int], learning_rate: float) -> float:
    """What the stand-in model scores: better with later spans, worse far from a learning rate of
    0.1, and a fixed wobble per window, so that some models beat the last blessed one and some do not."""
    wobble = hashlib.sha256(json.dumps([spans, learning_rate]).encode()).digest()[0] / 255 - 0.5
    trend = 0.15 * (1 - 1 / (1 + max(spans) / 5))
    return round(0.8 + trend + 0.04 * wobble - abs(learning_rate - 0.1) * 0.2, 4)


def run_toy_trainer(
    ctx: ExecutionContext,
    params: ToyTrainerParams,
    examples: InputArtifact[list[Examples]],
    schema: InputArtifact[Schema],
    model: OutputArtifact[Model],
) -> None:
    """A Model as the Trainer records it (its spans, best step and metric, label, task, page)."""
    from pipeline import pages

    spans = [e.get("span") for e in examples]
    accuracy = toy_accuracy(spans, params.learning_rate)
    os.makedirs(os.path.join(model.uri, "Format-Serving"))
    with open(os.path.join(model.uri, "Format-Serving", "saved_model.pb"), "w") as f:
        f.write(json.dumps({"spans": spans, "learning_rate": params.learning_rate}))
    pages.write(
        os.path.join(model.uri, "training.html"),
        "training.html",
        best_step=100,
        metric="accuracy",
        note=f"trained on spans {spans}",
        resumed_from=0,
        charts=pages.Markup(""),
        columns=["step", "accuracy"],
        rows=[[100, accuracy]],
    )
    model.custom_properties.update(
        spans=json.dumps(spans),
        best_metric="accuracy",
        best_metric_value=accuracy,
        best_step=100,
        last_step=100,
        label_key="kind",
        task="classification",
        page="training.html",
        eval_metrics=json.dumps({"accuracy": accuracy}),
    )


ToyTrainer = Component(name="Trainer", run=run_toy_trainer, parameters=ToyTrainerParams, version="1")


@dataclass(frozen=True)
class ToyEvaluatorParams:
    pass


def run_toy_evaluator(
    ctx: ExecutionContext,
    params: ToyEvaluatorParams,
    model: InputArtifact[Model],
    examples: InputArtifact[list[Examples]],
    baseline: Annotated[Model | None, LatestBlessedModel(exclude="model")],
    evaluation: OutputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
) -> None:
    """Blesses a model no more than 0.01 less accurate than the latest blessed one, with the Evaluator's
    properties (blessed, current and baseline model, reason, headline, metrics) and page."""
    from pipeline import pages

    accuracy = model.get("best_metric_value")
    against = baseline.get("best_metric_value") if baseline is not None else None
    blessed = against is None or accuracy >= against - 0.01
    newest = examples[-1]
    count = int(newest.get("row_count_eval") or 0)
    beside = f", baseline {against:.4f}" if against is not None else ""
    headline = (
        f"accuracy on {count} 'eval' examples of span {newest.get('span')}: candidate {accuracy:.4f}"
        f"{beside}, trivial baseline 0.3400"
    )
    reason = (
        "BLESSED: beats the trivial baseline; all 1 threshold(s) passed"
        if blessed
        else f"NOT BLESSED: 1 of 1 threshold(s) failed\nFAIL accuracy {accuracy:.4f} >= baseline {against:.4f} - 0.01"
    )
    open(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w").close()
    scores = {"accuracy": accuracy, "example_count": count, "trivial_accuracy": 0.34}
    if against is not None:
        scores["baseline_accuracy"] = against
    blessing.custom_properties.update(
        blessed=int(blessed),
        current_model=model.uri,
        current_model_id=model.id,
        baseline_model=baseline.uri if baseline else "",
        baseline_model_id=baseline.id if baseline else 0,
        reason=reason,
        headline=headline,
        **scores,
    )
    metrics = {
        "accuracy": accuracy,
        "auc": round(min(1.0, accuracy + 0.03), 4),
        "loss": round(1 - accuracy, 4),
    }
    evaluation.custom_properties.update(
        page="evaluation.html",
        blessed=int(blessed),
        task="classification",
        split="eval",
        headline=headline,
        metrics=json.dumps(metrics),
        eval_spans=json.dumps([newest.get("span")]),
        **scores,
    )
    pages.write(
        os.path.join(evaluation.uri, "evaluation.html"),
        "evaluation.html",
        model=model,
        blessed=blessed,
        baseline=baseline,
        headline=headline,
        verdicts=[],
        charts=pages.Markup(""),
        confusion=None,
        curves=None,
        residuals=None,
        metrics=sorted(metrics),
        slices=[("Overall", [(metrics[name], None) for name in sorted(metrics)])],
    )
    if not blessed:
        ctx.hold_back(
            f"model {model.id} is not blessed: accuracy {accuracy:.4f} < baseline {against:.4f} - 0.01"
        )


ToyEvaluator = Component(name="Evaluator", run=run_toy_evaluator, parameters=ToyEvaluatorParams, version="1")


@dataclass(frozen=True)
class ToyPusherParams:
    pass


def run_toy_pusher(
    ctx: ExecutionContext,
    params: ToyPusherParams,
    model: InputArtifact[Model],
    blessing: InputArtifact[ModelBlessing],
    pushed_model: OutputArtifact[PushedModel],
) -> None:
    """Copies a blessed model to `<root>/serving/<pipeline>/<version>/` and records the push as
    the Pusher does (pushed, destination, version, action, time, model, the version replaced)."""
    model_dir = os.path.join(ctx.pipeline_root, "serving", ctx.pipeline_name)
    pushed_model.custom_properties.update(model_id=model.stored_id, pushed_at=time.time())
    if not blessing.get("blessed"):
        pushed_model.custom_properties.update(pushed=0, action="not_blessed", reason=blessing.get("reason"))
        return
    versions = [int(n) for n in os.listdir(model_dir) if n.isdigit()] if os.path.isdir(model_dir) else []
    latest = max(versions, default=0)
    destination = os.path.join(model_dir, str(latest + 1))
    shutil.copytree(os.path.join(model.uri, "Format-Serving"), destination)
    with open(os.path.join(pushed_model.uri, "push_record.json"), "w") as f:
        json.dump({"model_id": model.id, "version": latest + 1, "run_id": ctx.run_id}, f)
    pushed_model.custom_properties.update(
        pushed=1,
        pushed_destination=destination,
        pushed_version=str(latest + 1),
        action="pushed",
        replaced_version=latest,
    )
    ctx.log(f"pushed model {model.id} as version {latest + 1}: {destination}")


ToyPusher = Component(name="Pusher", run=run_toy_pusher, parameters=ToyPusherParams, version="1")


def training_pipeline(
    data: str, schema_file: str, learning_rate: float = 0.1, name: str = "history"
) -> Pipeline:
    """ExampleGen on a rolling window of two spans of `data/span-{SPAN}/*.csv`, the data gate
    against the curated schema, and the stand-ins for training, evaluation and push."""
    from components.example_gen import ExampleGen, RollingWindow
    from components.example_validator import ExampleValidator
    from components.schema_gen import ImportSchemaGen
    from components.statistics_gen import StatisticsGen

    example_gen = ExampleGen(
        input_pattern=os.path.join(data, "span-{SPAN}", "*.csv"), window=RollingWindow(2)
    )
    schema = ImportSchemaGen(schema_file=schema_file)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema.outputs["schema"],
        drift_exclude=("x", "size", "kind"),
    )
    trainer = ToyTrainer(
        examples=example_gen.outputs["examples"], schema=schema.outputs["schema"], learning_rate=learning_rate
    )
    evaluator = ToyEvaluator(model=trainer.outputs["model"], examples=example_gen.outputs["examples"])
    pusher = ToyPusher(model=trainer.outputs["model"], blessing=evaluator.outputs["blessing"])
    return Pipeline(name, [example_gen, schema, statistics_gen, validator, trainer, evaluator, pusher])


def write_span(
    data: str,
    span: int,
    rows: int = 30,
    header=HEADER,
    odd_value: str | None = None,
    file_name: str = "rows.csv",
) -> None:
    """`data/span-<span>/<file_name>`: `rows` rows of the columns in `header` (x, kind, size);
    the first row's kind is `odd_value` when given."""
    import csv

    folder = os.path.join(data, f"span-{span}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, file_name), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(rows):
            kind = odd_value if odd_value is not None and i == 0 else KINDS[(i + span) % 3]
            writer.writerow([i, kind, (i * 7 + span) % 11])


def write_schema(path: str, header=HEADER) -> str:
    """The curated schema of `header`'s columns (feature names as ExampleGen makes them)."""
    from components.example_gen.component import feature_names

    names = dict(zip(HEADER, feature_names(list(header))))
    text = SCHEMA
    for column, name in names.items():
        text = text.replace(f'name: "{column}" type', f'name: "{name}" type')
    with open(path, "w") as f:
        f.write(text)
    return path


# ---- the benchmark ----------------------------------------------------------------------------------

NEW_SPAN_EVERY = 5  # a new export every fifth tick of the schedule
NEW_RATE_EVERY = 23  # and now and then a changed learning rate (a new model on the same window)
RATES = (0.1, 0.12, 0.09)
TARGET_MS = 200.0


class Cron:
    """A training pipeline's history as a schedule leaves it: tick after tick, a new span every
    NEW_SPAN_EVERY ticks, a changed learning rate every NEW_RATE_EVERY, nothing new in between."""

    def __init__(self, workdir: str):
        self.data = os.path.join(workdir, "data")
        self.root = os.path.join(workdir, "root")
        self.schema = write_schema(os.path.join(workdir, "schema.pbtxt"))
        self.ticks, self.spans, self.rate = 0, 0, RATES[0]
        self.statuses: dict[str, int] = {}

    @property
    def store(self) -> str:
        return os.path.join(self.root, "metadata.sqlite")

    def tick(self) -> None:
        from pipeline.local_runner import RunOptions, run_pipeline

        if self.ticks % NEW_SPAN_EVERY == 0:
            self.spans += 1
            write_span(self.data, self.spans, rows=40)
        if self.ticks and self.ticks % NEW_RATE_EVERY == 0:
            self.rate = RATES[(self.ticks // NEW_RATE_EVERY) % len(RATES)]
        self.ticks += 1
        result = run_pipeline(
            training_pipeline(self.data, self.schema, self.rate),
            RunOptions(pipeline_root=self.root, log=lambda line: None),
        )
        self.statuses[result.status] = self.statuses.get(result.status, 0) + 1
        if result.status not in ("COMPLETE", "HELD_BACK"):
            raise SystemExit(f"run {self.ticks} ended {result.status}: {result.error}")


def timed(call, repeat: int) -> tuple[float, list[float]]:
    """The median of `repeat` calls in milliseconds (after one that warms caches), and each."""
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), samples


def measures(cron: Cron) -> dict[str, tuple[str, object]]:
    """What is timed: each page of the browser (Flask's test client) and each read command
    (`runner.main`, output discarded). Named models and spans are the same at every size where
    they exist (the first model, span 2), or the newest."""
    from pipeline.artifacts import Model, PushedModel
    from pipeline.metadata import MetadataStore

    store = MetadataStore(cron.store, create=False)
    models = store.artifacts_of(Model, "history")
    pushed = sorted(
        (p for p in store.artifacts_of(PushedModel, "history") if p.get("pushed")),
        key=lambda p: p.pushed_version(),
    )
    newest_run = store.pipeline_runs("history")[0].name
    span = 2  # in the store at every size measured: a span a few models learned from
    cli = ["--pipeline-root", cron.root]
    return {
        "page: runs (50, folded)": ("page", "/runs"),
        "page: a run": ("page", f"/run?id={newest_run}"),
        "page: models (trend, pushes)": ("page", "/models"),
        "page: the newest model, its graph": ("page", f"/model?id={models[-1].id}"),
        "page: the first model, its graph": ("page", f"/model?id={models[0].id}"),
        f"page: impact of span:{span}": ("page", f"/impact?ref=span:{span}"),
        "page: diff of the two newest models": ("page", f"/diff?a={models[-2].id}&b={models[-1].id}"),
        "runs": ("command", [*cli, "runs"]),
        "models": ("command", [*cli, "models"]),
        "models --metric accuracy": ("command", [*cli, "models", "--metric", "accuracy"]),
        "pushes": ("command", [*cli, "pushes"]),
        "lineage --pushed latest": ("command", [*cli, "lineage", "--pushed", "latest"]),
        f"lineage --downstream span:{span}": ("command", [*cli, "lineage", "--downstream", f"span:{span}"]),
        "diff (the two newest versions)": (
            "command",
            [*cli, "diff", f"v{pushed[-2].pushed_version()}", f"v{pushed[-1].pushed_version()}"],
        ),
    }


def measure(cron: Cron, repeat: int, profile: str | None = None) -> list[dict]:
    import contextlib
    import io

    import runner
    from pipeline.ui import create_app

    client = create_app(cron.store).test_client()
    rows = []
    for name, (kind, target) in measures(cron).items():
        if kind == "page":

            def call(url=target):
                response = client.get(url)
                if response.status_code != 200:
                    raise SystemExit(
                        f"{url}: {response.status_code}\n{response.get_data(as_text=True)[-2000:]}"
                    )

        else:

            def call(argv=target):
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    code = runner.main(list(argv))
                if code != 0:
                    raise SystemExit(f"runner.py {' '.join(argv)} exited {code}")

        median, samples = timed(call, repeat)
        rows.append(
            {
                "what": name,
                "kind": kind,
                "runs": cron.ticks,
                "median_ms": round(median, 1),
                "samples_ms": [round(s, 1) for s in samples],
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        print(f"  {cron.ticks:>4} runs  {name:<40} {median:8.1f} ms", flush=True)
        if profile and profile in name:
            show_profile(call)
    return rows


def show_profile(call, top: int = 25) -> None:
    """cProfile of one call: the functions with the most time of their own, and with their callees."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler).sort_stats(order).print_stats(top)


def print_table(rows: list[dict], sizes: list[int]) -> None:
    names = list(dict.fromkeys(r["what"] for r in rows))
    by = {(r["what"], r["runs"]): r["median_ms"] for r in rows}
    print(
        f"\n{'median of each, ms':<42}"
        + "".join(f"{f'{n} runs':>12}" for n in sizes)
        + f"{'growth':>9}  target"
    )
    for name in names:
        values = [by.get((name, n)) for n in sizes]
        cells = "".join(f"{v:>12.1f}" if v is not None else f"{'-':>12}" for v in values)
        growth = f"{values[-1] / values[0]:>8.2f}x" if values[0] and values[-1] else f"{'':>9}"
        over = "" if all(v is None or v < TARGET_MS for v in values) else "  OVER"
        print(f"{name:<42}{cells}{growth}  <{TARGET_MS:.0f}{over}")


def main() -> None:
    import contextlib
    import tempfile

    from bench.measure import write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="runs in the store at the end")
    parser.add_argument("--at", default="100", help="comma-separated sizes measured on the way")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--profile", metavar="NAME", help="print a cProfile of the measures whose name has NAME"
    )
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "history.json"))
    parser.add_argument("--keep", metavar="DIR", help="fill the store in DIR (new) and leave it there")
    args = parser.parse_args()
    sizes = sorted({int(n) for n in args.at.split(",") if n} | {args.runs})
    rows: list[dict] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if args.keep:
        os.makedirs(args.keep)
    with contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as workdir:
        cron = Cron(workdir)
        filling = time.monotonic()
        for size in sizes:
            while cron.ticks < size:
                cron.tick()
                if cron.ticks % 50 == 0:
                    print(
                        f"{cron.ticks} runs ({time.monotonic() - filling:.0f} s): {cron.statuses}", flush=True
                    )
            rows += measure(cron, args.repeat, args.profile)
    print(
        f"\nbench.history, {started} to {time.strftime('%H:%M:%S %Z')}; {cron.spans} spans, runs {cron.statuses}"
    )
    print_table(rows, sizes)
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
