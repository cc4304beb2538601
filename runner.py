#!/usr/bin/env python3
"""The command line: run the penguin pipeline, list past runs, trace an artifact's lineage.

python runner.py run [--pipeline-root DIR] [--metadata PATH_OR_URL] [--span N] [--no-cache]
                     [--data PATTERN] [--beam-arg=--runner=FlinkRunner ...] [--wait SECONDS]
python runner.py runs [--limit N]
python runner.py lineage ARTIFACT_ID_OR_URI
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

    lineage = commands.add_parser("lineage", help="where an artifact came from")
    lineage.add_argument("artifact", help="an artifact id or URI")
    lineage.set_defaults(command=cmd_lineage)
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


def cmd_lineage(args) -> int:
    from pipeline.history import find_artifact, format_lineage, lineage
    from pipeline.metadata import MetadataStore

    store = MetadataStore(_metadata_spec(args))
    try:
        artifact = find_artifact(store, args.artifact)
    except LookupError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(format_lineage(lineage(store, artifact))))
    return 0


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
