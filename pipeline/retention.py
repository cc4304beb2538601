"""Retention: what a pipeline root keeps, so that a job that runs forever uses bounded disk.

Kept: the artifacts in the lineage of the last `keep_runs` runs of the root (their inputs and
outputs, and everything upstream), the reports of those runs (and the last full report), the
last `keep_pushed` pushed versions in the serving directory with their lineage (the served model,
the newest, always), and every kept Model's blessings and evaluations (the next run's baseline and
cache lookups find them). Everything else of the root is removable: its files are deleted and MLMD is
told (the artifact's state becomes DELETED, as TFX marks it), so no cache hit and no lineage query
relies on it. Another root's artifacts are never considered.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.metadata import MetadataStore, custom, flat

REPORTS_DIR = "reports"


@dataclass(frozen=True)
class Retention:
    """keep_runs: runs whose reports and artifacts are kept; keep_pushed: pushed versions kept in
    the serving directory (at least 1: the served model)."""

    keep_runs: int = 10
    keep_pushed: int = 3

    def __post_init__(self):
        from pipeline.errors import DefinitionError

        if self.keep_runs < 1 or self.keep_pushed < 1:
            raise DefinitionError(
                f"Retention: keep_runs and keep_pushed must be at least 1, got {self.keep_runs} and {self.keep_pushed}"
            )


@dataclass
class Collection:
    """What a collection found, or removed when applied."""

    artifacts: list = field(default_factory=list)  # (artifact, bytes)
    reports: list = field(default_factory=list)  # (path, bytes)
    pushed_versions: list = field(default_factory=list)  # (directory, bytes)
    applied: bool = False

    @property
    def bytes(self) -> int:
        return sum(size for *_, size in (*self.artifacts, *self.reports, *self.pushed_versions))

    def lines(self) -> list[str]:
        verb = "removed" if self.applied else "would remove"
        return [
            f"{verb} {len(self.artifacts)} artifact(s), {len(self.reports)} report(s) and "
            f"{len(self.pushed_versions)} pushed version(s): {self.bytes / 1e6:.1f} MB",
            *(f"  {a.TYPE_NAME} #{a.id} {a.uri} ({size / 1e6:.2f} MB)" for a, size in self.artifacts),
            *(f"  report {path}" for path, _ in self.reports),
            *(f"  pushed version {path}" for path, _ in self.pushed_versions),
        ]


def collect(
    store: MetadataStore,
    pipeline_name: str,
    root: str,
    retention: Retention,
    apply: bool = False,
    log: Callable[[str], None] = print,
) -> Collection:
    """Finds (and with `apply`, removes) what `retention` does not keep on `root`."""
    from pipeline.artifacts import PushedModel

    root = os.path.abspath(root)
    runs = [r for r in store.pipeline_runs(pipeline_name) if custom(r, "pipeline_root") == root]
    kept_runs = runs[: retention.keep_runs]
    needed: set[int] = set()
    for run in kept_runs:
        for execution in store.mlmd.get_executions_by_context(run.id):
            for artifact in flat(
                [*store.inputs_of(execution.id).values(), *store.outputs_of(execution.id).values()]
            ):
                needed |= _upstream(store, artifact)
    pushes = sorted(
        (
            p
            for p in store.live_artifacts(PushedModel, pipeline_name)
            if p.get("pushed") and _under(p.uri, root)
        ),
        key=lambda p: (p.pushed_version(), p.id),
        reverse=True,
    )
    kept_versions = {p.pushed_version() for p in pushes[: retention.keep_pushed]}
    for pushed in pushes:
        if pushed.pushed_version() in kept_versions:
            needed |= _upstream(store, pushed)
    needed |= _evaluations_of_models(store, pipeline_name, needed)
    found = Collection(applied=apply)
    for artifact in _live_of_root(store, pipeline_name, root):
        if artifact.id not in needed:
            found.artifacts.append((artifact, _size(artifact.uri)))
    kept_reports = {custom(r, "report") for r in kept_runs} | _last_full_report(runs)
    for run in runs[retention.keep_runs :]:
        report = custom(run, "report")
        if report and report not in kept_reports and os.path.exists(report):
            found.reports.append((report, os.path.getsize(report)))
    removed_versions = {
        p.get("pushed_destination") for p in pushes if p.pushed_version() not in kept_versions
    }
    for directory in sorted(d for d in removed_versions if d and os.path.isdir(d)):
        found.pushed_versions.append((directory, _size(directory)))
    if apply:
        _remove(store, found, log)
    return found


def _remove(store: MetadataStore, found: Collection, log: Callable[[str], None]) -> None:
    from ml_metadata.proto import metadata_store_pb2 as pb

    for artifact, _ in found.artifacts:
        [proto] = store.mlmd.get_artifacts_by_id([artifact.id])
        proto.state = pb.Artifact.DELETED
        store.mlmd.put_artifacts([proto])  # first MLMD, then the files: never LIVE without them
        shutil.rmtree(artifact.uri, ignore_errors=True)
    for path, _ in found.reports:
        os.remove(path)
    for directory, _ in found.pushed_versions:
        shutil.rmtree(directory, ignore_errors=True)
    if found.artifacts or found.reports or found.pushed_versions:
        log(found.lines()[0])


def _evaluations_of_models(store: MetadataStore, pipeline_name: str, needed: set[int]) -> set[int]:
    """Every kept Model's blessings and the evaluations beside them: what the next run's baseline
    resolution (the latest blessed model) and the Evaluator's cache lookup find, so that a run
    with nothing new after gc is still all CACHED, against the same baseline."""
    from pipeline.artifacts import ModelBlessing

    found: set[int] = set()
    for blessing in store.live_artifacts(ModelBlessing, pipeline_name):
        if blessing.get("current_model_id") not in needed:
            continue
        producer = store.producer_of(blessing.stored_id)
        siblings = store.outputs_of(producer.id).values() if producer else [blessing]
        found.update(a.stored_id for a in siblings)
    return found


def _upstream(store: MetadataStore, artifact) -> set[int]:
    from pipeline.lineage import lineage, walk

    ids: set[int] = set()
    for node, _ in walk(lineage(store, artifact)):
        ids.add(node.artifact.stored_id)
        ids.update(check.stored_id for check in node.checks)
    return ids


def _live_of_root(store: MetadataStore, pipeline_name: str, root: str) -> list:
    from pipeline.artifacts import ARTIFACT_TYPES

    found = []
    for cls in ARTIFACT_TYPES.values():
        found += [a for a in store.live_artifacts(cls, pipeline_name) if _under(a.uri, root)]
    return found


def _last_full_report(runs) -> set[str]:
    full = [custom(r, "report") for r in runs if custom(r, "report_full") == 1 and custom(r, "report")]
    return set(full[:1])


def _under(path: str, root: str) -> bool:
    return os.path.abspath(path).startswith(root + os.sep)


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
