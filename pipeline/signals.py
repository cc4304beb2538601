"""Stopping a run cleanly on SIGTERM (what systemd, Airflow and Kubernetes send) and SIGINT (Ctrl-C).

Inside `stop_on_signals()` either signal raises `Interrupted` in the main thread, wherever it is:
the step executing is recorded FAILED ("interrupted by SIGTERM"), what it staged is removed, its
worker process and that process's children are killed, the steps after it are SKIPPED, the run
ends INTERRUPTED with its report, and the command exits 128 + the signal's number (143, 130) with
one line. A second signal while that happens is ignored, so the cleanup finishes.
"""

from __future__ import annotations

import contextlib
import os
import signal

from pipeline.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals():
    def stop(signum, frame):
        for each in SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name, 128 + signum)

    previous = {each: signal.signal(each, stop) for each in SIGNALS}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL to `pid` and everything below it (found before the first kill)."""
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(each, signal.SIGKILL)
