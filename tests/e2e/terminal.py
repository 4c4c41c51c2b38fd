"""Running a command in a pseudo-terminal, as a person at a terminal would see it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@dataclass
class Screen:
    """What a command wrote to its terminal, raw and without escape sequences."""

    raw: str
    returncode: int | None

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)


def run_in_terminal(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    columns: int = 100,
    on_first_output: Callable[[], object] | None = None,
) -> Screen:
    """Run `argv` with a pty as its terminal until it exits (or `timeout`, then kill it);
    `on_first_output` is called once the command has drawn something."""
    master, slave = pty.openpty()
    env = {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "30"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, env=env, cwd=cwd,
        close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command exited and its terminal closed
                    break
                if not data:
                    break
                chunks.append(data)
                if on_first_output is not None and len(chunks) == 1:
                    on_first_output()
            elif process.poll() is not None:
                break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        os.close(master)
    return Screen(b"".join(chunks).decode("utf-8", "replace"), process.returncode)
