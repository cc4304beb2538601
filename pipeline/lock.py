"""The pipeline root's lock: one run at a time per root, released even if the process is killed."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from pipeline.errors import LockHeldError

LOCK_FILE = ".pipeline.lock"


class RootLock:
    """An exclusive `flock` on `<root>/.pipeline.lock`.

    The kernel drops the lock when the holder exits for any reason (SIGKILL included), so a stale
    lock never blocks the next run. A second run waits up to `wait_seconds`, then raises
    LockHeldError naming the holder.
    """

    def __init__(self, root: str, run_id: str, wait_seconds: float = 0.0, log=None):
        self.path = os.path.join(root, LOCK_FILE)
        self.run_id = run_id
        self.wait_seconds = wait_seconds
        self.log = log
        self._fd: int | None = None

    def __enter__(self) -> RootLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        waited = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self.log is not None and self.wait_seconds > 0 and waited is None:
                    waited = time.monotonic()
                    self.log(
                        f"waiting up to {self.wait_seconds:g} s for {_read_holder(fd)} to release "
                        f"{os.path.dirname(self.path)}"
                    )
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockHeldError(
                        f"another run holds the lock on {os.path.dirname(self.path)} ({holder}); "
                        "wait for it to finish, or pass --wait SECONDS to queue behind it"
                    ) from None
                time.sleep(0.2)
        if waited is not None:
            self.log(f"the lock is free after {time.monotonic() - waited:.1f} s; run {self.run_id} starts")
        os.ftruncate(fd, 0)
        record = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "holder unknown"
    if not holder:
        return "holder unknown"
    return f"run {holder.get('run_id')}, pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
