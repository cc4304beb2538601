"""Small text and network helpers shared by the command line, the pages and the launchers."""

from __future__ import annotations

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
