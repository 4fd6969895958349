"""Many ``mnemolog serve`` processes on one store, driven by real MCP stdio clients.

Claims about processes, tested with processes: concurrent servers lose nothing, a save
acknowledged by one is found by another right after, and ``kill -9`` of one server leaves the
others working and every acknowledged save in place.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_server.service import MemoryService
from mcp_server.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]
PROJECT = "shared"

pytestmark = pytest.mark.slow


def server(env: dict[str, str], pidfile: Path | None = None) -> StdioServerParameters:
    """A ``mnemolog serve`` process; with ``pidfile``, started through ``sh`` that records its pid
    and then ``exec``s it, so the pid is the server's own."""
    if pidfile is None:
        return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "serve"], env=env,
                                     cwd=str(REPO_ROOT))
    script = 'echo $$ > "$0"; exec "$1" -m mcp_server serve'
    return StdioServerParameters(command="/bin/sh", args=["-c", script, str(pidfile), sys.executable], env=env,
                                 cwd=str(REPO_ROOT))


def content(writer: str, n: int) -> str:
    # A token of its own per memory ("w2n57"), so a keyword search can find each one.
    return f"Fact {n} from writer {writer}: token {writer}n{n} was recorded."


async def save_stream(client: Client, writer: str, count: int, acked: list[str]) -> None:
    for n in range(count):
        result = await client.call_tool("save_context", {"content": content(writer, n), "project_id": PROJECT})
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict) and result.structured_content["created"] is True
        acked.append(result.structured_content["id"])


async def find_all(client: Client, expected: dict[str, str]) -> list[str]:
    """The ids in ``expected`` (token -> id) that a search for their token does not return first."""
    missing = []
    for token, memory_id in expected.items():
        result = await client.call_tool("search_contexts", {"query": token, "project_id": PROJECT, "limit": 1})
        assert not result.is_error, result.content
        hits = result.structured_content["results"] if isinstance(result.structured_content, dict) else []
        if [h["id"] for h in hits] != [memory_id]:
            missing.append(token)
    return missing


def assert_clean_stderr(path: Path) -> None:
    text = path.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-3000:]


def verify_store(home: Path) -> None:
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none"}))
    try:
        report = service.verify()
        assert report.ok and report.problems == [], report
    finally:
        service.close()


def test_four_servers_saving_at_once_lose_nothing(home: Path, env_for: Env, tmp_path: Path) -> None:
    writers, each = 4, 100
    env = env_for(home)
    acked: dict[str, list[str]] = {f"w{k}": [] for k in range(writers)}
    errlogs = [tmp_path / f"server{k}.err" for k in range(writers + 1)]

    async def writer(k: int) -> None:
        with errlogs[k].open("w") as errlog:
            async with Client(stdio_client(server(env), errlog=errlog), read_timeout_seconds=60) as client:
                await save_stream(client, f"w{k}", each, acked[f"w{k}"])

    async def main() -> tuple[list[str], dict[str, Any]]:
        async with anyio.create_task_group() as tg:  # four processes started at once
            for k in range(writers):
                tg.start_soon(writer, k)
        expected = {f"w{k}n{n}": acked[f"w{k}"][n] for k in range(writers) for n in range(each)}
        with errlogs[-1].open("w") as errlog:  # a fifth process finds all of them
            async with Client(stdio_client(server(env), errlog=errlog), read_timeout_seconds=60) as client:
                missing = await find_all(client, expected)
                projects = (await client.call_tool("list_all_projects", {})).structured_content
        assert isinstance(projects, dict)
        return missing, projects

    missing, projects = anyio.run(main)
    assert all(len(ids) == each for ids in acked.values())
    assert len({i for ids in acked.values() for i in ids}) == writers * each
    assert missing == []
    assert projects["projects"] == [{"project_id": PROJECT, "memories": writers * each,
                                     "last_activity": projects["projects"][0]["last_activity"]}]
    for path in errlogs:
        assert_clean_stderr(path)
    verify_store(home)


def test_a_save_acknowledged_by_one_server_is_found_by_another_right_after(home: Path, env_for: Env) -> None:
    env = env_for(home)

    async def main() -> list[str]:
        late = []
        async with Client(server(env)) as one, Client(server(env)) as two:
            for n in range(25):
                writer, reader = (one, two) if n % 2 == 0 else (two, one)
                saved = await writer.call_tool("save_context", {"content": content("ryw", n), "project_id": PROJECT})
                assert not saved.is_error, saved.content
                memory_id = saved.structured_content["id"]  # type: ignore[index]
                if await find_all(reader, {f"rywn{n}": memory_id}):
                    late.append(memory_id)
                forgot = await reader.call_tool("forget_context", {"context_id": memory_id, "project_id": PROJECT})
                assert not forgot.is_error, forgot.content  # and the other way round: found to forget
                if await find_all(writer, {f"rywn{n}": memory_id}) == []:
                    late.append(f"forgotten {memory_id} still found")
        return late

    assert anyio.run(main) == []


def test_kill_9_of_one_server_leaves_the_others_working_and_acknowledged_saves_kept(
    home: Path, env_for: Env, tmp_path: Path,
) -> None:
    env = env_for(home)
    each, kill_after = 80, 15
    pidfile = tmp_path / "victim.pid"
    acked: dict[str, list[str]] = {"victim": [], "s1": [], "s2": []}
    victim_error: list[BaseException] = []

    async def victim() -> None:
        try:
            async with Client(server(env, pidfile), read_timeout_seconds=30) as client:
                await save_stream(client, "victim", each, acked["victim"])
        except BaseException as e:  # the connection dies with the process: expected here only
            if isinstance(e, anyio.get_cancelled_exc_class()):
                raise
            victim_error.append(e)

    async def survivor(name: str) -> None:
        async with Client(server(env), read_timeout_seconds=60) as client:
            await save_stream(client, name, each, acked[name])

    async def killer() -> None:
        while len(acked["victim"]) < kill_after:
            await anyio.sleep(0.001)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    async def main() -> list[str]:
        async with anyio.create_task_group() as tg:
            for task in (victim, killer):
                tg.start_soon(task)
            for name in ("s1", "s2"):
                tg.start_soon(survivor, name)
        expected = {f"{name}n{n}": memory_id for name, ids in acked.items() for n, memory_id in enumerate(ids)}
        async with Client(server(env), read_timeout_seconds=60) as checker:
            return await find_all(checker, expected)

    missing = anyio.run(main)
    assert victim_error, "the killed server's client should have lost its connection"
    assert kill_after <= len(acked["victim"]) < each
    assert len(acked["s1"]) == len(acked["s2"]) == each
    assert missing == []
    verify_store(home)
