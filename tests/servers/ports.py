"""Ports for the servers the tests start: outside the range the kernel hands out to outgoing
connections, so no client's connection (ours, or another test worker's) can take one between
the moment it is chosen and the moment its server binds it."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = (int(n) for n in RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default
    return low, high


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that nothing listens on now, below the ephemeral
    range (or, where that range leaves no room below it, above it)."""
    low, high = _ephemeral()
    span = range(LOWEST, low) if low - LOWEST >= 1000 else range(high + 1, 65_536)
    chosen: list[int] = []
    with contextlib.ExitStack() as stack:
        while len(chosen) < count:
            port = random.choice(span)
            if port in chosen:
                continue
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: another
            chosen.append(port)
    return chosen


def free_port() -> int:
    """One port, as `free_ports` chooses them."""
    return free_ports(1)[0]
