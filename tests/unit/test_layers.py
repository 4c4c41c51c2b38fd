"""The floors: the shell (`scheduler/`, its surfaces and its try-out commands) above the send
cycle, the ports below both the send cycle and the adapters, so the cycle never imports an
adapter and an adapter never imports the cycle; no import runs back up, and nothing outside the
tests imports a test double."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
SHELL = ROOT / "scheduler"


def module_imports(path: Path) -> set[str]:
    """Every module name `path` imports, and each imported name as `module.name`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def imports(directory: Path) -> dict[str, set[str]]:
    """What each module under `directory` imports, by its path relative to the project."""
    return {
        str(path.relative_to(ROOT)): module_imports(path)
        for path in sorted(directory.rglob("*.py"))
    }


def reaching(package: str, *below: str, root: Path = JOBS) -> dict[str, set[str]]:
    """The imports of `package`'s modules into any of the packages `below`."""
    wrong = {
        module: {name for name in names if name.startswith(below)}
        for module, names in imports(root / package).items()
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


def test_nothing_outside_the_tests_imports_a_test_double() -> None:
    found: dict[str, set[str]] = {}
    for top in ("jobs", "scheduler", "bench", "docs", "scripts"):
        for module, names in imports(ROOT / top).items():
            if not module.startswith("jobs/doubles/"):
                found[module] = {name for name in names if name.startswith("jobs.doubles")}
    assert {module: names for module, names in found.items() if names} == {}


def test_the_work_never_imports_the_shell() -> None:
    assert reaching(".", "scheduler") == {}


def test_the_simulator_stands_on_the_rules_alone() -> None:
    above = ("jobs.dispatch", "jobs.mongo", "jobs.doubles", "jobs.optin", "jobs.web", "jobs.ports")
    assert reaching("simulator", *above) == {}


def test_surfaces_and_try_outs_sit_below_the_command_line() -> None:
    cli = ("scheduler.cli", "scheduler.parser", "scheduler.commands")
    assert reaching("surfaces", *cli, root=SHELL) == {}
    assert reaching("tryout", *cli, "scheduler.surfaces", root=SHELL) == {}


def test_the_settings_and_the_logs_import_nothing_else_of_the_shell() -> None:
    settings = ("settings.py", "sections.py", "listeners.py", "logs.py")
    shell = ("scheduler.settings", "scheduler.sections", "scheduler.listeners")
    wrong = {
        name: {n for n in module_imports(SHELL / name) if n.startswith("scheduler")}
        - {n for n in module_imports(SHELL / name) if n.startswith(shell)}
        for name in settings
    }
    assert {name: names for name, names in wrong.items() if names} == {}


def test_the_shell_the_simulator_and_the_web_app_keep_short_modules_and_functions() -> None:
    long: list[str] = []
    for directory in (SHELL, JOBS / "simulator", JOBS / "webapp"):
        for path in sorted(directory.rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            name = str(path.relative_to(ROOT))
            if len(source.splitlines()) > 300:
                long.append(name)
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if (node.end_lineno or node.lineno) - node.lineno + 1 > 60:
                    long.append(f"{name}: {node.name}")
    assert long == []
