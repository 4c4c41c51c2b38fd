"""The floors of `jobs/`: the ports below both the send cycle and the adapters, so the cycle
never imports an adapter and an adapter never imports the cycle."""

from __future__ import annotations

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def imports(package: str) -> dict[str, set[str]]:
    """The `jobs.*` modules each module of `package` imports, by module file name."""
    found: dict[str, set[str]] = {}
    for path in sorted((JOBS / package).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[path.name] = {name for name in names if name.startswith("jobs")}
    return found


def reaching(package: str, *below: str) -> dict[str, set[str]]:
    """The imports of `package`'s modules into any of the packages `below`."""
    wrong = {
        module: {name for name in names if name.startswith(below)}
        for module, names in imports(package).items()
    }
    return {module: names for module, names in wrong.items() if names}


def test_the_send_cycle_and_its_follow_up_import_no_adapter() -> None:
    assert reaching("dispatch", "jobs.mongo", "jobs.doubles", "jobs.optin") == {}


def test_the_adapters_import_the_ports_not_the_send_cycle() -> None:
    assert reaching("mongo", "jobs.dispatch") == {}
    assert reaching("doubles", "jobs.dispatch") == {}


def test_the_ports_stand_on_the_vocabulary_and_the_rules_alone() -> None:
    above = ("jobs.dispatch", "jobs.mongo", "jobs.doubles", "jobs.optin", "jobs.web")
    assert reaching("ports", *above) == {}


def test_the_send_cycle_keeps_one_concern_per_short_module() -> None:
    lengths = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in (JOBS / "dispatch").glob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 300} == {}
