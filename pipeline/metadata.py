"""ML Metadata: the store's connection settings and one facade over the records a run writes.

Layout, as TFX keeps it: context types `pipeline`, `pipeline_run` (child of its pipeline) and
`node` (named `<pipeline>.<node_id>`); one execution type per component; artifact types from
`pipeline.artifacts`. An execution is put RUNNING with its INPUT events, then COMPLETE with its
outputs (LIVE) and OUTPUT events in one `put_execution` call, or CACHED with OUTPUT events to the
earlier outputs it reuses, or FAILED with its error in custom property `error`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, TypeVar

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.artifacts import ARTIFACT_TYPES, DOUBLE, INT, STRING, Artifact

A = TypeVar("A", bound=Artifact)

PIPELINE, PIPELINE_RUN, NODE = "pipeline", "pipeline_run", "node"
_PROPERTY_TYPES = {INT: pb.INT, DOUBLE: pb.DOUBLE, STRING: pb.STRING}
_STATE_NAMES = {value: name for name, value in pb.Execution.State.items()}


PASSWORD_FILE_VARIABLE = "PIPELINE_METADATA_PASSWORD_FILE"
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^/]*@")  # to the last @ before the path


def masked(spec: str) -> str:
    """`spec` as it may be shown: the password of a store URL replaced by `***`."""
    return _PASSWORD_IN_URL.sub(r"\1***@", spec)


def connection_config(spec: str, create: bool = True) -> pb.ConnectionConfig:
    """ConnectionConfig from a path or URL.

    `path/to/metadata.sqlite` or `sqlite:///abs/path` -> sqlite (created when missing, if
    `create`); `postgresql://user@host:port/dbname` and `mysql://user@host:port/database` -> the
    MLMD server backends (the database created when missing, if `create`). The password comes
    from the URL, else the file named by $PIPELINE_METADATA_PASSWORD_FILE (`--metadata-password-file`),
    else PostgreSQL's own PGPASSWORD or ~/.pgpass (MySQL's MYSQL_PWD), which libpq reads itself.
    """
    from pipeline.errors import DefinitionError

    config = pb.ConnectionConfig()
    url = urllib.parse.urlparse(spec)
    try:
        port = url.port
    except ValueError:
        raise DefinitionError(f"metadata store {masked(spec)}: the port must be a number") from None
    if url.scheme in ("", "sqlite", "file"):
        config.sqlite.filename_uri = url.path if url.scheme else spec
        config.sqlite.connection_mode = (
            pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
            if create
            else pb.SqliteMetadataSourceConfig.READWRITE
        )
        return config
    if url.scheme in ("postgresql", "postgres"):
        server = config.postgresql
        server.port = str(port or 5432)
        server.dbname = url.path.lstrip("/") or "mlmd"
    elif url.scheme == "mysql":
        server = config.mysql
        server.port = port or 3306
        server.database = url.path.lstrip("/") or "mlmd"
    else:
        raise DefinitionError(
            f"metadata store {masked(spec)}: give a sqlite file path, or a postgresql:// or mysql:// URL"
        )
    server.host = url.hostname or "localhost"
    server.user = urllib.parse.unquote(url.username or "")
    password = urllib.parse.unquote(url.password) if url.password else _password_from_file()
    if password:
        server.password = password
    server.skip_db_creation = not create
    return config


def _password_from_file() -> str | None:
    path = os.environ.get(PASSWORD_FILE_VARIABLE)
    if not path:
        return None
    from pipeline.errors import DefinitionError

    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError as error:
        raise DefinitionError(f"metadata password file {path}: {error.strerror}") from None


def state_name(execution: pb.Execution) -> str:
    return _STATE_NAMES[execution.last_known_state]


def get_value(value: pb.Value) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def set_value(value: pb.Value, python_value: Any) -> None:
    """Python value -> MLMD Value. Times are float seconds: MLMD's PostgreSQL schema keeps int
    values in 32 bits, too small for milliseconds since the epoch. NaN and infinities, which
    MLMD's SQL cannot hold as numbers, are kept as the strings "nan", "inf", "-inf"."""
    if isinstance(python_value, bool) or isinstance(python_value, int):
        value.int_value = int(python_value)
    elif isinstance(python_value, float) and not math.isfinite(python_value):
        value.string_value = repr(python_value)
    elif isinstance(python_value, float):
        value.double_value = python_value
    elif isinstance(python_value, str):
        value.string_value = python_value
    else:
        value.string_value = json.dumps(python_value, sort_keys=True)


def custom(proto: Any, name: str, default: Any = None) -> Any:
    """A custom property of an artifact, execution or context proto, as a Python value."""
    if name not in proto.custom_properties:
        return default
    return get_value(proto.custom_properties[name])


@dataclass
class Contexts:
    pipeline: pb.Context
    run: pb.Context
    node: pb.Context

    def all(self) -> list[pb.Context]:
        return [self.pipeline, self.run, self.node]


class MetadataStore:
    """The records of runs: contexts, executions, artifacts and events, through MLMD's API."""

    def __init__(self, spec: str, create: bool = True, read_only: bool = False):
        """Opens the store at `spec` (see `connection_config`); `create=False` for commands that
        only read: a missing database is then an error, not created; `read_only` (the history
        browser) opens a sqlite file in SQLite's read-only mode, where a write fails. `name` is
        the spec as it may be shown, password masked."""
        self.spec = spec
        self.name = masked(spec)
        config = connection_config(spec, create and not read_only)
        if read_only and config.WhichOneof("config") == "sqlite":
            config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
        self.mlmd = _connect(config, self.name)
        self._type_ids: dict[tuple[str, str], int] = {}
        self._node_contexts: dict[str, pb.Context] = {}
        self.is_sqlite = self.mlmd_config_kind() == "sqlite"

    def mlmd_config_kind(self) -> str:
        return connection_config(self.spec).WhichOneof("config") or "sqlite"

    # ---- types -------------------------------------------------------------------------------

    def artifact_type_id(self, cls: type[Artifact]) -> int:
        artifact_type = pb.ArtifactType(name=cls.TYPE_NAME)
        for name, kind in cls.PROPERTIES.items():
            artifact_type.properties[name] = _PROPERTY_TYPES[kind]
        # A store written before ModelBlessing and PushedModel declared no properties keeps its
        # types: MLMD cannot drop a type's property, and `Artifact.get` reads either place.
        return self._type_id(
            "artifact",
            artifact_type,
            lambda proto: self.mlmd.put_artifact_type(proto, can_add_fields=True, can_omit_fields=True),
        )

    def execution_type_id(self, name: str) -> int:
        return self._type_id("execution", pb.ExecutionType(name=name), self.mlmd.put_execution_type)

    def context_type_id(self, name: str) -> int:
        return self._type_id("context", pb.ContextType(name=name), self.mlmd.put_context_type)

    def _type_id(self, kind: str, proto, put) -> int:
        key = (kind, proto.name)
        if key not in self._type_ids:
            # Two processes sharing a store may register the same type at once: the loser retries.
            self._type_ids[key] = _retry_conflict(lambda: put(proto))
        return self._type_ids[key]

    # ---- contexts ----------------------------------------------------------------------------

    def get_or_create_context(self, type_name: str, name: str, **props: Any) -> pb.Context:
        existing = self.mlmd.get_context_by_type_and_name(type_name, name)
        if existing is not None:
            return existing
        context = pb.Context(type_id=self.context_type_id(type_name), name=name)
        for key, value in props.items():
            set_value(context.custom_properties[key], value)
        try:
            [context.id] = self.mlmd.put_contexts([context])
        except mlmd_errors.AlreadyExistsError:  # created meanwhile by another process
            return self.mlmd.get_context_by_type_and_name(type_name, name)
        return context

    def start_run(self, pipeline_name: str, run_id: str, **props: Any) -> tuple[pb.Context, pb.Context]:
        pipeline = self.get_or_create_context(PIPELINE, pipeline_name)
        run = self.get_or_create_context(
            PIPELINE_RUN, run_id, pipeline=pipeline_name, status="RUNNING", start_time=time.time(), **props
        )
        try:
            self.mlmd.put_parent_contexts([pb.ParentContext(child_id=run.id, parent_id=pipeline.id)])
        except mlmd_errors.AlreadyExistsError:
            pass  # a run joined again (a later task of the same run)
        return pipeline, run

    def update_context(self, context: pb.Context, **props: Any) -> None:
        for key, value in props.items():
            set_value(context.custom_properties[key], value)
        self.mlmd.put_contexts([context])

    def node_context(self, pipeline_name: str, node_id: str) -> pb.Context:
        key = f"{pipeline_name}.{node_id}"
        if key not in self._node_contexts:
            self._node_contexts[key] = self.get_or_create_context(NODE, key, node_id=node_id)
        return self._node_contexts[key]

    def executions_in(self, context: pb.Context) -> list[pb.Execution]:
        """The executions attributed to a context (a run, a node), by ascending id."""
        return sorted(self.mlmd.get_executions_by_context(context.id), key=lambda e: e.id)

    def pipeline_runs(
        self, pipeline_name: str, limit: int | None = None, before: str | None = None, condition: str = ""
    ) -> list[pb.Context]:
        """The pipeline's runs, newest (last opened) first: `limit` of them, opened before run
        `before` when given, matching `condition` (a filter-query clause on the run context);
        one query with a limit, so a page costs the same on any history."""
        query = (
            f"type = '{PIPELINE_RUN}' AND parent_contexts_a.type = '{PIPELINE}' "
            f"AND parent_contexts_a.name = '{quoted(pipeline_name)}'"
        ) + (f" AND {condition}" if condition else "")
        if before:
            cursor = self.mlmd.get_context_by_type_and_name(PIPELINE_RUN, before)
            if cursor is None:
                raise LookupError(f"no run {before!r} in {self.name}")
            query += f" AND id < {cursor.id}"
        options = metadata_store.ListOptions(
            filter_query=query, order_by=metadata_store.OrderByField.ID, is_asc=False
        )
        if limit is not None:
            options.limit = limit
        return list(self.mlmd.get_contexts(list_options=options))

    def deciding_run(self, execution: pb.Execution) -> str:
        """The run whose step decided what `execution` records: its own run, or for a CACHED
        execution the run of the execution it reused (followed through earlier reuses)."""
        for _ in range(100):  # a reuse chain is short; bounded against a damaged store
            earlier = custom(execution, "cached_from", 0)
            if state_name(execution) != "CACHED" or not earlier:
                break
            [execution] = self.mlmd.get_executions_by_id([int(earlier)])
        run_type = self.context_type_id(PIPELINE_RUN)
        contexts = self.mlmd.get_contexts_by_execution(execution.id)
        return next((c.name for c in contexts if c.type_id == run_type), "")

    def pipeline_names(self) -> list[str]:
        return sorted(c.name for c in self.mlmd.get_contexts_by_type(PIPELINE))

    # ---- executions --------------------------------------------------------------------------

    def register_execution(
        self,
        component: str,
        contexts: Contexts,
        inputs: dict[str, Artifact | list[Artifact] | None],
        *,
        state: str = "RUNNING",
        outputs: dict[str, Artifact] | None = None,
        **props: Any,
    ) -> pb.Execution:
        """Puts a new execution in one call: its properties, an INPUT event for every input found
        (resolver inputs included) and, for a CACHED one, OUTPUT events to the earlier outputs it
        reuses. An input that is a list (a window of spans) gets one event per artifact, its path
        the key and the artifact's index, as TFX records them. `state` is RUNNING, CACHED or FAILED
        (a step that failed before it ran). Returns the execution as stored, id included, for
        `publish_execution` or `fail_execution`."""
        execution = pb.Execution(
            type_id=self.execution_type_id(component),
            last_known_state=pb.Execution.State.Value(state),
        )
        _set_all(execution, props)
        pairs = []
        for key, value in inputs.items():
            if isinstance(value, list):
                pairs += [(None, a, _event(pb.Event.INPUT, key, i)) for i, a in enumerate(value)]
            elif value:
                pairs.append((None, value, _event(pb.Event.INPUT, key)))
        pairs += [(None, a, _event(pb.Event.OUTPUT, key)) for key, a in (outputs or {}).items()]
        execution.id, _ = self._put_execution(execution, pairs, contexts)
        return execution

    def publish_execution(
        self, execution: pb.Execution, contexts: Contexts, outputs: dict[str, Artifact], **props: Any
    ) -> None:
        """Marks the execution (as registered) COMPLETE with `props` added and publishes its outputs
        LIVE with their OUTPUT events, in one call; the artifacts get their ids."""
        execution.last_known_state = pb.Execution.COMPLETE
        _set_all(execution, props)
        pairs = []
        for key, artifact in outputs.items():
            artifact.state = "LIVE"
            pairs.append((self._to_proto(artifact), artifact, _event(pb.Event.OUTPUT, key)))
        _, artifact_ids = self._put_execution(execution, pairs, contexts)
        for artifact, artifact_id in zip(outputs.values(), artifact_ids):
            artifact.id = artifact_id

    def fail_execution(self, execution: int | pb.Execution, error: str, **props: Any) -> None:
        """Marks an execution (an id or the proto as read) FAILED with `error`."""
        if isinstance(execution, int):
            [execution] = self.mlmd.get_executions_by_id([execution])
        execution.last_known_state = pb.Execution.FAILED
        _set_all(execution, {"error": error, **props})
        self.mlmd.put_executions([execution])

    def update_execution(self, execution_id: int, **props: Any) -> None:
        [execution] = self.mlmd.get_executions_by_id([execution_id])
        _set_all(execution, props)
        self.mlmd.put_executions([execution])

    def _put_execution(
        self, execution: pb.Execution, pairs: list, contexts: Contexts
    ) -> tuple[int, list[int]]:
        """put_execution of (new artifact proto or None for an existing artifact, Artifact, event)
        triples. Properties set on the proto replace those stored; the rest are kept.

        On a server database (PostgreSQL, MySQL), two processes attributing the same artifact to the
        same context at once can make MLMD roll the write back without raising; there the write is
        read back and, if it did not land, made again. sqlite serializes writers: one call."""
        mlmd_pairs = []
        for proto, artifact, event in pairs:
            if proto is None:  # an existing artifact: the event alone (MLMD takes an id-only proto)
                if artifact.id is None:
                    raise ValueError(f"{artifact!r} has not been published")
                event.artifact_id = artifact.id
                mlmd_pairs.append((None, event))
            else:
                mlmd_pairs.append((proto, event))
        for attempt in range(6):
            try:
                execution_id, artifact_ids, _ = self.mlmd.put_execution(
                    execution, mlmd_pairs, contexts.all(), force_reuse_context=True
                )
            except (mlmd_errors.AlreadyExistsError, mlmd_errors.AbortedError, mlmd_errors.InternalError):
                if self.is_sqlite and attempt == 5:
                    raise
                time.sleep(0.1 * (attempt + 1))
                continue
            if self.is_sqlite or self._landed(execution, execution_id, artifact_ids, len(pairs)):
                return execution_id, artifact_ids
            time.sleep(0.1 * (attempt + 1))
        raise RuntimeError(
            f"could not record execution {execution.id or '(new)'} in {self.name} after 6 attempts"
        )

    def _landed(
        self, execution: pb.Execution, execution_id: int, artifact_ids: list[int], count: int
    ) -> bool:
        stored = self.mlmd.get_executions_by_id([execution_id])
        return bool(
            stored
            and stored[0].last_known_state == execution.last_known_state
            and len(artifact_ids) == count == len(self.mlmd.get_artifacts_by_id(artifact_ids))
        )

    def running_executions(self, pipeline_name: str) -> list[pb.Execution]:
        """The pipeline's executions still RUNNING (one filter query: it does not read the
        history, which every run start would otherwise pay for)."""
        return self.executions_where(
            f"last_known_state = RUNNING AND contexts_p.type = '{PIPELINE}' "
            f"AND contexts_p.name = '{quoted(pipeline_name)}'"
        )

    def find_cached(
        self, pipeline_name: str, node_id: str, cache_key: str, pipeline_root: str
    ) -> tuple[pb.Execution, dict[str, Artifact]] | None:
        """The newest COMPLETE execution of this node with this cache key on this pipeline root,
        and its outputs: another root's outputs are never reused (its files are not this run's to
        rely on). Executions recorded before they named their root are not reused."""
        query = (
            f"custom_properties.cache_key.string_value = '{cache_key}' AND "
            f"custom_properties.pipeline_root.string_value = '{pipeline_root}' AND "
            f"contexts_n.type = '{NODE}' AND contexts_n.name = '{pipeline_name}.{node_id}' AND "
            "last_known_state = COMPLETE"
        )
        options = metadata_store.ListOptions(
            filter_query=query, order_by=metadata_store.OrderByField.ID, is_asc=False, limit=1
        )
        executions = self.mlmd.get_executions(list_options=options)
        if not executions:
            return None
        outputs = self.outputs_of(executions[0].id)
        if any(a.state != "LIVE" for a in outputs.values()):
            return None
        return executions[0], outputs

    def abandon_artifact(self, artifact_id: int, reason: str) -> None:
        """Marks a published artifact ABANDONED (its files are no longer what was recorded)."""
        [proto] = self.mlmd.get_artifacts_by_id([artifact_id])
        proto.state = pb.Artifact.ABANDONED
        set_value(proto.custom_properties["abandoned"], reason)
        self.mlmd.put_artifacts([proto])

    def live_artifacts(self, cls: type[A], pipeline_name: str, condition: str = "") -> list[A]:
        """LIVE artifacts of a type in a pipeline, oldest first; `condition` is an extra MLMD
        filter-query clause, such as `properties.span.int_value < 2009`."""
        return self.artifacts_of(
            cls, pipeline_name, "state = LIVE" + (f" AND {condition}" if condition else "")
        )

    def artifacts_of(self, cls: type[A], pipeline_name: str | None, condition: str = "") -> list[A]:
        """Artifacts of a type (in a pipeline, when named), whatever their state unless
        `condition` says, oldest first; one query."""
        clauses = [f"type = '{cls.TYPE_NAME}'"]
        if pipeline_name is not None:
            clauses += [f"contexts_p.type = '{PIPELINE}'", f"contexts_p.name = '{quoted(pipeline_name)}'"]
        if condition:
            clauses.append(condition)
        options = metadata_store.ListOptions(filter_query=" AND ".join(clauses))
        found = sorted(self.mlmd.get_artifacts(list_options=options), key=lambda p: p.id)
        return [self._from_proto(p, cls.TYPE_NAME) for p in found]  # type: ignore[misc]

    def executions_where(
        self, query: str, limit: int | None = None, newest_first: bool = False
    ) -> list[pb.Execution]:
        """Executions matching an MLMD filter query (`events_0.artifact_id IN (1, 2) AND
        last_known_state = COMPLETE`), by id."""
        options = metadata_store.ListOptions(
            filter_query=query, order_by=metadata_store.OrderByField.ID, is_asc=not newest_first
        )
        if limit is not None:
            options.limit = limit
        return list(self.mlmd.get_executions(list_options=options))

    def completed_with(self, artifact_ids, kind: str) -> list[pb.Execution]:
        """The COMPLETE executions with an event of `kind` ("INPUT" or "OUTPUT") for one of the
        artifacts: their producers (CACHED executions only reuse what those made), or the steps
        that consumed them; one query."""
        ids = ", ".join(str(i) for i in artifact_ids)
        if not ids:
            return []
        return self.executions_where(
            f"events_0.artifact_id IN ({ids}) AND events_0.type = {kind} AND last_known_state = COMPLETE"
        )

    def artifacts_where(self, query: str) -> list[Artifact]:
        """Artifacts matching an MLMD filter query, by id."""
        found = self.mlmd.get_artifacts(list_options=metadata_store.ListOptions(filter_query=query))
        return self.artifacts_by_id(sorted(a.id for a in found))

    def outputs_of(self, execution_id: int) -> dict[str, Artifact]:
        return self._artifacts_of(execution_id, pb.Event.OUTPUT)  # type: ignore[return-value]

    def inputs_of(self, execution_id: int) -> dict[str, Artifact | list[Artifact]]:
        """An execution's inputs by key: an artifact, or for an input that took several (a window
        of spans) the list of them in order."""
        return self._artifacts_of(execution_id, pb.Event.INPUT)

    def _artifacts_of(self, execution_id: int, kind: int) -> dict[str, Artifact | list[Artifact]]:
        events = [e for e in self.mlmd.get_events_by_execution_ids([execution_id]) if e.type == kind]
        artifacts = {a.id: a for a in self.artifacts_by_id([e.artifact_id for e in events])}
        found: dict[str, Any] = {}
        for event in sorted(events, key=lambda e: event_index(e) or 0):
            key, index = event.path.steps[0].key, event_index(event)
            if index is None:
                found[key] = artifacts[event.artifact_id]
            else:
                found.setdefault(key, []).append(artifacts[event.artifact_id])
        return found

    def producer_of(self, artifact_id: int) -> pb.Execution | None:
        """The execution that first output this artifact (COMPLETE; later CACHED ones reuse it)."""
        events = self.mlmd.get_events_by_artifact_ids([artifact_id])
        ids = sorted(e.execution_id for e in events if e.type == pb.Event.OUTPUT)
        return self.mlmd.get_executions_by_id(ids[:1])[0] if ids else None

    # ---- artifacts ---------------------------------------------------------------------------

    def artifacts_by_id(self, ids: list[int]) -> list[Artifact]:
        if not ids:
            return []
        protos = self.mlmd.get_artifacts_by_id(ids)
        type_ids = {p.type_id for p in protos}
        names = {t.id: t.name for t in self.mlmd.get_artifact_types_by_id(list(type_ids))}
        return [self._from_proto(p, names[p.type_id]) for p in protos]

    def artifacts_by_uri(self, uri: str) -> list[Artifact]:
        ids = [p.id for p in self.mlmd.get_artifacts_by_uri(uri)]
        return self.artifacts_by_id(ids)

    def _to_proto(self, artifact: Artifact) -> pb.Artifact:
        proto = pb.Artifact(
            type_id=self.artifact_type_id(type(artifact)),
            uri=artifact.uri,
            state=pb.Artifact.State.Value(artifact.state),
        )
        for key, value in artifact.properties.items():
            set_value(proto.properties[key], value)
        for key, value in artifact.custom_properties.items():
            set_value(proto.custom_properties[key], value)
        return proto

    @staticmethod
    def _from_proto(proto: pb.Artifact, type_name: str) -> Artifact:
        cls = ARTIFACT_TYPES.get(type_name, Artifact)
        artifact = cls(
            proto.uri,
            id=proto.id,
            custom_properties={k: get_value(v) for k, v in proto.custom_properties.items()},
            state=pb.Artifact.State.Name(proto.state),
        )
        # As stored, unchecked: a store of an earlier layout may hold properties no longer declared.
        artifact.properties = {k: get_value(v) for k, v in proto.properties.items()}
        return artifact


# A server that refuses connections (restarting, not up yet) is tried again after these pauses.
UNREACHABLE_RETRY_SECONDS = (0.5, 1.0, 2.0)


def _connect(config: pb.ConnectionConfig, name: str, attempts: int = 6):
    """Connects, creating the database and MLMD's tables if the config says so. Two processes
    starting at once on a new server database race to create them; the loser sees a duplicate and
    tries again. A server that does not answer is tried again a few times; then, or when it
    refuses the login, a StoreUnavailable naming the store and what to check."""
    from pipeline.errors import StoreUnavailable

    server = getattr(config, config.WhichOneof("config") or "sqlite")
    if config.WhichOneof("config") in ("postgresql", "mysql"):
        for pause in (*UNREACHABLE_RETRY_SECONDS, None):
            if _answers(server.host, int(server.port)):
                break
            if pause is None:
                raise StoreUnavailable(
                    f"cannot open the metadata store {name}: nothing answers at {server.host}:{server.port} "
                    f"(tried {len(UNREACHABLE_RETRY_SECONDS) + 1} times); check that the server is up "
                    "and the host and port"
                )
            time.sleep(pause)
    for attempt in range(attempts):
        try:
            with _stderr_kept() as said:
                return metadata_store.MetadataStore(config)
        except RuntimeError as error:
            text = f"{error} {said.read()}"
            if "already exists" in text or "duplicate key" in text:
                if attempt < attempts - 1:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise
            if config.WhichOneof("config") not in ("postgresql", "mysql"):
                raise StoreUnavailable(f"cannot open the metadata store {name}: {text.strip()}") from None
            database = getattr(server, "dbname", "") or getattr(server, "database", "")
            if "does not exist" in text or "Unknown database" in text:
                raise LookupError(
                    f"no runs recorded in {name} (no database {database!r} there yet)"
                ) from None
            where = f"the server at {server.host}:{server.port}"
            if "password" in text or "Access denied" in text or "authentication" in text:
                reason = f"{where} refused the login of user {server.user!r}"
            else:
                reason = f"{where} refused the connection ({_reason(text)})"
            raise StoreUnavailable(
                f"cannot open the metadata store {name}: {reason}; check the user and the password (in the "
                f"URL, ${PASSWORD_FILE_VARIABLE} / --metadata-password-file, or PGPASSWORD / ~/.pgpass)"
            ) from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _stderr_kept():
    """Keeps what C++ code writes to the process's stderr (fd 2) meanwhile, readable afterwards
    with `.read()`: MLMD says why a server store refused only there, in its log."""
    kept = tempfile.TemporaryFile(mode="w+", errors="replace")
    saved = os.dup(2)
    try:
        os.dup2(kept.fileno(), 2)
        try:
            yield _Kept(kept)
        finally:
            os.dup2(saved, 2)
    finally:
        os.close(saved)


class _Kept:
    def __init__(self, file):
        self.file = file

    def read(self) -> str:
        self.file.seek(0)
        text = self.file.read()
        self.file.close()
        return text


def _reason(text: str) -> str:
    """The server's own words from MLMD's log lines, or the error as it came."""
    found = re.findall(r"(?:PostgreSQL|MySQL) error: ([^\n]+)", text)
    return found[-1].strip() if found else text.strip()[:200]


def _answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port (within 3 s)."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def quoted(text: str) -> str:
    """`text` inside an MLMD filter query's single quotes."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _retry_conflict(call, attempts: int = 5):
    for attempt in range(attempts):
        try:
            return call()
        except (mlmd_errors.AlreadyExistsError, mlmd_errors.AbortedError, mlmd_errors.InternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def _set_all(proto: Any, props: dict[str, Any]) -> None:
    for key, value in props.items():
        set_value(proto.custom_properties[key], value)


def _event(kind: int, key: str, index: int | None = None) -> pb.Event:
    event = pb.Event(type=kind)
    step = event.path.steps.add()
    step.key = key
    if index is not None:
        event.path.steps.add().index = index
    return event


def event_index(event: pb.Event) -> int | None:
    """The index in an event's path (one artifact of a list input), or None for a single one."""
    steps = event.path.steps
    return steps[1].index if len(steps) > 1 and steps[1].HasField("index") else None


def flat(values) -> list[Artifact]:
    """The artifacts of an `inputs_of` / `outputs_of` dict's values, lists opened."""
    found: list[Artifact] = []
    for value in values:
        found += value if isinstance(value, list) else [value]
    return found
