#!/usr/bin/env python3
"""The command line: run any pipeline, start a project from a CSV, list runs and models, trace lineage.

    python runner.py run [--pipeline FILE] [--span N | --date YYYY-MM-DD] [--data PATTERN]
                         [--no-cache | --rerun-from STEP] [--push-older-spans] [--wait SECONDS]
                         [--beam-arg=FLAG ...] [--job-server HOST:PORT [--workers HOST:PORT]]
    python runner.py backfill --from SPAN_OR_DATE [--to SPAN_OR_DATE] [--push-older-spans]
    python runner.py score [--pipeline SCORING_FILE] [--data PATTERN] [--span N | --date D]
                           [--model served|blessed|VERSION] [--id-column C ...]
    python runner.py step STEP --run-id ID [--span N | --date D] [--data PATTERN] [--no-cache] [--wait SECONDS]
    python runner.py export airflow|kfp [--out FILE] [--schedule CRON] [--image IMAGE] ...
    python runner.py init DIR --data PATTERN --label COLUMN [--task classification|regression]
    python runner.py runs [--limit N] [--steps] [--json]
    python runner.py models [--metric NAME | --served-at TIME] [--json]
    python runner.py pushes [--json]
    python runner.py lineage ARTIFACT_ID_OR_URI | --pushed latest|VERSION | --downstream REF [--json]
    python runner.py diff MODEL_A MODEL_B          (ids, URIs, or vN for pushed version N)
    python runner.py ui [--host 127.0.0.1] [--port N]
    python runner.py gc [--keep-runs N] [--keep-pushed K] [--apply]
    python runner.py infer-schema [--data PATTERN] [--span N]

Flags every command takes (before or after it): --pipeline FILE (default $PIPELINE_FILE, else the
penguin pipeline), --pipeline-name NAME, --pipeline-root DIR (default $PIPELINE_ROOT, else the
pipeline's own), --metadata PATH_OR_URL.

Exit codes (run and step): 0 done (a new model in service, or nothing new; for step: the step is
COMPLETE or CACHED, now or before), 1 a step failed or the data gate stopped the run (for step:
also an upstream step that has not completed), 2 a definition error, 3 done but held back (the
model was not blessed or its push was refused; the served model is unchanged; a later run with
nothing new reuses that decision and exits 0), 4 no model to score with (scoring), 75 busy: another
run holds the root, or the step runs in another live process (try again later).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PIPELINE_FILE = os.path.join(REPO_ROOT, "penguin", "pipeline.py")
DEFAULT_SCORING_FILE = os.path.join(REPO_ROOT, "penguin", "scoring.py")

EXIT_FAILED, EXIT_DEFINITION, EXIT_HELD_BACK, EXIT_NO_MODEL, EXIT_STORE, EXIT_LOCKED = 1, 2, 3, 4, 69, 75


def main(argv: list[str] | None = None) -> int:
    from pipeline.errors import DefinitionError, StoreUnavailable
    from pipeline.metadata import PASSWORD_FILE_VARIABLE
    from pipeline.quiet import quiet_libraries
    from pipeline.text import never_world_writable

    quiet_libraries()
    never_world_writable()

    args = _parser().parse_args(argv)
    if getattr(args, "metadata_password_file", None):
        os.environ[PASSWORD_FILE_VARIABLE] = os.path.abspath(args.metadata_password_file)  # steps inherit it
    try:
        return args.command(args)
    except DefinitionError as error:
        print(f"pipeline definition error: {error}", file=sys.stderr)
        return EXIT_DEFINITION
    except StoreUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORE
    except BrokenPipeError:
        return _reader_gone()


def _common_flags(suppress: bool) -> argparse.ArgumentParser:
    """The flags every command takes, before or after its name (after it, they win)."""
    flags = argparse.ArgumentParser(add_help=False)

    def default(value):
        return argparse.SUPPRESS if suppress else value

    flags.add_argument(
        "--pipeline",
        metavar="FILE",
        default=default(os.environ.get("PIPELINE_FILE")),
        help="a Python file defining create_pipeline() or a module-level pipeline "
        "(default: $PIPELINE_FILE, else the penguin pipeline)",
    )
    flags.add_argument(
        "--pipeline-name",
        metavar="NAME",
        default=default(None),
        help="run under this name; for runs, models, lineage and diff: which pipeline of the store",
    )
    flags.add_argument(
        "--pipeline-root",
        metavar="DIR",
        default=default(os.environ.get("PIPELINE_ROOT")),
        help="where artifacts go (default: $PIPELINE_ROOT, else the pipeline's own root)",
    )
    flags.add_argument(
        "--metadata",
        metavar="PATH_OR_URL",
        default=default(os.environ.get("PIPELINE_METADATA")),
        help="MLMD store: a sqlite path or a postgresql:// or mysql:// URL, best without its password "
        "(default: <pipeline-root>/metadata.sqlite, or $PIPELINE_METADATA)",
    )
    flags.add_argument(
        "--metadata-password-file",
        metavar="FILE",
        default=default(None),
        help="a file holding the store's password (or $PIPELINE_METADATA_PASSWORD_FILE; "
        "PostgreSQL also reads PGPASSWORD and ~/.pgpass)",
    )
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner.py",
        description=__doc__.splitlines()[0],
        parents=[_common_flags(suppress=False)],
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    common = [_common_flags(suppress=True)]

    run = commands.add_parser("run", help="run the pipeline", parents=common)
    run.add_argument(
        "--span", type=int, help="the span to ingest, or the last of the window (default: the latest)"
    )
    run.add_argument(
        "--date",
        type=_date,
        metavar="YYYY-MM-DD",
        help="the span of this date, for a pattern with {YYYY}, {MM} (and {DD}); for monthly "
        "spans, the month it falls in",
    )
    run.add_argument(
        "--push-older-spans",
        action="store_true",
        help="let a model of spans older than the served model's replace it (a rerun of old data)",
    )
    run.add_argument(
        "--data",
        help="input pattern with {SPAN}, e.g. 'data/span-{SPAN}/*.csv', or a date, 'exports/{YYYY}-{MM}/*.csv' "
        "(default: the pipeline's)",
    )
    run.add_argument("--no-cache", action="store_true", help="run every step, even if unchanged")
    run.add_argument(
        "--one-process",
        action="store_true",
        help="execute every step in this process (by default the TensorFlow steps execute in a "
        "worker process that imports TensorFlow while the steps before them run); for a debugger",
    )
    run.add_argument(
        "--rerun-from",
        metavar="STEP",
        help="run STEP and the steps that use its outputs, directly or not, even if unchanged; "
        "the others reuse their last outputs",
    )
    run.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="a Beam pipeline option, repeatable: --beam-arg=--runner=FlinkRunner",
    )
    run.add_argument(
        "--job-server",
        metavar="HOST:PORT",
        help="run the data steps on a portable Beam runner whose job server listens here "
        "(short for --beam-arg=--runner=PortableRunner --beam-arg=--job_endpoint=HOST:PORT)",
    )
    run.add_argument(
        "--workers",
        metavar="HOST:PORT",
        help="with --job-server: the Beam worker pool the job's workers come from (default: the "
        "launching process serves them)",
    )
    run.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run on the same root to finish (default: refuse)",
    )
    run.set_defaults(command=cmd_run)

    step = commands.add_parser(
        "step", help="run one step of one run (a task for a scheduler: Airflow, Kubeflow)", parents=common
    )
    step.add_argument("node", metavar="STEP", help="the step's node id, such as Trainer")
    step.add_argument("--run-id", required=True, help="the run this step belongs to (the scheduler's run id)")
    step.add_argument("--span", type=int, help="the span to ingest (default: the latest)")
    step.add_argument(
        "--date",
        type=_date,
        metavar="YYYY-MM-DD",
        help="the span of this date (a scheduler's logical date; empty: the latest)",
    )
    step.add_argument("--push-older-spans", action="store_true", help="see run --push-older-spans")
    step.add_argument("--data", help="input pattern with {SPAN} (default: the pipeline's)")
    step.add_argument("--no-cache", action="store_true", help="run the step even if unchanged")
    step.add_argument(
        "--beam-arg", action="append", default=[], metavar="FLAG", help="a Beam pipeline option"
    )
    step.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another run's lease"
    )
    step.add_argument("--orchestrator", help="recorded on the run: who scheduled it (airflow, kfp)")
    step.add_argument("--logical-date", help="recorded on the run: the scheduler's logical date")
    step.add_argument(
        "--span-of-logical-date",
        action="store_true",
        help="ingest the span of --logical-date (a dated pattern); without a logical date, the latest",
    )
    step.set_defaults(command=cmd_step)

    export = commands.add_parser(
        "export", help="write the pipeline as an Airflow DAG or a Kubeflow Pipelines package", parents=common
    )
    export.add_argument("target", choices=("airflow", "kfp"))
    export.add_argument("--out", metavar="FILE", help="default: <pipeline name>_dag.py / <name>.yaml")
    export.add_argument("--schedule", metavar="CRON", help="Airflow: the DAG's schedule (default: none)")
    export.add_argument(
        "--operator",
        choices=("bash", "kubernetes"),
        default="bash",
        help="Airflow: BashOperator on the workers, or KubernetesPodOperator running --image",
    )
    export.add_argument(
        "--image", help="the container image holding the project (kfp; airflow --operator kubernetes)"
    )
    export.add_argument(
        "--project-dir", help="where the project is on the workers / in the image (default: this checkout)"
    )
    export.add_argument("--python", help="the project's Python on the workers (default: this one)")
    export.add_argument(
        "--metadata-conn", metavar="CONN_ID", help="Airflow: take the store URL from this Airflow connection"
    )
    export.add_argument("--retries", type=int, default=2, help="retries per task (default 2)")
    export.add_argument("--retry-delay", type=float, default=60.0, metavar="SECONDS", help="default 60")
    export.set_defaults(command=cmd_export)

    init = commands.add_parser(
        "init", help="write a project (schema, preprocessing, model, pipeline) for a CSV", parents=common
    )
    init.add_argument("directory", help="the project's folder (created; must be empty if it exists)")
    init.add_argument(
        "--data", required=True, help="the CSV files: a glob, or a pattern with {SPAN} for span folders"
    )
    init.add_argument("--label", required=True, help="the column to predict (its CSV header)")
    init.add_argument(
        "--task", choices=("classification", "regression"), help="default: inferred from the label column"
    )
    init.add_argument("--name", help="the pipeline's name (default: the folder's name)")
    init.set_defaults(command=cmd_init)

    score = commands.add_parser(
        "score",
        help="score a span of rows with the served model (a scoring pipeline: default penguin/scoring.py)",
        parents=common,
    )
    score.add_argument(
        "--data", help="the rows to score: a pattern with {SPAN} or a date (default: the pipeline's)"
    )
    score.add_argument("--span", type=int, help="the span to score (default: the latest)")
    score.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="the span of this date")
    score.add_argument(
        "--model",
        metavar="served|blessed|VERSION",
        help="the model to score with: the served one (default), the newest blessed one, or a push version",
    )
    score.add_argument(
        "--id-column", action="append", default=[], metavar="COLUMN", help="a column copied to each CSV line"
    )
    score.add_argument("--no-cache", action="store_true", help="score again even if nothing changed")
    score.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run on the root",
    )
    score.set_defaults(command=cmd_score)

    backfill = commands.add_parser(
        "backfill",
        help="run a range of spans in order, each its own run, as the schedule would have",
        parents=common,
    )
    backfill.add_argument(
        "--from",
        dest="first",
        required=True,
        metavar="SPAN_OR_DATE",
        help="the first span (a number, or YYYY-MM-DD)",
    )
    backfill.add_argument(
        "--to", dest="last", metavar="SPAN_OR_DATE", help="the last span (default: the latest with files)"
    )
    backfill.add_argument("--data", help="input pattern (default: the pipeline's)")
    backfill.add_argument(
        "--push-older-spans",
        action="store_true",
        help="let the model of an older span replace the served one (by default it is evaluated, not pushed)",
    )
    backfill.add_argument("--no-cache", action="store_true", help="run every step of every run")
    backfill.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another run's lock"
    )
    backfill.set_defaults(command=cmd_backfill)

    listing = commands.add_parser("runs", help="list past runs and their steps", parents=common)
    listing.add_argument("--limit", type=int, default=10)
    listing.add_argument(
        "--steps",
        action="store_true",
        help="every run's steps (by default those of runs that did not complete)",
    )
    listing.add_argument("--json", action="store_true", help="as JSON, for programs (History.runs)")
    listing.set_defaults(command=cmd_runs)

    infer = commands.add_parser(
        "infer-schema",
        help="print a schema inferred from a span (a start for a curated one)",
        parents=common,
    )
    infer.add_argument("--span", type=int, help="the span to read (default: the latest)")
    infer.add_argument("--data", help="input pattern with {SPAN} (default: the pipeline's)")
    infer.set_defaults(command=cmd_infer_schema)

    models = commands.add_parser(
        "models", help="every model trained, newest first, with blessing and push", parents=common
    )
    models.add_argument(
        "--metric", metavar="NAME", help="the trend of one metric across the models, oldest first"
    )
    models.add_argument(
        "--served-at", metavar="TIME", help="the model serving at TIME (YYYY-MM-DD[ HH:MM[:SS]], local)"
    )
    models.add_argument(
        "--brief", action="store_true", help="one line per model, without the blessing's reasons"
    )
    models.add_argument("--json", action="store_true", help="as JSON, for programs (History.models)")
    models.set_defaults(command=cmd_models)

    pushes = commands.add_parser(
        "pushes",
        help="the push history: version, time, model, what it replaced, why it was blessed",
        parents=common,
    )
    pushes.add_argument(
        "--destination", metavar="DIR", help="one destination (<base>/<model name>) of several"
    )
    pushes.add_argument("--json", action="store_true", help="as JSON, for programs (History.pushes)")
    pushes.set_defaults(command=cmd_pushes)

    lineage = commands.add_parser("lineage", help="where an artifact came from, as a tree", parents=common)
    lineage.add_argument("artifact", nargs="?", help="an artifact id or URI")
    lineage.add_argument("--pushed", metavar="latest|VERSION", help="the model pushed last, or push VERSION")
    lineage.add_argument(
        "--downstream",
        metavar="REF",
        help="impact instead: everything built from REF (span:N, span:YYYY-MM-DD, a CSV file, an artifact "
        "id or URI), down to models, pushed versions (the one serving now marked) and predictions",
    )
    lineage.add_argument("--json", action="store_true", help="the same tree as JSON, for programs")
    lineage.set_defaults(command=cmd_lineage)

    gc = commands.add_parser(
        "gc", help="remove what the retention policy does not keep (a dry run unless --apply)", parents=common
    )
    gc.add_argument(
        "--keep-runs",
        type=int,
        help="runs whose reports and artifacts are kept (default: the pipeline's, or 10)",
    )
    gc.add_argument("--keep-pushed", type=int, help="pushed versions kept (default: the pipeline's, or 3)")
    gc.add_argument("--apply", action="store_true", help="remove them (default: only say what would go)")
    gc.set_defaults(command=cmd_gc)

    diff = commands.add_parser("diff", help="what differs in the lineage of two models", parents=common)
    diff.add_argument("first", help="a model id or URI, or vN for pushed version N")
    diff.add_argument("second", help="a model id or URI, or vN for pushed version N")
    diff.set_defaults(command=cmd_diff)

    ui = commands.add_parser(
        "ui", help="browse runs, models, lineage and impact in a web browser (read-only)", parents=common
    )
    ui.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    ui.add_argument("--port", type=int, default=8765, help="the port (default: 8765; 0 picks a free one)")
    ui.set_defaults(command=cmd_ui)
    return parser


def _load_pipeline(args):
    """The pipeline of --pipeline / $PIPELINE_FILE (or the penguin one), renamed by --pipeline-name."""
    from pipeline.usercode import load_pipeline

    pipeline = load_pipeline(args.pipeline or DEFAULT_PIPELINE_FILE)
    if args.pipeline_name:
        pipeline.name = args.pipeline_name
    return pipeline


def _pipeline_root(args, pipeline) -> str:
    """--pipeline-root, else the pipeline's own root, else runs/<name> beside its file."""
    if args.pipeline_root:
        return args.pipeline_root
    if pipeline.pipeline_root:
        return pipeline.pipeline_root
    return os.path.join(os.path.dirname(pipeline.source_file or DEFAULT_PIPELINE_FILE), "runs", pipeline.name)


def _metadata_spec(args, root: str, pipeline=None) -> str:
    """--metadata, else the pipeline's own store (a scoring pipeline's is its training pipeline's),
    else <root>/metadata.sqlite."""
    return args.metadata or getattr(pipeline, "metadata", None) or os.path.join(root, "metadata.sqlite")


def _store_and_pipeline_name(args, required: bool = True):
    """The store to read and the pipeline in it: --pipeline-name, else the pipeline of an explicit
    --pipeline file, else the store's only pipeline, else the default pipeline's (or
    $PIPELINE_FILE's) when the store holds it beside others (a scoring pipeline records its runs
    in its training pipeline's store). Several and none chosen: a DefinitionError
    that lists them, unless the command does not need one (`required=False`: an artifact named by
    id or URI), when the name is None."""
    from pipeline.errors import DefinitionError
    from pipeline.metadata import MetadataStore, connection_config, masked

    pipeline = None
    if args.pipeline or not args.pipeline_root:
        pipeline = _load_pipeline(args)
    root = args.pipeline_root or _pipeline_root(args, pipeline)
    spec = _metadata_spec(args, root, pipeline)
    kind = connection_config(spec).WhichOneof("config")
    if kind == "sqlite" and not os.path.exists(connection_config(spec).sqlite.filename_uri):
        raise LookupError(f"no runs recorded in {spec}")
    store = MetadataStore(spec, create=False)
    if args.pipeline_name:
        return store, args.pipeline_name
    if args.pipeline and pipeline is not None:
        return store, pipeline.name
    names = store.pipeline_names()
    if len(names) == 1:
        return store, names[0]
    default = (pipeline or _load_pipeline(args)).name if len(names) > 1 else None
    if default in names:
        return store, default
    if not names:
        raise LookupError(f"no runs recorded in {masked(spec)}")
    if not required:
        return store, None
    raise DefinitionError(
        f"{masked(spec)} holds {len(names)} pipelines ({', '.join(names)}); choose one with --pipeline-name NAME"
    )


def cmd_run(args) -> int:
    pipeline = _overridden(args)
    beam_args = list(args.beam_arg)
    if args.job_server:
        from pipeline.beam import portable_args

        beam_args = [*portable_args(args.job_server, args.workers), *beam_args]
    elif args.workers:
        print(
            "--workers needs --job-server: the worker pool serves a portable runner's jobs", file=sys.stderr
        )
        return EXIT_DEFINITION
    code, _ = _run_and_report(
        pipeline,
        args,
        enable_cache=not args.no_cache,
        rerun_from=args.rerun_from,
        step_worker=not args.one_process,
        beam_args=beam_args,
    )
    return code


def _run_and_report(pipeline, args, **options):
    """Runs `pipeline` as `run` does and prints its summary: (exit code, the RunResult or None)."""
    from pipeline.errors import NO_MODEL_PREFIX, Interrupted, LockHeldError
    from pipeline.local_runner import RunOptions, run_pipeline
    from pipeline.signals import stop_on_signals

    root = _pipeline_root(args, pipeline)
    run_options = RunOptions(
        pipeline_root=root,
        metadata=_metadata_spec(args, root, pipeline),
        lock_wait_seconds=args.wait,
        log=_log,
        **options,
    )
    try:
        with stop_on_signals():
            result = run_pipeline(pipeline, run_options)
    except LockHeldError as error:
        print(f"not started: {error}", file=sys.stderr)
        return EXIT_LOCKED, None
    except Interrupted as stop:
        return _interrupted(stop), None
    print()
    width = max([20, *(len(step.name) + 1 for step in result.steps)])
    print(f"{'step':<{width}} {'status':<9} {'execution':>9} {'seconds':>8}  note")
    for step in result.steps:
        execution = "" if step.execution_id is None else str(step.execution_id)
        note = (step.held_back or step.note).splitlines()[0] if step.held_back or step.note else ""
        print(f"{step.name:<{width}} {step.status:<9} {execution:>9} {step.seconds:>8.1f}  {note[:60]}")
    for step in result.steps:
        for artifact in step.outputs.values():
            if artifact.custom_properties.get("page"):
                print(f"{step.name} page: {os.path.join(artifact.uri, artifact.custom_properties['page'])}")
    print(f"run report: {result.report}")
    print(f"run {result.run_id}: {result.status} in {result.seconds:.1f} s")
    if not result.ok:
        if NO_MODEL_PREFIX in str(result.error):
            print(
                f"\nno model: {str(result.error).split(NO_MODEL_PREFIX, 1)[1].lstrip(': ')}", file=sys.stderr
            )
            return EXIT_NO_MODEL, result
        print(f"\nerror: {result.error}", file=sys.stderr)
        return EXIT_FAILED, result
    for node_id, reason in result.held_back:
        print(f"held back by {node_id}: {reason.splitlines()[0]}")
    if not result.held_back:
        for node_id, reason, run_id in result.unchanged_since:
            print(
                f"nothing new: unchanged since run {run_id}, whose {node_id} held back: {reason.splitlines()[0]}"
            )
    return (EXIT_HELD_BACK if result.held_back else 0), result


def cmd_score(args) -> int:
    """Runs a scoring pipeline (default: penguin/scoring.py): the rows of a span through the data
    gate, scored by the training pipeline's served model (or --model); prints where the CSV is."""
    from pipeline.errors import DefinitionError

    if not args.pipeline:
        args.pipeline = DEFAULT_SCORING_FILE
    pipeline = _overridden(args)
    scorers = [n for n in pipeline.nodes if n.component.name == "BulkInferrer"]
    if not scorers:
        raise DefinitionError(
            f"pipeline {pipeline.name!r} ({pipeline.source_file}) scores nothing: it has no BulkInferrer; "
            "give the scoring pipeline (`init` writes scoring.py beside pipeline.py)"
        )
    overrides: dict = {}
    if args.model is not None:
        overrides["which_model"] = _model_choice(args.model)
    if args.id_column:
        overrides["id_columns"] = tuple(args.id_column)
    pipeline.override(**overrides)
    code, result = _run_and_report(pipeline, args, enable_cache=not args.no_cache)
    if result is not None and result.ok:
        for step in result.steps_of(scorers[0].id):
            scored = step.outputs.get("inference_result")
            if scored is not None:
                print(
                    f"predictions: {os.path.join(scored.uri, scored.get('predictions_csv'))} "
                    f"({scored.get('row_count'):,} rows, span {scored.get('span_date') or scored.get('span')}, "
                    f"{scored.get('training_pipeline')!r} model version {scored.get('model_version')})"
                )
    return code


def _model_choice(text: str):
    """--model served|blessed|N|vN."""
    from pipeline.errors import DefinitionError

    if text in ("served", "blessed"):
        return text
    number = text[1:] if text[:1] == "v" else text
    if not number.isdigit():
        raise DefinitionError(f"--model {text!r}: give served, blessed, or a push version number")
    return int(number)


def cmd_backfill(args) -> int:
    """Runs every span with files from --from to --to, oldest first, each its own run of the
    pipeline for that span (`run --span S`), as a schedule would have run them: a line per span
    as it ends, then a table. The runs' own output goes to a log file under the root."""
    from components.example_gen.component import available_spans, span_text
    from pipeline.errors import Interrupted, LockHeldError
    from pipeline.local_runner import RunOptions, run_pipeline
    from pipeline.signals import stop_on_signals

    pipeline = _load_pipeline(args)
    pattern = _input_pattern(pipeline, args.data)
    first, last = _span_bound(pipeline, args.data, args.first), None
    if args.last is not None:
        last = _span_bound(pipeline, args.data, args.last)
    spans = [s for s in available_spans(pattern) if s >= first and (last is None or s <= last)]
    if not spans:
        print(
            f"error: no span from {args.first} to {args.last or 'the latest'} has files matching {pattern!r}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    root = _pipeline_root(args, pipeline)
    os.makedirs(root, exist_ok=True)
    log_path = os.path.join(root, f"backfill-{time.strftime('%Y%m%dT%H%M%S')}.log")
    print(
        f"backfill of pipeline {pipeline.name!r}: {len(spans)} span(s), {span_text(spans[0], pattern)} to "
        f"{span_text(spans[-1], pattern)}; each run's output in {log_path}"
    )
    rows, codes = [], []
    with open(log_path, "a") as log_file, stop_on_signals():

        def log(message: str) -> None:
            log_file.write(f"{time.strftime('%H:%M:%S')} {message}\n")
            log_file.flush()

        for number, span in enumerate(spans, 1):
            text = span_text(span, pattern)
            run_pipeline_for_span = _load_pipeline(args)
            overrides: dict = {"span": span, **({"input_pattern": args.data} if args.data else {})}
            if args.push_older_spans:
                overrides["push_older_spans"] = True
            run_pipeline_for_span.override(**overrides)
            options = RunOptions(
                pipeline_root=root,
                metadata=_metadata_spec(args, root, run_pipeline_for_span),
                enable_cache=not args.no_cache,
                lock_wait_seconds=args.wait,
                log=log,
            )
            print(f"[{number}/{len(spans)}] span {text} ...", end="", flush=True)
            try:
                result = run_pipeline(run_pipeline_for_span, options)
            except LockHeldError as error:
                print(f" not started: {error}")
                return EXIT_LOCKED
            except Interrupted as stop:
                print()
                return _interrupted(stop)
            row = _backfill_row(text, result)
            rows.append(row)
            codes.append(
                0
                if result.status == "COMPLETE"
                else EXIT_HELD_BACK
                if result.status == "HELD_BACK"
                else EXIT_FAILED
            )
            print(f" {row['outcome']} in {result.seconds:.1f} s, run {result.run_id}: {row['note']}")
    print()
    columns = ("span", "run", "outcome", "seconds", "model", "pushed", "note")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns[:-1]}
    print("  ".join(f"{c:<{widths[c]}}" for c in columns[:-1]) + "  note")
    for row in rows:
        print("  ".join(f"{str(row[c]):<{widths[c]}}" for c in columns[:-1]) + f"  {row['note'][:80]}")
    failed = sum(code == EXIT_FAILED for code in codes)
    held = sum(code == EXIT_HELD_BACK for code in codes)
    print(
        f"{len(rows)} run(s): {len(rows) - failed - held} complete, {held} held back, {failed} failed or blocked"
    )
    return EXIT_FAILED if failed else EXIT_HELD_BACK if held else 0


def _span_bound(pipeline, data: str | None, text: str) -> int:
    """A --from / --to value: a span number, or a date of the pipeline's dated pattern."""
    import datetime

    from pipeline.errors import DefinitionError

    if text.isdigit():
        return int(text)
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise DefinitionError(f"{text!r} is neither a span number nor a date (YYYY-MM-DD)") from None
    return _span_of_date(pipeline, data, day)


def _backfill_row(span: str, result) -> dict:
    """One line of the backfill's table: the run's outcome, its model and what became of it."""
    model = next((a for s in result.steps for k, a in s.outputs.items() if k == "model"), None)
    blessing = next((a for s in result.steps for k, a in s.outputs.items() if k == "blessing"), None)
    pushed = next((a for s in result.steps for k, a in s.outputs.items() if k == "pushed_model"), None)
    if result.error is not None:
        note = str(result.error).splitlines()[0]
    elif result.held_back:
        node, reason = result.held_back[0]
        note = f"held back by {node}: {reason.splitlines()[0]}"
    elif result.unchanged_since:
        note = f"nothing new since run {result.unchanged_since[0][2]}"
    else:
        note = (blessing.get("reason") or "").splitlines()[0] if blessing is not None else ""
    version = pushed.get("pushed_version") if pushed is not None and pushed.get("pushed") else None
    return {
        "span": span,
        "run": result.run_id,
        "outcome": result.status,
        "seconds": f"{result.seconds:.1f}",
        "model": f"#{model.id}" if model is not None else "-",
        "pushed": f"v{version}" if version else "-",
        "note": note,
    }


def _date(text: str):
    """`--date 2024-03-01` as a date; "" (a scheduler's run without a logical date) as None."""
    import datetime

    if not text.strip():
        return None
    try:
        return datetime.date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: give YYYY-MM-DD") from None


def _overridden(args):
    """The pipeline with --data, --span / --date and --push-older-spans applied."""
    pipeline = _load_pipeline(args)
    overrides = {"input_pattern": args.data} if args.data else {}
    if getattr(args, "date", None) is not None:
        overrides["span"] = _span_of_date(pipeline, args.data, args.date)
    elif args.span is not None:
        overrides["span"] = args.span
    if getattr(args, "push_older_spans", False):
        overrides["push_older_spans"] = True
    pipeline.override(**overrides)
    return pipeline


def _input_pattern(pipeline, data: str | None) -> str:
    """--data, else the input pattern of the pipeline's ExampleGen; a DefinitionError without."""
    from pipeline.errors import DefinitionError

    if data:
        return data
    patterns = [n.params.input_pattern for n in pipeline.nodes if hasattr(n.params, "input_pattern")]
    if not patterns:
        raise DefinitionError(f"pipeline {pipeline.name!r} reads no input pattern; give --data PATTERN")
    return patterns[0]


def _span_of_date(pipeline, data: str | None, day) -> int:
    """The span a date names in the pipeline's dated pattern (the month's for a monthly one)."""
    from components.example_gen.component import is_dated, span_for_date
    from pipeline.errors import DefinitionError

    pattern = _input_pattern(pipeline, data)
    if not is_dated(pattern):
        raise DefinitionError(
            f"--date needs a dated input pattern ({{YYYY}}, {{MM}}, {{DD}}); {pattern!r} numbers its "
            "spans: give --span N"
        )
    return span_for_date(pattern, day)


def cmd_step(args) -> int:
    from pipeline.errors import Interrupted, LockHeldError
    from pipeline.signals import stop_on_signals
    from pipeline.step import StepBusy, StepOptions, UpstreamNotDone, run_step

    if args.span_of_logical_date and args.date is None and args.logical_date:
        args.date = _date(args.logical_date)

    pipeline = _overridden(args)
    properties = {
        key: value
        for key, value in (("orchestrator", args.orchestrator), ("logical_date", args.logical_date))
        if value
    }
    options = StepOptions(
        pipeline_root=_pipeline_root(args, pipeline),
        run_id=args.run_id,
        metadata=_metadata_spec(args, _pipeline_root(args, pipeline), pipeline),
        enable_cache=not args.no_cache,
        beam_args=list(args.beam_arg),
        wait_seconds=args.wait,
        run_properties=properties,
        log=_log,
    )
    try:
        with stop_on_signals():
            task = run_step(pipeline, args.node, options)
    except Interrupted as stop:
        return _interrupted(stop)
    except (LockHeldError, StepBusy) as error:
        print(f"not started: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except UpstreamNotDone as error:
        print(f"not started: {error}", file=sys.stderr)
        return EXIT_FAILED
    step = task.step
    if task.run is not None:
        print(f"run report: {task.run.report}")
        print(f"run {task.run.run_id}: {task.run.status}")
    if step.status == "FAILED":
        from pipeline.errors import NO_MODEL_PREFIX

        if NO_MODEL_PREFIX in step.note:
            print(f"\nno model: {step.note.split(NO_MODEL_PREFIX, 1)[1].lstrip(': ')}", file=sys.stderr)
            return EXIT_NO_MODEL
        print(f"\nerror: {step.node_id} failed (execution {step.execution_id}): {step.note}", file=sys.stderr)
        return EXIT_FAILED
    if step.status == "BLOCKED":
        print(f"\n{step.node_id} stopped the run: {step.note.splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{step.node_id}: {step.status} (execution {step.execution_id})")
    if step.held_back_in:
        print(
            f"nothing new: unchanged since run {step.held_back_in}, which held back: {step.held_back.splitlines()[0]}"
        )
    elif step.held_back:
        print(f"held back by {step.node_id}: {step.held_back.splitlines()[0]}")
        return EXIT_HELD_BACK
    return 0


def cmd_export(args) -> int:
    from pipeline.export import ExportSettings, export_pipeline

    pipeline = _load_pipeline(args)
    pipeline.validate()  # a definition error is refused here, as `run` refuses it
    project_dir = os.path.abspath(args.project_dir or REPO_ROOT)

    def inside_project(path: str) -> str:  # relative to the project, so the file travels with it
        path = os.path.abspath(path)
        return os.path.relpath(path, REPO_ROOT) if path.startswith(REPO_ROOT + os.sep) else path

    settings = ExportSettings(
        pipeline_file=inside_project(args.pipeline or DEFAULT_PIPELINE_FILE),
        pipeline_root=args.pipeline_root or "",
        metadata=args.metadata or "",
        project_dir=project_dir,
        python=args.python or inside_project(sys.executable),
        image=args.image,
        schedule=args.schedule,
        operator=args.operator,
        metadata_conn=args.metadata_conn,
        retries=args.retries,
        retry_delay_seconds=args.retry_delay,
    )
    try:
        path = export_pipeline(pipeline, args.target, settings, args.out)
    except ValueError as error:
        print(f"not exported: {error}", file=sys.stderr)
        return EXIT_DEFINITION
    print(
        f"wrote {path}: {args.target} {'DAG' if args.target == 'airflow' else 'pipeline'} "
        f"{pipeline.name!r} with {len(pipeline.nodes)} tasks"
    )
    return 0


def cmd_init(args) -> int:
    from scaffold import InitError, init_project

    try:
        project = init_project(
            args.directory, args.data, args.label, task=args.task, name=args.name, log=_log_err
        )
    except InitError as error:
        print(f"init: {error}", file=sys.stderr)
        return EXIT_DEFINITION
    print(project.summary())
    return 0


def cmd_infer_schema(args) -> int:
    """Runs ExampleGen -> StatisticsGen -> SchemaGen on the pipeline's data (or --data) under
    <pipeline-root>/infer-schema and prints the inferred schema on stdout; what it decided, and
    the progress, go to stderr."""
    from scaffold import InitError, infer_schema_for

    pipeline = _load_pipeline(args)
    example_gen = next((n for n in pipeline.nodes if n.component.name == "ExampleGen"), None)
    if example_gen is None and not args.data:
        print(f"pipeline {pipeline.name!r} has no ExampleGen; give --data PATTERN", file=sys.stderr)
        return EXIT_DEFINITION
    settings = dict(vars(example_gen.params)) if example_gen else {}
    settings.update({k: v for k, v in (("input_pattern", args.data), ("span", args.span)) if v is not None})
    settings["window"] = None  # the one span: inference reads that span's every split
    root = os.path.join(_pipeline_root(args, pipeline), "infer-schema")
    try:
        inferred = infer_schema_for(settings, root, log=_log_err)
    except InitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    for line in inferred.explanation:
        print(line, file=sys.stderr)
    sys.stdout.write(inferred.text)
    return 0


def _reading(args):
    """(store, pipeline name) for a read-only command, or None after printing why not."""
    try:
        return _store_and_pipeline_name(args)
    except LookupError as error:
        print(error)
        return None


def cmd_runs(args) -> int:
    import json

    from pipeline.history import folded, runs, spans_text

    found = _reading(args)
    if found is None:
        return 0
    store, name = found
    records = runs(store, name, args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    if not records:
        print(f"no runs of pipeline {name!r} recorded in {store.name}")
    for entry in records if args.steps else folded(records):
        if isinstance(entry, list):  # runs that changed nothing, one line for all
            newest, oldest = entry[0], entry[-1]
            print(
                f"{len(entry)} runs with nothing new, {_when(oldest.started)} to {_when(newest.started)} "
                f"({oldest.run_id} ... {newest.run_id}): every step CACHED"
            )
            continue
        record = entry
        seconds = "" if record.seconds is None else f"{record.seconds:.1f} s"
        spans = f"span {record.spans[0]}" if len(record.spans) == 1 else f"spans {spans_text(record.spans)}"
        facts = [spans if record.spans else ""]
        if record.headline:
            facts.append(f"{record.headline[0]} {record.headline[1]:.4f}")
        if record.pushed_version:
            facts.append(f"pushed version {record.pushed_version}")
        facts = [f for f in facts if f]
        print(
            f"run {record.run_id}  {record.status:<11} started {_when(record.started)}  {seconds}  {'; '.join(facts)}"
        )
        if args.steps or record.status not in ("COMPLETE", "HELD_BACK"):
            width = max([18, *(len(step.name) for step in record.steps)])
            for step in record.steps:
                note = step.note.splitlines()[0][:70] if step.note else ""
                print(
                    f"    {step.name:<{width}} {step.state:<9} execution {step.execution_id:<5} {step.seconds:6.1f} s  {note}"
                )
    return 0


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def cmd_models(args) -> int:
    import json

    from pipeline.history import History, parse_time, spans_text

    found = _reading(args)
    if found is None:
        return 0
    store, name = found
    history = History(store)
    if args.served_at:
        try:
            push = history.served_at(name, parse_time(args.served_at))
        except ValueError as error:
            print(f"--served-at: {error}", file=sys.stderr)
            return EXIT_DEFINITION
        if push is None:
            print(
                f"no model of pipeline {name!r} was served at {args.served_at} (nothing pushed before then)"
            )
            return 0
        print(
            f"at {args.served_at}: version {push.version} of {push.destination}, model #{push.model_id}, pushed "
            f"{_when(push.pushed_at)} by run {push.run_id}"
            + (" (its files since removed by gc)" if push.deleted else "")
            + ("; serving now" if push.serving else "")
        )
        if push.headline:
            print(f"    {push.headline}")
        return 0
    records = history.models(name)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    if not records:
        print(f"no models of pipeline {name!r} recorded in {store.name}")
    if args.metric:
        return _trend(records, args.metric)
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        metric = _evaluated(r.blessing) or _trained(r.model)
        if r.blessing is None:
            verdict = "not evaluated"
        else:
            verdict = "BLESSED" if r.blessed else "NOT BLESSED"
        versions = r.versions
        pushed = f"pushed as version {', '.join(map(str, versions))}" if versions else "not pushed"
        if r.serving:
            pushed += " (serving)"
        spans = f"span {r.spans[0]}" if len(r.spans) == 1 else f"spans {spans_text(r.spans)}"
        deleted = "  DELETED (removed by gc; the store keeps its record)" if r.deleted else ""
        print(
            f"model #{r.model.id}  {created}  run {r.run_id}  {spans}  {metric}  {verdict}  {pushed}{deleted}"
        )
        reason = r.blessing.get("reason") if r.blessing is not None else None
        if reason and not args.brief:
            print("    " + "\n    ".join(str(reason).splitlines()))
    return 0


def _trend(records, metric: str) -> int:
    """`models --metric NAME`: the metric across the models, oldest first, with a bar each."""
    rows = [(r, r.metric(metric)) for r in reversed(records)]
    values = [v for _, v in rows if v is not None]
    if not values:
        known = sorted({m for r, _ in rows for m in r.metrics})
        print(
            f"no model has metric {metric!r}; the Evaluator's metrics: {', '.join(known) or 'none recorded'}"
        )
        return EXIT_FAILED
    low, high = min(values), max(values)
    print(f"{metric} of {len(values)} model(s), oldest first; B blessed, - not blessed, . not evaluated")
    for r, value in rows:
        mark = "." if r.blessed is None else ("B" if r.blessed else "-")
        if value is None:
            print(f"  {mark} model #{r.model.id:<5} {'-':>10}")
            continue
        bar = "#" * (1 + round(29 * (value - low) / (high - low))) if high > low else "#" * 15
        versions = f"  v{', v'.join(map(str, r.versions))}" if r.versions else ""
        print(
            f"  {mark} model #{r.model.id:<5} {value:>10.4f}  {bar:<30}{versions}{'  DELETED' if r.deleted else ''}"
        )
    return 0


def cmd_pushes(args) -> int:
    """The push history of the pipeline's destination: version, time, model, what it replaced, why."""
    import json

    from pipeline.history import pushes

    found = _reading(args)
    if found is None:
        return 0
    store, name = found
    records = pushes(store, name, args.destination)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    if not records:
        print(
            f"pipeline {name!r} has pushed nothing" + (f" to {args.destination}" if args.destination else "")
        )
    for push in records:
        state = "  SERVING" if push.serving else ("  (files removed by gc)" if push.deleted else "")
        replaced = f"replaced version {push.replaced}" if push.replaced else "the first version"
        print(
            f"version {push.version}  {_when(push.pushed_at)}  model #{push.model_id}  run {push.run_id}  {replaced}{state}"
        )
        print(f"    {push.destination}/{push.version}")
        if push.reason:
            print(f"    {push.reason}" + (f"; {push.headline}" if push.headline else ""))
    return 0


def _evaluated(blessing) -> str | None:
    """The Evaluator's headline metric of a model, in the label's units, beside the trivial
    baseline's: "accuracy 0.9737 (trivial 0.4474)"; None if it was not evaluated."""
    for metric in ("accuracy", "root_mean_squared_error"):
        value = blessing.get(metric) if blessing is not None else None
        if isinstance(value, float):
            trivial = blessing.get(f"trivial_{metric}")
            beside = f" (trivial {trivial:.4f})" if isinstance(trivial, float) else ""
            return f"{metric} {value:.4f}{beside}"
    return None


def _trained(model) -> str:
    value = model.get("best_metric_value")
    if isinstance(value, float):
        return f"trainer {model.get('best_metric')} {value:.4f} at step {model.get('best_step')}"
    return f"trained to step {model.get('last_step')}"


def cmd_gc(args) -> int:
    from pipeline.retention import Retention, collect

    found = _reading(args)
    if found is None:
        return 0
    store, name = found
    pipeline = _load_pipeline(args)
    base = pipeline.retention or Retention()
    retention = Retention(
        keep_runs=args.keep_runs or base.keep_runs, keep_pushed=args.keep_pushed or base.keep_pushed
    )
    root = os.path.abspath(_pipeline_root(args, pipeline))
    collection = collect(store, name, root, retention, apply=args.apply, log=lambda m: None)
    print(
        f"pipeline {name!r} on {root}: keeping the last {retention.keep_runs} run(s) and {retention.keep_pushed} pushed version(s)"
    )
    print("\n".join(collection.lines()))
    if not args.apply and (collection.artifacts or collection.reports or collection.pushed_versions):
        print("a dry run: nothing was removed; run again with --apply to remove them")
    return 0


def _resolve_ref(store, pipeline_name: str, ref: str):
    """An artifact from an id, a URI, `latest` / `vN` (pushed models of the pipeline)."""
    from pipeline.history import latest_pushed
    from pipeline.lineage import find_artifact

    if ref == "latest":
        return latest_pushed(store, pipeline_name)
    if ref[:1] == "v" and ref[1:].isdigit():
        return latest_pushed(store, pipeline_name, int(ref[1:]))
    return find_artifact(store, ref)


def cmd_lineage(args) -> int:
    import json

    from pipeline.lineage import format_lineage, lineage, to_json

    if args.downstream:
        return _impact(args)
    ref = args.artifact or (args.pushed if args.pushed in (None, "latest") else f"v{args.pushed}")
    if ref is None:
        print("name an artifact id or URI, or --pushed latest|VERSION", file=sys.stderr)
        return EXIT_DEFINITION
    try:
        store, name = _store_and_pipeline_name(args, required=ref == "latest" or ref.startswith("v"))
        tree = lineage(store, _resolve_ref(store, name, ref))
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(to_json(tree), indent=2, default=str) if args.json else "\n".join(format_lineage(tree)))
    return 0


def _impact(args) -> int:
    """`lineage --downstream REF`: everything built from REF, across the store's pipelines and roots."""
    import json

    from pipeline.lineage import downstream, format_impact, impact_json, starting_points

    try:
        store, name = _store_and_pipeline_name(args, required=False)
        impact = downstream(store, starting_points(store, args.downstream, args.pipeline_name))
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    print(
        json.dumps(impact_json(impact), indent=2, default=str)
        if args.json
        else "\n".join(format_impact(impact))
    )
    return 0


def cmd_diff(args) -> int:
    from pipeline.lineage import diff, headlines, lineage
    from pipeline.text import shorten

    try:
        named = any(
            ref == "latest" or (ref[:1] == "v" and ref[1:].isdigit()) for ref in (args.first, args.second)
        )
        store, name = _store_and_pipeline_name(args, required=named)
        first, second = (_resolve_ref(store, name, ref) for ref in (args.first, args.second))
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    trees = lineage(store, first), lineage(store, second)
    differences = diff(*trees)
    print(
        f"{first.TYPE_NAME} #{first.id} vs {second.TYPE_NAME} #{second.id}: {len(differences)} difference(s)"
    )
    for label, tree in zip((args.first, args.second), trees):
        for line in headlines(tree):
            print(f"  {label}: {line}")

    def shown(value) -> str:
        return shorten(" / ".join(str(value).splitlines()) if value is not None else None, 160, "(none)")

    for key, a, b in differences:
        print(f"  {key}\n    {shown(a)}\n    {shown(b)}")
    return 0


def cmd_ui(args) -> int:
    """`ui`: the history browser on the store's pipelines, read-only, until Ctrl-C (then 0)."""
    from pipeline.ui import serve

    try:
        store, name = _store_and_pipeline_name(args, required=False)
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    spec = store.spec
    del store  # the browser opens it again, read-only
    return serve(spec, name, host=args.host, port=args.port, log=lambda line: print(line, flush=True))


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _log_err(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _interrupted(stop) -> int:
    """One line for a run (or step) a signal stopped, and 128 + the signal's number."""
    result = stop.result
    stopped = next((s for s in result.steps if s.status == "FAILED"), None) if result else None
    where = (
        f"{stopped.node_id} stopped (execution {stopped.execution_id}; what it staged removed), "
        f"the next run starts again there"
        if stopped
        else "between steps"
    )
    run = f"run {result.run_id} INTERRUPTED" if result else "INTERRUPTED"
    print(f"{run} by {stop.signal_name}: {where}", file=sys.stderr)
    return stop.exit_code


def _reader_gone() -> int:
    """The reader of our output went away (`| head`): nothing more to say, and nowhere to say it
    (the rest of what was buffered goes to /dev/null, so the exit is quiet)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()  # buffered output meets a closed pipe here, if anywhere
    except BrokenPipeError:
        code = _reader_gone()
    sys.exit(code)
