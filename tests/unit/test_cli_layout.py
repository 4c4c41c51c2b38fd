"""The command line's shape: command groups in short modules, no command loading a test double,
and none but the demo loading mongomock (which only the extras install)."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

from scheduler.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
CLI_MODULES = [ROOT / "scheduler" / "cli.py", ROOT / "scheduler" / "parser.py",
               *sorted((ROOT / "scheduler" / "commands").glob("*.py"))]  # fmt: skip


def test_running_a_command_loads_no_test_double_and_no_mongomock() -> None:
    code = (
        "import sys, scheduler.cli\n"
        "from scheduler.parser import build_parser\n"
        "build_parser().parse_args(['recipients', 'list'])\n"
        "loaded = [m for m in sys.modules if m.startswith('jobs.doubles') or m == 'mongomock']\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_modules_stay_short_and_so_do_their_functions() -> None:
    for path in CLI_MODULES:
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) < 300, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 60, f"{path.name}: {node.name} has {length} lines"


def test_every_command_and_action_has_a_help_description() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = [] if parser.description else [path]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += walk(child, f"{path} {name}")
        return missing

    assert walk(build_parser(), "sms-outbox") == []
