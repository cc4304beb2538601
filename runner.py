#!/usr/bin/env python3
"""The command line: run the pipeline, list runs and models, trace and compare lineage.

    python runner.py run [--span N] [--data PATTERN] [--no-cache] [--beam-arg=FLAG ...] [--wait SECONDS]
    python runner.py runs [--limit N]
    python runner.py models
    python runner.py lineage ARTIFACT_ID_OR_URI | --pushed latest|VERSION [--json]
    python runner.py diff MODEL_A MODEL_B          (ids, URIs, or vN for pushed version N)
    python runner.py infer-schema [--data PATTERN] [--span N]

Global flags (before the command): --pipeline-root DIR, --metadata PATH_OR_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ROOT = os.path.join(REPO_ROOT, "runs", "penguin")

EXIT_FAILED, EXIT_LOCKED, EXIT_DEFINITION = 1, 75, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pipeline-root",
        default=os.environ.get("PIPELINE_ROOT", DEFAULT_ROOT),
        help="where artifacts go (default: runs/penguin, or $PIPELINE_ROOT)",
    )
    parser.add_argument(
        "--metadata",
        default=os.environ.get("PIPELINE_METADATA"),
        help="MLMD store: a sqlite path or a postgresql:// or mysql:// URL "
        "(default: <pipeline-root>/metadata.sqlite, or $PIPELINE_METADATA)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline")
    run.add_argument("--span", type=int, help="the span to ingest (default: the latest)")
    run.add_argument("--data", help="input pattern with {SPAN}, e.g. 'data/penguins/span-{SPAN}/*.csv'")
    run.add_argument("--no-cache", action="store_true", help="run every step, even if unchanged")
    run.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="a Beam pipeline option, repeatable: --beam-arg=--runner=FlinkRunner",
    )
    run.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run on the same root to finish (default: refuse)",
    )
    run.set_defaults(command=cmd_run)

    listing = commands.add_parser("runs", help="list past runs and their steps")
    listing.add_argument("--limit", type=int, default=10)
    listing.set_defaults(command=cmd_runs)

    infer = commands.add_parser(
        "infer-schema", help="print a schema inferred from a span (a start for a curated one)"
    )
    infer.add_argument("--span", type=int, help="the span to read (default: the latest)")
    infer.add_argument("--data", help="input pattern with {SPAN} (default: the embedded data)")
    infer.set_defaults(command=cmd_infer_schema)

    models = commands.add_parser("models", help="every model trained, newest first, with blessing and push")
    models.set_defaults(command=cmd_models)

    lineage = commands.add_parser("lineage", help="where an artifact came from, as a tree")
    lineage.add_argument("artifact", nargs="?", help="an artifact id or URI")
    lineage.add_argument("--pushed", metavar="latest|VERSION", help="the model pushed last, or push VERSION")
    lineage.add_argument("--json", action="store_true", help="the same tree as JSON, for programs")
    lineage.set_defaults(command=cmd_lineage)

    diff = commands.add_parser("diff", help="what differs in the lineage of two models")
    diff.add_argument("first", help="a model id or URI, or vN for pushed version N")
    diff.add_argument("second", help="a model id or URI, or vN for pushed version N")
    diff.set_defaults(command=cmd_diff)
    return parser


def _metadata_spec(args) -> str:
    return args.metadata or os.path.join(args.pipeline_root, "metadata.sqlite")


def cmd_run(args) -> int:
    from penguin.pipeline import DATA_PATTERN, create_pipeline
    from pipeline.errors import DefinitionError, LockHeldError, RunBlocked
    from pipeline.local_runner import RunOptions, run_pipeline

    pipeline = create_pipeline(input_pattern=args.data or DATA_PATTERN, span=args.span)
    options = RunOptions(
        pipeline_root=args.pipeline_root,
        metadata=args.metadata,
        enable_cache=not args.no_cache,
        beam_args=args.beam_arg,
        lock_wait_seconds=args.wait,
        log=_log,
    )
    try:
        result = run_pipeline(pipeline, options)
    except DefinitionError as error:
        print(f"pipeline definition error: {error}", file=sys.stderr)
        return EXIT_DEFINITION
    except LockHeldError as error:
        print(f"not started: {error}", file=sys.stderr)
        return EXIT_LOCKED
    print()
    print(f"{'step':<20} {'status':<9} {'execution':>9} {'seconds':>8}  note")
    for step in result.steps:
        execution = "" if step.execution_id is None else str(step.execution_id)
        note = step.note.splitlines()[0] if step.note else ""
        print(f"{step.node_id:<20} {step.status:<9} {execution:>9} {step.seconds:>8.1f}  {note[:60]}")
    for step in result.steps:
        for artifact in step.outputs.values():
            if artifact.custom_properties.get("page"):
                print(
                    f"{step.node_id} page: {os.path.join(artifact.uri, artifact.custom_properties['page'])}"
                )
    print(f"run report: {result.report}")
    status = "COMPLETE" if result.ok else "BLOCKED" if isinstance(result.error, RunBlocked) else "FAILED"
    print(f"run {result.run_id}: {status} in {result.seconds:.1f} s")
    if not result.ok:
        print(f"\nerror: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_infer_schema(args) -> int:
    """Runs ExampleGen -> StatisticsGen -> SchemaGen under <pipeline-root>/infer-schema and prints
    the inferred schema on stdout (progress goes to stderr)."""
    from components.schema_gen import SCHEMA_FILE
    from penguin.pipeline import DATA_PATTERN, create_schema_pipeline
    from pipeline.local_runner import RunOptions, run_pipeline

    pipeline = create_schema_pipeline(input_pattern=args.data or DATA_PATTERN, span=args.span)
    root = os.path.join(args.pipeline_root, "infer-schema")
    result = run_pipeline(pipeline, RunOptions(pipeline_root=root, log=lambda m: print(m, file=sys.stderr)))
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    schema = result.step("SchemaGen").outputs["schema"]
    with open(os.path.join(schema.uri, SCHEMA_FILE)) as f:
        sys.stdout.write(f.read())
    return 0


def cmd_runs(args) -> int:
    from penguin.pipeline import PIPELINE_NAME
    from pipeline.history import runs
    from pipeline.metadata import MetadataStore

    records = runs(MetadataStore(_metadata_spec(args)), PIPELINE_NAME, args.limit)
    if not records:
        print(f"no runs recorded in {_metadata_spec(args)}")
    for record in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started))
        seconds = "" if record.seconds is None else f"{record.seconds:.1f} s"
        print(f"run {record.run_id}  {record.status:<11} started {started}  {seconds}")
        for step in record.steps:
            note = step.note.splitlines()[0][:70] if step.note else ""
            print(
                f"    {step.node_id:<18} {step.state:<9} execution {step.execution_id:<5} {step.seconds:6.1f} s  {note}"
            )
    return 0


def cmd_models(args) -> int:
    from penguin.pipeline import PIPELINE_NAME
    from pipeline.history import models
    from pipeline.metadata import MetadataStore

    records = models(MetadataStore(_metadata_spec(args)), PIPELINE_NAME)
    if not records:
        print(f"no models recorded in {_metadata_spec(args)}")
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        metric = f"{r.model.get('best_metric')} {r.model.get('best_metric_value', float('nan')):.4f} at step {r.model.get('best_step')}"
        if r.blessing is None:
            verdict = "not evaluated"
        else:
            verdict = "BLESSED" if r.blessing.get("blessed") else "NOT BLESSED"
        pushed = (
            f"pushed as version {r.pushed.get('pushed_version')}"
            if r.pushed and r.pushed.get("pushed")
            else "not pushed"
        )
        print(f"model #{r.model.id}  {created}  run {r.run_id}  span {r.span}  {metric}  {verdict}  {pushed}")
        reason = r.blessing.get("reason") if r.blessing is not None else None
        if reason:
            print("    " + "\n    ".join(str(reason).splitlines()))
    return 0


def _resolve_ref(store, ref: str):
    """An artifact from an id, a URI, `latest` / `vN` (pushed models)."""
    from penguin.pipeline import PIPELINE_NAME
    from pipeline.history import latest_pushed
    from pipeline.lineage import find_artifact

    if ref == "latest":
        return latest_pushed(store, PIPELINE_NAME)
    if ref[:1] == "v" and ref[1:].isdigit():
        return latest_pushed(store, PIPELINE_NAME, int(ref[1:]))
    return find_artifact(store, ref)


def cmd_lineage(args) -> int:
    import json

    from pipeline.lineage import format_lineage, lineage, to_json
    from pipeline.metadata import MetadataStore

    store = MetadataStore(_metadata_spec(args))
    ref = args.artifact or (args.pushed if args.pushed in (None, "latest") else f"v{args.pushed}")
    if ref is None:
        print("name an artifact id or URI, or --pushed latest|VERSION", file=sys.stderr)
        return EXIT_DEFINITION
    try:
        tree = lineage(store, _resolve_ref(store, ref))
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(to_json(tree), indent=2, default=str) if args.json else "\n".join(format_lineage(tree)))
    return 0


def cmd_diff(args) -> int:
    from pipeline.lineage import diff, lineage
    from pipeline.metadata import MetadataStore

    store = MetadataStore(_metadata_spec(args))
    try:
        first, second = (_resolve_ref(store, ref) for ref in (args.first, args.second))
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    differences = diff(lineage(store, first), lineage(store, second))
    print(
        f"{first.TYPE_NAME} #{first.id} vs {second.TYPE_NAME} #{second.id}: {len(differences)} difference(s)"
    )
    for key, a, b in differences:
        print(f"  {key}\n    {_short(a)}\n    {_short(b)}")
    return 0


def _short(value) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
