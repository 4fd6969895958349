"""The stdio transport's pipes (mcp_server/pipes.py), in real subprocesses: only protocol on
stdout, the descriptors put back, over-long lines, a client that stops reading, and the SDK's
transport where stdin is not a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp_server.pipes import MAX_LINE_BYTES, std_pipes_usable

REPO_ROOT = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pipes-test", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}

# Echoes each line upper-cased through std_pipes; meanwhile writes stray output to stdout (a
# print and a raw write to fd 1) and reads stdin's fd 0; prints once more after the pipes are
# given back.
ECHO = """
import asyncio, os, sys
from mcp_server.pipes import std_pipes

async def main():
    async with std_pipes() as (lines, out):
        print("stray print")
        sys.stdout.flush()
        os.write(1, b"stray write to fd 1\\n")
        assert sys.stdin.read() == ""  # fd 0 reads the null device meanwhile
        async for line in lines:
            await out.write(line.upper())
            await out.flush()
    print("after", flush=True)

asyncio.run(main())
"""


def serve(env: dict[str, str], stdin: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mcp_server", "serve"], cwd=REPO_ROOT, env=env,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def answers(stdout: bytes) -> dict[int, dict[str, Any]]:
    """Every stdout line parsed as a JSON-RPC message (anything else fails), by id."""
    messages = [json.loads(text) for text in stdout.decode().splitlines()]
    assert all(m["jsonrpc"] == "2.0" for m in messages)
    return {m["id"]: m for m in messages if "id" in m}


def test_only_the_wire_reaches_stdout_and_the_descriptors_come_back(env_for: Env, home: Path) -> None:
    done = subprocess.run([sys.executable, "-c", ECHO], cwd=REPO_ROOT, env=env_for(home), input=b"one\ntwo\n",
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"ONE\nTWO\nafter\n"
    assert b"stray print\nstray write to fd 1\n" in done.stderr


def test_an_over_long_line_is_a_parse_error_and_the_session_goes_on(env_for: Env, home: Path) -> None:
    proc = serve(env_for(home))
    assert proc.stdin is not None and proc.stdout is not None
    flood = b"x" * (MAX_LINE_BYTES + 1024) + b"\n"
    proc.stdin.write(line(INITIALIZE) + line(INITIALIZED) + flood + line({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
    proc.stdin.flush()
    replies = {r["id"]: r for r in (json.loads(proc.stdout.readline()) for _ in range(3))}  # in any order
    # (stdin stays open until the answers are in: the SDK cancels requests in flight at its end)
    assert set(replies) == {1, None, 2} and replies[2]["result"] == {}
    assert replies[None]["error"]["code"] == -32700
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out == b""


def test_a_line_the_session_cannot_read_is_answered_and_writes_nothing(env_for: Env, home: Path) -> None:
    proc = serve(env_for(home))
    assert proc.stdin is not None and proc.stdout is not None
    # A lone surrogate escape: JSON to Python's json module, not to the SDK's parser, which
    # used to drop the line without an answer (the client waited for ever).
    lone_surrogate = (b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "save_context", '
                      b'"arguments": {"content": "hello \\ud83d"}}}\n')
    proc.stdin.write(line(INITIALIZE) + line(INITIALIZED) + b"not json at all\n" + lone_surrogate
                     + line({"jsonrpc": "2.0", "id": 8, "method": 5}) + b"\n"
                     + line({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
    proc.stdin.flush()
    replies = {r["id"]: r for r in (json.loads(proc.stdout.readline()) for _ in range(5))}  # in any order
    assert set(replies) == {1, None, 7, 8, 9} and replies[9]["result"] == {}
    assert replies[None]["error"]["code"] == -32700 and "Invalid JSON" in replies[None]["error"]["message"]
    assert replies[7]["error"]["code"] == -32600 and "Invalid JSON" in replies[7]["error"]["message"]
    assert replies[8]["error"]["code"] == -32600 and "method" in replies[8]["error"]["message"]
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out == b""  # the blank line got no answer
    assert not list(home.glob("**/*.jsonl"))  # the refused save wrote nothing


def test_a_client_that_closes_stdout_gets_a_warning_and_a_clean_exit(env_for: Env, home: Path) -> None:
    proc = serve(env_for(home))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(line(INITIALIZE))
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1
    proc.stdout.close()  # the client stops reading
    for i in range(2, 7):
        proc.stdin.write(line({"jsonrpc": "2.0", "id": i, "method": "tools/list"}))
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    err = proc.stderr.read().decode()
    assert "the client closed the server's stdout" in err
    assert "Traceback" not in err and "error" not in err.lower()


def test_a_terminal_for_stdout_is_served_by_the_sdk_transport(env_for: Env, home: Path) -> None:
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "mcp_server", "serve"], cwd=REPO_ROOT, env=env_for(home),
                                stdin=subprocess.PIPE, stdout=terminal, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(line(INITIALIZE) + line(INITIALIZED) + line({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        proc.stdin.flush()
        with os.fdopen(os.dup(controller), "rb") as screen:
            replies = [json.loads(screen.readline()) for _ in range(2)]  # the terminal adds "\r": still JSON
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(controller)
        os.close(terminal)
    assert replies[0]["id"] == 1 and len(replies[1]["result"]["tools"]) == 7


def test_pipes_are_used_only_for_pipes_and_sockets(tmp_path: Path) -> None:
    probe = "from mcp_server.pipes import std_pipes_usable; import sys; sys.stderr.write(str(std_pipes_usable()))"

    def usable(stdin: Any, stdout: Any) -> str:
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=60)
        return done.stderr.decode()

    assert usable(subprocess.PIPE, subprocess.PIPE) == "True"
    with (tmp_path / "in").open("wb+") as regular:
        assert usable(regular, subprocess.PIPE) == "False"
    controller, terminal = os.openpty()
    try:
        assert usable(subprocess.PIPE, terminal) == "False"
    finally:
        os.close(controller)
        os.close(terminal)
    assert isinstance(std_pipes_usable(), bool)  # and in this process, whatever pytest gave it
