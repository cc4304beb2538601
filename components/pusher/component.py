"""Pusher: copies a blessed model that passes a smoke check to a serving directory in TF Serving's
layout, `<destination>/<model_name>/<version>/`, atomically, with versions that only increase."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import (
    Component,
    DefinitionError,
    ExecutionContext,
    InputArtifact,
    OutputArtifact,
    UserInputError,
)
from pipeline.artifacts import SERVING_DIR, STAGING_PREFIX, Examples, Model, ModelBlessing, PushedModel
from pipeline.cache import directory_content_sha256
from pipeline.text import close_to_others

RECORD_FILE = "push_record.json"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
STALE_STAGING_SECONDS = 3600
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SMOKE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smoke.py")


@dataclass(frozen=True)
class PusherParams:
    """push_destination: the serving base directory (default `<pipeline_root>/serving`); the model
    lands in `<push_destination>/<model_name>/<version>/` (model_name: default the pipeline's
    name). The smoke check feeds `smoke_examples` (at least 1) raw examples of `split`, without
    `label_key` (default: the label the Trainer recorded on the Model), to `serving_default` in
    a fresh process, and gives up after `smoke_timeout_seconds`. A model that fails it is not
    pushed, and the run ends HELD_BACK.
    push_older_spans: a model whose newest span is older than the served model's (a backfill,
    a rerun of an old span) is not pushed unless this is True (`run --push-older-spans`): the run
    ends HELD_BACK saying so, and the served model stays."""

    push_destination: str | None = None
    model_name: str | None = None
    label_key: str | None = None
    split: str = "eval"
    smoke_examples: int = 8
    smoke_timeout_seconds: float = 300.0
    push_older_spans: bool = False

    def __post_init__(self):
        if self.smoke_examples < 1:
            raise DefinitionError(
                f"Pusher: smoke_examples must be at least 1, got {self.smoke_examples}: the smoke check "
                "is what keeps a model that cannot serve from replacing the served one"
            )
        if self.model_name is not None and not _MODEL_NAME.match(self.model_name):
            raise DefinitionError(
                f"Pusher: model_name {self.model_name!r} becomes a folder name; use letters, digits, '_', '-', '.'"
            )


def run_pusher(
    ctx: ExecutionContext,
    params: PusherParams,
    model: InputArtifact[Model],
    blessing: InputArtifact[ModelBlessing],
    examples: InputArtifact[list[Examples]],
    pushed_model: OutputArtifact[PushedModel],
) -> None:
    if blessing.get("current_model_id") != model.id:
        raise UserInputError(
            f"the blessing {blessing.id} is for model {blessing.get('current_model_id')}, not model {model.id}; "
            "give the Pusher the Evaluator's blessing of the same model it pushes"
        )
    model_dir = os.path.join(
        params.push_destination or os.path.join(ctx.pipeline_root, "serving"),
        params.model_name or ctx.pipeline_name,
    )
    pushed_model.custom_properties["model_id"] = model.stored_id
    if not blessing.get("blessed"):
        failed = [line for line in blessing.get("reason", "").splitlines() if line.startswith("FAIL")]
        ctx.log(
            f"not pushed: model {model.id} is not blessed ({'; '.join(failed) or 'see the blessing'}); "
            f"{model_dir} left unchanged"
        )
        _record(pushed_model, "not_blessed", "", 0, reason=blessing.get("reason", "not blessed"))
        return
    serving = os.path.join(model.uri, SERVING_DIR)
    fingerprint = directory_content_sha256(serving)
    for name in foreign_versions(model_dir):
        ctx.warn(
            f"{model_dir}/{name} was not written by this Pusher (no push record): the next version is "
            "numbered after it, and TF Serving serves the highest; remove it if it is not yours"
        )
    latest = latest_version(model_dir)
    spans = model_spans(model, examples)
    served_spans = _recorded(model_dir, latest).get("spans") or []
    if spans and served_spans and max(spans) < max(served_spans) and not params.push_older_spans:
        why = (
            f"model {model.id} learned from spans up to {_span_shown(max(spans), examples)}, older than "
            f"the newest span of the served version {latest} ({_span_shown(max(served_spans), examples)})"
        )
        ctx.log(f"not pushed: {why}; {model_dir} left unchanged")
        _record(pushed_model, "older_than_served", "", 0, reason=why)
        ctx.hold_back(f"{why}; not pushed (run with --push-older-spans to replace the served model)")
        return
    if latest and served_fingerprint(model_dir, latest) == fingerprint:
        ctx.log(
            f"model {model.id} is already served as version {latest} ({model_dir}/{latest}); nothing pushed"
        )
        _record(
            pushed_model,
            "already_pushed",
            os.path.join(model_dir, str(latest)),
            latest,
            fingerprint=fingerprint,
        )
        return
    label_key = params.label_key or model.custom_properties.get("label_key", "")
    newest = max(examples, key=lambda e: (e.get("span") or 0, e.id or 0))
    passed, detail = smoke_check(serving, newest.split_uri(params.split), label_key, params)
    if not passed:
        ctx.log(
            f"not pushed: the smoke check of model {model.id} failed: {detail}; {model_dir} left unchanged"
        )
        _record(pushed_model, "smoke_check_failed", "", 0, reason=f"smoke check failed: {detail}")
        ctx.hold_back(f"model {model.id} was not pushed: its smoke check failed: {detail}")
        return
    record = {
        "model_id": model.id,
        "model_uri": model.uri,
        "blessing_id": blessing.id,
        "fingerprint": fingerprint,
        "pipeline": ctx.pipeline_name,
        "run_id": ctx.run_id,
        "execution_id": ctx.execution_id,
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spans": spans,
    }
    version = push(serving, model_dir, record)
    with open(os.path.join(pushed_model.uri, RECORD_FILE), "w") as f:
        json.dump({**record, "version": version}, f, indent=2)
    ctx.log(f"pushed model {model.id} as version {version}: {model_dir}/{version} (smoke check: {detail})")
    _record(
        pushed_model,
        "pushed",
        os.path.join(model_dir, str(version)),
        version,
        fingerprint=fingerprint,
        replaced_version=latest,
    )


def _record(pushed_model: PushedModel, action: str, destination: str, version: int, **custom) -> None:
    """TFX's keys and value types (pushed_version a string, destination and version only when
    pushed), and ours: what was done and why, the model, when, and the version it replaced in
    service (what `pushes` and `models --served-at` read)."""
    pushed = action in ("pushed", "already_pushed")
    pushed_model.custom_properties["pushed"] = int(pushed)
    if pushed:
        pushed_model.custom_properties.update(pushed_destination=destination, pushed_version=str(version))
    pushed_model.custom_properties.update(action=action, pushed_at=time.time(), **custom)


def model_spans(model: Model, examples: list[Examples]) -> list[int]:
    """The spans the model learned from (the Trainer records them), else those of the examples."""
    recorded = model.custom_properties.get("spans")
    if recorded:
        return sorted(json.loads(recorded))
    return sorted({e.get("span") for e in examples if e.get("span") is not None})


def _span_shown(span: int, examples: list[Examples]) -> str:
    """A span as a person reads it: its date where the examples' spans are dated."""
    import datetime

    if any(e.get("span_date") for e in examples):
        return (datetime.date(1970, 1, 1) + datetime.timedelta(days=span)).isoformat()
    return str(span)


def _recorded(model_dir: str, version: int) -> dict:
    """The push record of a version, {} when there is none (or no version)."""
    try:
        with open(os.path.join(model_dir, str(version), RECORD_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def latest_version(model_dir: str) -> int:
    """The highest integer version directory under `model_dir`, 0 when none."""
    if not os.path.isdir(model_dir):
        return 0
    versions = [
        int(n) for n in os.listdir(model_dir) if n.isdigit() and os.path.isdir(os.path.join(model_dir, n))
    ]
    return max(versions, default=0)


def served_fingerprint(model_dir: str, version: int) -> str | None:
    """The content fingerprint of version `version` as the model it holds: from its push record,
    else computed from its files (a version written by hand or by another tool), so the same
    model is never pushed again over itself, whatever its version number or record."""
    path = os.path.join(model_dir, str(version))
    try:
        with open(os.path.join(path, RECORD_FILE)) as f:
            recorded = json.load(f).get("fingerprint")
        if recorded:
            return recorded
    except (OSError, ValueError):
        pass
    if not os.path.isdir(path):
        return None
    return directory_content_sha256(path, skip=(RECORD_FILE,))


def foreign_versions(model_dir: str) -> list[str]:
    """Version folders of `model_dir` without a push record of ours, in version order."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        (
            n
            for n in os.listdir(model_dir)
            if n.isdigit()
            and os.path.isdir(os.path.join(model_dir, n))
            and not os.path.isfile(os.path.join(model_dir, n, RECORD_FILE))
        ),
        key=int,
    )


# Smoke-check processes started ahead of the Pusher (see `warm_up`), waiting for their request.
_WAITING: list[subprocess.Popen] = []


def _start_smoke_process() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, SMOKE_SCRIPT, "--wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def warm_up() -> Callable[[], None]:
    """Starts the smoke-check process while the step before the Pusher runs, so that its import of
    TensorFlow (seconds) overlaps that step; returns how to stop it when the Pusher does not run.
    The process is still fresh: it has imported TensorFlow and nothing else when the model loads."""
    process = _start_smoke_process()
    _WAITING.append(process)

    def release() -> None:
        if process in _WAITING:
            _WAITING.remove(process)
            process.kill()
            process.communicate()

    return release


def smoke_check(
    serving_dir: str, examples_dir: str, label_key: str, params: PusherParams
) -> tuple[bool, str]:
    """Runs `smoke.py` in a fresh process (one started ahead by `warm_up` if there is one):
    (passed, what it saw or why it failed)."""
    while _WAITING and _WAITING[-1].poll() is not None:  # one that died waiting is no use
        _WAITING.pop().communicate()
    process = _WAITING.pop() if _WAITING else _start_smoke_process()
    request = json.dumps([serving_dir, examples_dir, label_key, str(params.smoke_examples)])
    try:
        stdout, stderr = process.communicate(request + "\n", timeout=params.smoke_timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return False, f"no answer within {params.smoke_timeout_seconds:g} s"
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " ".join(stderr.strip().splitlines()[-3:])[:600]
        return False, f"the check process exited {process.returncode}: {tail}"
    if not result.get("ok"):
        return False, result.get("error", "unknown error")
    shapes = ", ".join(f"{k} {v}" for k, v in sorted(result["outputs"].items()))
    return True, f"serving_default answered {result['examples']} raw examples: {shapes}"


def push(serving_dir: str, model_dir: str, record: dict) -> int:
    """Copies `serving_dir` to `model_dir/<latest + 1>/` through a staging directory that TF Serving
    ignores (not a number): the files, then the push record, then `saved_model.pb` last, then one
    rename. Returns the version."""
    os.makedirs(model_dir, exist_ok=True)
    for name in os.listdir(model_dir):
        path = os.path.join(model_dir, name)
        # Left by a push killed midway; an hour old, so not another pusher's copy in progress.
        if name.startswith(STAGING_PREFIX) and time.time() - os.path.getmtime(path) > STALE_STAGING_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
    version = latest_version(model_dir) + 1
    staging = os.path.join(model_dir, f"{STAGING_PREFIX}{version}-{os.getpid()}")
    shutil.copytree(
        serving_dir,
        staging,
        ignore=lambda d, names: [n for n in names if d == serving_dir and n in SAVED_MODEL_FILES],
    )
    with open(os.path.join(staging, RECORD_FILE), "w") as f:
        json.dump({**record, "version": version}, f, indent=2)
    for name in SAVED_MODEL_FILES:
        if os.path.exists(os.path.join(serving_dir, name)):
            shutil.copy2(os.path.join(serving_dir, name), os.path.join(staging, name))
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        shutil.rmtree(staging, ignore_errors=True)
        raise UserInputError(
            f"{final} appeared while pushing (another pusher writes to {model_dir}?); nothing was pushed, run again"
        )
    close_to_others(staging)  # the served model: no umask opens it to every user
    os.rename(staging, final)
    return version


Pusher = Component(
    name="Pusher",
    run=run_pusher,
    parameters=PusherParams,
    version="2",
    warm_up=warm_up,
)
