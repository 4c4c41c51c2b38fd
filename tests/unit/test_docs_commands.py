"""Every `sms-outbox` command in the shell blocks of the README and docs/ is one the CLI has,
with options it takes: a page that names a command or option that is gone is a bug."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from scheduler.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> list[tuple[str, str]]:
    """(page, command line) for each `sms-outbox ...` in a ```sh block."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.split(r"\s+#\s", line)[0]  # a comment after the command
                line = line.replace("docker compose run --rm cli", "sms-outbox")
                for match in re.finditer(r"(?:^|[\s(;|&])sms-outbox (.*)", line):
                    command = re.split(r"[|;&)>]", match.group(1))[0]
                    found.append((page.name, command.strip()))
    return found


def _as_typed(command: str) -> list[str]:
    """The arguments, with optional parts `[--json]` kept and `A|B` alternatives as the first."""
    words = shlex.split(command.replace("[", "").replace("]", ""))
    return [word.split("|")[0] if word.isupper() else word for word in words]


COMMANDS = _commands()


def test_the_pages_show_commands() -> None:
    assert len(COMMANDS) > 30


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_each_command_in_the_pages_parses(page: str, command: str) -> None:
    try:
        build_parser().parse_args(_as_typed(command))
    except SystemExit as exc:
        pytest.fail(f"{page}: `sms-outbox {command}` does not parse (exit {exc.code})")
