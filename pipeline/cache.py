"""Cache keys and fingerprints: what must be unchanged for a step's earlier outputs to be reused."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from typing import Any

from pipeline.artifacts import Artifact


def cache_key(
    component_name: str,
    code_version: str,
    params: Any,
    inputs: dict[str, Artifact | list[Artifact] | None],
    resolved: dict[str, Any],
) -> str:
    """sha256 over the component and its code version, the parameters (a module file or a
    callable counts by its source), the input artifacts (id and content fingerprint; a list
    input, each in order), and what the component resolved before running (for ExampleGen: span
    and input file fingerprints)."""

    def identity(a: Artifact | list[Artifact] | None) -> Any:
        if isinstance(a, list):
            return [identity(one) for one in a]
        return None if a is None else [a.id, a.get("fingerprint")]

    material = {
        "component": component_name,
        "version": code_version,
        "params": params_fingerprint(params),
        "inputs": {key: identity(a) for key, a in sorted(inputs.items())},
        "resolved": resolved,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def params_fingerprint(params: Any) -> dict[str, Any]:
    """Parameter values as JSON-able data. A field whose metadata says `module_file` counts by the
    file's content; a callable counts by the source of the module that defines it."""
    result = {}
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if field.metadata.get("module_file") and isinstance(value, str):
            result[field.name] = {"module_file": value, "sha256": file_sha256(value)}
        elif callable(value):
            result[field.name] = callable_fingerprint(value)
        else:
            result[field.name] = value
    return result


def callable_fingerprint(fn: Any) -> dict[str, str]:
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(inspect.getmodule(fn) or fn)
    except (OSError, TypeError):
        source = name
    return {"callable": name, "sha256": hashlib.sha256(source.encode()).hexdigest()}


def file_sha256(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return "missing"


def _files_under(path: str):
    """(relative name, full path) of every file under `path`, in a fixed order."""
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            yield os.path.relpath(full, path), full


# Artifacts up to this size are fingerprinted by content (a model, a schema, a transform graph,
# statistics, the examples of up to about a million rows: 0.1 s for 64 MB); larger ones by their
# files' names and sizes, which a rewrite of equal size would not change.
CONTENT_FINGERPRINT_MAX_BYTES = 64 * 1024 * 1024


def directory_fingerprint(path: str) -> str:
    """The fingerprint recorded on a published artifact and checked before its reuse:
    `content:<sha256 of every file's name and bytes>` up to CONTENT_FINGERPRINT_MAX_BYTES, else
    `sizes:<sha256 of every file's name and size>`."""
    total = sum(os.path.getsize(full) for _, full in _files_under(path))
    if total <= CONTENT_FINGERPRINT_MAX_BYTES:
        return f"content:{directory_content_sha256(path)}"
    return f"sizes:{_names_and_sizes(path)}"


def fingerprint_changed(path: str, recorded: str) -> bool:
    """Whether `path` no longer matches the fingerprint `recorded` when it was published
    (computed the same way; a fingerprint without a prefix, from before, covers names and sizes)."""
    if recorded.startswith("content:"):
        return recorded != f"content:{directory_content_sha256(path)}"
    return recorded.removeprefix("sizes:") != _names_and_sizes(path)


def _names_and_sizes(path: str) -> str:
    digest = hashlib.sha256()
    for name, full in _files_under(path):
        digest.update(f"{name}\0{os.path.getsize(full)}\n".encode())
    return digest.hexdigest()


def directory_content_sha256(path: str, skip: tuple[str, ...] = ()) -> str:
    """sha256 over every file's relative name and bytes: the same directory, byte for byte (the
    Pusher's test that a version already holds a model; recorded in push_record.json). Files
    named in `skip` at the top level are left out."""
    digest = hashlib.sha256()
    for name, full in _files_under(path):
        if name in skip:
            continue
        digest.update(name.encode() + b"\0")
        with open(full, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
