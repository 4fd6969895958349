"""Fixtures for the server tests: an in-memory MCP client, and the command line in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp_types import CallToolResult

from mcp_server.app import build_server, shutdown_server
from mcp_server.service import MemoryService
from mcp_server.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Session:
    """A synchronous face on an in-memory MCP client session (the calls run in a portal)."""

    portal: BlockingPortal
    client: Client
    service: MemoryService

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        """Call a tool; return the raw result."""
        return self.portal.call(self.client.call_tool, tool, arguments)

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; return its structured content."""
        result = self.call(tool, **arguments)
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    def error(self, tool: str, **arguments: Any) -> str:
        """Call a tool that must fail; return the error text the model would read."""
        result = self.call(tool, **arguments)
        assert result.is_error, f"{tool} should have failed: {result.structured_content}"
        assert result.structured_content is None
        return " ".join(getattr(block, "text", "") for block in result.content)

    def list_tools(self) -> Any:
        return self.portal.call(self.client.list_tools)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A data root that does not exist yet."""
    return tmp_path / "home"


@pytest.fixture
def connect(home: Path) -> Iterator[Callable[..., Session]]:
    """``connect(**env)``: a server over ``home`` (keyword search unless told) and a client of it."""
    with ExitStack() as stack:

        def _connect(**env: str) -> Session:
            settings = load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none", **env})
            service = MemoryService(settings, client="pytest", index_in_background=True)  # as `serve` does
            server = build_server(service)
            stack.callback(shutdown_server, server)
            portal = stack.enter_context(start_blocking_portal())
            client = stack.enter_context(portal.wrap_async_context_manager(Client(server)))
            return Session(portal, client, service)

        yield _connect


@pytest.fixture
def mcp(connect: Callable[..., Session]) -> Session:
    """A client of a server over a fresh data root, default project ``general``."""
    return connect()


def _log_bytes(home: Path) -> dict[str, bytes]:
    logs = home / "logs"
    if not logs.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(logs.glob("*.jsonl"))}


@pytest.fixture
def log_bytes(home: Path) -> Callable[[], dict[str, bytes]]:
    """``log_bytes()``: every log file's bytes, to prove that a refused call wrote nothing."""
    return lambda: _log_bytes(home)


@pytest.fixture
def env_for() -> Callable[..., dict[str, str]]:
    """``env_for(home, **extra)``: the environment of a ``mnemolog`` subprocess."""
    return server_env


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``mnemolog`` subprocess over ``home`` (keyword search unless told)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNEMOLOG_", "STORAGE_CONNECTION"))}
    env.update({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none", "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra)
    return env


MNEMOLOG = [sys.executable, "-m", "mcp_server"]


@dataclass
class Run:
    """A finished ``mnemolog`` command."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(home: Path) -> Callable[..., Run]:
    """``cli(*args, input=None, **env)``: run ``mnemolog`` over ``home`` in a subprocess."""

    def _run(*args: str, input: str | None = None, **env: str) -> Run:
        proc = subprocess.run(
            [*MNEMOLOG, *args], input=input, capture_output=True, text=True, cwd=REPO_ROOT,
            env=server_env(home, **env), timeout=120,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return _run
