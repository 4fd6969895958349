"""The house rules that keep the code easy to read, checked rather than hoped for:
imports go one way (eventlog <- projector <- mcp_server), only mcp_server/app.py imports the
MCP SDK, nothing imports tools/, and eventlog + projector pass mypy --strict."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each package may import from the project's own packages.
ALLOWED = {"eventlog": {"eventlog"}, "projector": {"eventlog", "projector"}, "mcp_server": {"eventlog", "projector", "mcp_server"}}
OWN = {"eventlog", "projector", "mcp_server", "tools"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    offending = []
    for path in package_files(package):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in OWN and top not in ALLOWED[package]:
                offending.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offending == []


def test_only_app_imports_the_mcp_sdk() -> None:
    importers = [
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in package_files(package)
        if any(name.split(".")[0] in {"mcp", "mcp_types"} for name in imported_modules(path))
    ]
    assert importers == ["mcp_server/app.py"]


def test_eventlog_and_projector_pass_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "eventlog", "projector"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
