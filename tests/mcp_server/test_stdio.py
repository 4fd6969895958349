"""``mnemolog serve`` over stdio in real subprocesses: lazy startup, a clean stdout, the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

REPO_ROOT = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]


def stdio_params(env: dict[str, str], *python_flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[*python_flags, "-m", "mcp_server", "serve"],
                                 env=env, cwd=str(REPO_ROOT))


def imported_modules(importtime_log: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_tools_list_is_answered_without_the_model_or_the_index(home: Path, env_for: Env, tmp_path: Path) -> None:
    """With the default (MiniLM) embedder configured, listing tools loads neither it nor SQLite."""
    env = env_for(home, MNEMOLOG_EMBEDDER="minilm")
    errlog_path = tmp_path / "stderr.txt"

    async def main() -> list[str]:
        with errlog_path.open("w") as errlog:
            async with Client(stdio_client(stdio_params(env, "-X", "importtime"), errlog=errlog)) as client:
                tools = await client.list_tools()
                assert not (home / "index.db").exists()
                return [t.name for t in tools.tools]

    names = anyio.run(main)
    assert "save_context" in names and len(names) == 7
    assert not (home / "index.db").exists() and not (home / "cache").exists()
    modules = imported_modules(errlog_path.read_text())
    assert "mcp_server.app" in modules  # the log is the server's
    assert not {m for m in modules if m.split(".")[0] in ("onnxruntime", "sqlite_vec", "sqlean", "tokenizers")}
    assert "projector.index" not in modules and "numpy" not in modules


def exchange(env: dict[str, str], requests: list[dict[str, Any]]) -> tuple[dict[int, dict[str, Any]], str]:
    """Send raw JSON-RPC ``requests`` to a server, each after the answer to the one before;
    return the answers by id and the server's stderr. Every stdout line must be a message."""
    proc = subprocess.Popen([sys.executable, "-m", "mcp_server", "serve"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    responses: dict[int, dict[str, Any]] = {}
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            while "id" in request and request["id"] not in responses:
                line = proc.stdout.readline()
                assert line, "server closed stdout early"
                message = json.loads(line)  # anything but a JSON-RPC message fails here
                assert message["jsonrpc"] == "2.0"
                if "id" in message:
                    responses[message["id"]] = message
        proc.stdin.close()
        rest, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in rest.splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0"
    return responses, err


def test_stdout_carries_nothing_but_protocol(home: Path, env_for: Env) -> None:
    """Raw JSON-RPC over the pipes, with debug logging on: every stdout line is a message."""
    requests: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "save_context", "arguments": {"content": "Raw pipes work.", "tags": ["raw"]}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "save_context", "arguments": {"content": "", "project_id": "../x"}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "search_contexts", "arguments": {"query": "raw pipes"}}},
    ]
    responses, err = exchange(env_for(home, MNEMOLOG_LOG_LEVEL="DEBUG"), requests)
    assert responses[1]["result"]["serverInfo"]["name"] == "mnemolog"
    assert "load_contexts" in responses[1]["result"]["instructions"]
    assert len(responses[2]["result"]["tools"]) == 7
    assert responses[3]["result"]["structuredContent"]["created"] is True
    assert responses[4]["result"]["isError"] is True
    found = responses[5]["result"]["structuredContent"]["results"]
    assert [r["content"] for r in found] == ["Raw pipes work."]
    assert "DEBUG" in err  # the logs went somewhere: stderr


@pytest.mark.slow
def test_end_to_end_search_by_meaning_with_the_real_model(home: Path, env_for: Env) -> None:
    """The bundled MiniLM model over stdio: a paraphrase finds the memory no word of it shares."""
    env = env_for(home, MNEMOLOG_EMBEDDER="minilm")
    facts = [
        "The deploy pipeline ships to production every Friday afternoon.",
        "Alice prefers dark mode in every editor.",
        "The invoices table is partitioned by month.",
        "Our cat is called Miso.",
    ]
    later = [  # (a fact, a question sharing none of its words)
        ("Bob is allergic to peanuts.", "which food makes him sick?"),
        ("The staging database lives in Frankfurt.", "where is the test DB hosted, geographically?"),
    ]

    async def main() -> dict[str, Any]:
        async with Client(stdio_params(env)) as client:
            for fact in facts:
                result = await client.call_tool("save_context", {"content": fact})
                assert not result.is_error, result.content
            result = await client.call_tool("search_contexts", {"query": "when do we release new versions?",
                                                                "limit": 2})
            assert not result.is_error, result.content
            assert isinstance(result.structured_content, dict)
            # Read-your-writes with the vector: each save is answered before the background
            # indexer embeds it, and a search right after finds it by meaning alone.
            for fact, paraphrase in later:
                saved = await client.call_tool("save_context", {"content": fact})
                again = await client.call_tool("search_contexts", {"query": paraphrase, "limit": 1})
                assert isinstance(saved.structured_content, dict) and isinstance(again.structured_content, dict)
                assert [r["id"] for r in again.structured_content["results"]] == [saved.structured_content["id"]], \
                    (paraphrase, again.structured_content)
            return result.structured_content

    found = anyio.run(main)
    assert found["mode"] == "hybrid" and found.get("warning") is None
    assert found["results"][0]["content"] == facts[0]
    assert (home / "cache").exists()  # the embeddings were cached for rebuilds


def test_saves_survive_a_model_that_cannot_run_and_only_stderr_hears_of_it(home: Path, env_for: Env) -> None:
    """The background indexer's model is unreachable: every save is still acknowledged, in the
    log and found (by keyword, saying so); the failure is logged to stderr, stdout stays
    protocol-only."""
    env = env_for(home, MNEMOLOG_EMBEDDER="http", MNEMOLOG_EMBED_URL="http://127.0.0.1:9/v1",
                  MNEMOLOG_EMBED_MODEL="nowhere", MNEMOLOG_EMBED_DIM="8")
    facts = [f"Background fact {n} about the quokka{n} migration." for n in range(4)]
    requests: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *({"jsonrpc": "2.0", "id": 10 + n, "method": "tools/call", "params": {
            "name": "save_context", "arguments": {"content": fact}}} for n, fact in enumerate(facts)),
        {"jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": {
            "name": "search_contexts", "arguments": {"query": "migration", "limit": 10}}},
    ]
    responses, err = exchange(env, requests)
    saved = [responses[10 + n]["result"]["structuredContent"] for n in range(len(facts))]
    assert all(s["created"] for s in saved)
    found = responses[20]["result"]["structuredContent"]
    assert found["mode"] == "keyword" and found["warning"]
    assert {r["id"] for r in found["results"]} == {s["id"] for s in saved}
    assert "embeddings unavailable" in err
    logged = [json.loads(line)["content"] for line in (home / "logs" / "general.jsonl").read_text().splitlines()]
    assert logged == facts
