"""Small text, network and file-mode helpers shared by the command line, the pages and the launchers."""

from __future__ import annotations

import os
import socket


def shorten(value: object, limit: int, missing: str = "") -> str:
    """`value` as text, cut to at most `limit` characters with "..." (None reads `missing`)."""
    text = missing if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now (all held open together while chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def never_world_writable() -> None:
    """Adds "no write for others" to the process's umask (inherited by every process it starts):
    under `umask 000` a root, its store and a served model would otherwise be writable by every
    user of the machine. Group bits stay as the user set them."""
    os.umask(os.umask(0) | 0o002)


def close_to_others(path: str) -> None:
    """Removes write permission for others from `path` and everything under it (explicit modes,
    whatever the umask was when the files were made)."""
    for directory, _, files in os.walk(path):
        for each in (directory, *(os.path.join(directory, f) for f in files)):
            mode = os.lstat(each).st_mode
            if mode & 0o002 and not os.path.islink(each):
                os.chmod(each, mode & ~0o002)
