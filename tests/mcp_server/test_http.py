"""``mnemolog serve --http`` in a subprocess: a real client session, Host/Origin checks, the token."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

REPO_ROOT = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]
TOKEN = "test-token-0123456789abcdef"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(home: Path, env_for: Env, tmp_path: Path, **env: str) -> Iterator[str]:
    """Run ``serve --http`` on a free loopback port; yield the endpoint URL."""
    port = free_port()
    errlog = (tmp_path / f"http-{port}.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--http", "--port", str(port)],
        cwd=REPO_ROOT, env=env_for(home, **env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=errlog,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / f"http-{port}.err").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start listening"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errlog.close()
        assert proc.stdout is not None and proc.stdout.read() == b""  # nothing on stdout, ever


async def session_calls(client: Client) -> dict[str, Any]:
    tools = await client.list_tools()
    saved = await client.call_tool("save_context", {"content": "HTTP clients share the store.", "tags": ["http"]})
    found = await client.call_tool("search_contexts", {"query": "share store"})
    bad = await client.call_tool("forget_context", {"context_id": "nope"})
    return {"tools": [t.name for t in tools.tools], "saved": saved, "found": found, "bad": bad,
            "server": client.server_info}


def check_session(result: dict[str, Any]) -> None:
    assert len(result["tools"]) == 7 and "load_contexts" in result["tools"]
    assert result["saved"].structured_content["created"] is True
    [hit] = result["found"].structured_content["results"]
    assert hit["content"] == "HTTP clients share the store."
    assert result["bad"].is_error and "at least 6" in result["bad"].content[0].text


def test_a_real_client_session_over_streamable_http(home: Path, env_for: Env, tmp_path: Path) -> None:
    with http_server(home, env_for, tmp_path) as url:

        async def main() -> dict[str, Any]:
            async with Client(url, mode="legacy") as client:  # initialize handshake
                return await session_calls(client)

        check_session(anyio.run(main))

        async def second() -> Any:  # another session sees the first one's write
            async with Client(url) as client:
                return (await client.call_tool("load_contexts", {})).structured_content

        assert anyio.run(second)["total"] == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"host": "evil.example:8765"}, 421),
        ({"origin": "http://evil.example"}, 403),
    ],
)
def test_foreign_host_or_origin_is_refused(home: Path, env_for: Env, tmp_path: Path, headers: dict[str, str],
                                           status: int) -> None:
    with http_server(home, env_for, tmp_path) as url:
        refused = httpx.post(url, json=INITIALIZE, headers={**JSON_HEADERS, **headers}, timeout=10)
        assert refused.status_code == status
        allowed = httpx.post(url, json=INITIALIZE, headers={**JSON_HEADERS, "origin": "http://localhost:3000"},
                             timeout=10)
        assert allowed.status_code == 200


def test_with_a_token_every_request_needs_it(home: Path, env_for: Env, tmp_path: Path) -> None:
    with http_server(home, env_for, tmp_path, MNEMOLOG_HTTP_TOKEN=TOKEN) as url:
        assert httpx.post(url, json=INITIALIZE, headers=JSON_HEADERS, timeout=10).status_code == 401
        wrong = {**JSON_HEADERS, "authorization": "Bearer not-the-token-at-all"}
        assert httpx.post(url, json=INITIALIZE, headers=wrong, timeout=10).status_code == 401

        async def main() -> dict[str, Any]:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
            async with http, Client(streamable_http_client(url, http_client=http)) as client:
                return await session_calls(client)

        check_session(anyio.run(main))
