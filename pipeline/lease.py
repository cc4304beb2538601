"""One active run per pipeline root, enforced through the metadata store.

The tasks of one run may execute on different machines (an Airflow worker, a Kubernetes pod), so
a file lock held by one process cannot say that a root is taken. The store can: a lease is a
context of type `root_lease` named `<digest of the root>#<generation>`, naming its holder (run id,
host, pid) and a heartbeat. MLMD's unique (type, name) makes taking one atomic: whoever creates
generation N+1 first holds the root; a second creator gets AlreadyExists and sees the winner.

A lease ends when its run releases it (its last step closes the run), or is found abandoned:
the run it names is no longer RUNNING, or the process running the whole run (`runner.py run`) is
gone from this host, or no task of its run took it for `TIMEOUT_SECONDS` and none of its
executions may still be running. Tasks of the run that holds the lease take it again
(re-entrant), from any host; each refreshes its heartbeat.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.errors import LockHeldError
from pipeline.metadata import PIPELINE_RUN, MetadataStore, custom, set_value

LEASE = "root_lease"
TIMEOUT_SECONDS = 600.0
HOST = socket.gethostname()


def _prefix(root: str) -> str:
    return hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:24] + "#"


def current(store: MetadataStore, root: str) -> pb.Context | None:
    """The root's newest lease (held or not), or None."""
    prefix = _prefix(root)
    store.context_type_id(LEASE)
    found = store.mlmd.get_contexts(list_options=_options(f"type = '{LEASE}' AND name LIKE '{prefix}%'"))
    return max(found, key=lambda c: int(c.name.rsplit("#", 1)[1]), default=None)


def _options(query: str):
    from ml_metadata.metadata_store import metadata_store

    return metadata_store.ListOptions(filter_query=query)


def holder(lease: pb.Context | None) -> str:
    if lease is None:
        return "nobody"
    return (
        f"run {custom(lease, 'run_id')}, pid {custom(lease, 'pid')} on {custom(lease, 'host')}, "
        f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(custom(lease, 'since', 0)))}"
    )


def is_free(store: MetadataStore, lease: pb.Context | None, run_id: str) -> bool:
    """Whether `run_id` may take the root: no lease, released, its own, or abandoned."""
    if lease is None or custom(lease, "released", 0) or custom(lease, "run_id") == run_id:
        return True
    run = store.mlmd.get_context_by_type_and_name(PIPELINE_RUN, custom(lease, "run_id"))
    if run is None or custom(run, "status") != "RUNNING":
        return True
    if custom(lease, "pid") and custom(lease, "host") == HOST and not process_alive(custom(lease, "pid")):
        return True  # the process that ran the whole run is gone
    if time.time() - custom(lease, "heartbeat", 0.0) <= TIMEOUT_SECONDS:
        return False
    return not any(_may_be_running(e) for e in store.mlmd.get_executions_by_context(run.id))


def _may_be_running(execution: pb.Execution) -> bool:
    if execution.last_known_state != pb.Execution.RUNNING:
        return False
    return custom(execution, "host") != HOST or process_alive(custom(execution, "pid"))


def acquire(
    store: MetadataStore, root: str, run_id: str, *, pid: int = 0, wait_seconds: float = 0.0, log=None
) -> pb.Context:
    """Takes the root's lease for `run_id` (again, if it holds it), waiting up to `wait_seconds`
    for another run's; raises LockHeldError naming the holder. `pid`: the process that runs the
    whole run (`runner.py run`), whose end frees the root; 0 for a run made of step tasks, each
    its own process, which holds the root until its last task closes it."""
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        lease = current(store, root)
        if is_free(store, lease, run_id):
            taken = _take(store, root, lease, run_id, pid)
            if taken is not None:
                return taken
            continue  # another run took it first: look again
        if time.monotonic() >= deadline:
            raise LockHeldError(
                f"another run holds {root} ({holder(lease)}); wait for it to finish, "
                "or pass --wait SECONDS to queue behind it"
            )
        if log is not None and not said:
            log(f"waiting up to {wait_seconds:g} s for {holder(lease)} to release {root}")
            said = True
        time.sleep(0.5)


def _take(
    store: MetadataStore, root: str, lease: pb.Context | None, run_id: str, pid: int
) -> pb.Context | None:
    now = time.time()
    if lease is not None and custom(lease, "run_id") == run_id and not custom(lease, "released", 0):
        _set(lease, pid=pid, host=HOST, heartbeat=now)
        store.mlmd.put_contexts([lease])
        return lease
    generation = 0 if lease is None else int(lease.name.rsplit("#", 1)[1]) + 1
    taken = pb.Context(type_id=store.context_type_id(LEASE), name=f"{_prefix(root)}{generation}")
    _set(taken, root=os.path.abspath(root), run_id=run_id, host=HOST, pid=pid, since=now, heartbeat=now)
    try:
        [taken.id] = store.mlmd.put_contexts([taken])
    except mlmd_errors.AlreadyExistsError:
        return None
    return taken


def release(store: MetadataStore, root: str, run_id: str) -> None:
    """Ends `run_id`'s lease on the root, if it holds it."""
    lease = current(store, root)
    if lease is not None and custom(lease, "run_id") == run_id and not custom(lease, "released", 0):
        _set(lease, released=1, heartbeat=time.time())
        store.mlmd.put_contexts([lease])


def _set(context: pb.Context, **props) -> None:
    for key, value in props.items():
        set_value(context.custom_properties[key], value)


def process_alive(pid) -> bool:
    """Whether process `pid` of this host is running (False for no pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
