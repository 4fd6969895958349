"""The README is checked against the code: commands, tools, variables, and the Quick start."""

from __future__ import annotations

import re
from pathlib import Path

from mcp_server.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.md").read_text()
QUICK_START = (
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/mnemolog serve\n"
    "bash .ci/run\n"
)


def test_quick_start_comes_first_with_exactly_its_two_commands() -> None:
    sections = re.findall(r"^## (.+)$", README, re.MULTILINE)
    assert sections[0] == "Quick start"
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```\n(.*?)```", quick, re.DOTALL)
    assert block == QUICK_START


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    for name in commands:
        assert f"`mnemolog {name}" in README, name


def test_every_tool_is_documented() -> None:
    source = (REPO_ROOT / "mcp_server" / "app.py").read_text()
    tools = re.findall(r"@tool\(.*?\n    async def (\w+)\(", source, re.DOTALL)
    assert len(tools) == 7
    for name in tools:
        assert f"`{name}(" in README, name


def test_every_environment_variable_is_documented() -> None:
    source = (REPO_ROOT / "mcp_server" / "settings.py").read_text()
    variables = set(re.findall(r'"((?:MNEMOLOG|STORAGE|LOG)_[A-Z_]+)"', source))
    assert {"MNEMOLOG_HOME", "MNEMOLOG_PROJECT", "STORAGE_CONNECTION_STRING", "LOG_LEVEL"} <= variables
    for name in variables:
        assert f"`{name}`" in README, name
