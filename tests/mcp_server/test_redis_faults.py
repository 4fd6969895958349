"""Redis going away under running servers: ``kill -9`` of ``redis-server`` in the middle of a
stream of saves, then a restart from its append-only file. Every acknowledged save is still
there, tool calls failed fast and clearly meanwhile, and the same server processes carry on."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from _redis_server import RedisServer
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from eventlog.redis_log import RedisEventLog
from mcp_server.service import MemoryService
from mcp_server.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]
PROJECT = "outage"
TIMEOUT = 2.0

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def server(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "serve"], env=env,
                                 cwd=str(REPO_ROOT))


def test_kill_9_of_redis_during_saves_loses_no_acknowledged_save_and_servers_reconnect(
    tmp_path: Path, env_for: Env,
) -> None:
    redis = RedisServer(tmp_path / "redis", aof=True).start()
    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    envs = [env_for(home, MNEMOLOG_STORAGE=redis.url, MNEMOLOG_REDIS_TIMEOUT=str(TIMEOUT)) for home in homes]
    writers = 3
    acked: dict[str, str] = {}  # token -> id, once the save was acknowledged
    failures: list[tuple[float, str]] = []  # (seconds the failed call took, its message)
    after_restart = {f"w{k}": 0 for k in range(writers)}
    phase = {"name": "before"}

    async def writer(k: int) -> None:
        name = f"w{k}"
        with (tmp_path / f"{name}.err").open("w") as errlog:
            async with Client(stdio_client(server(envs[k % 2]), errlog=errlog), read_timeout_seconds=60) as client:
                n, deadline = 0, time.monotonic() + 90
                while after_restart[name] < 15:  # the same server process, before and after
                    assert time.monotonic() < deadline, "saves never worked again after the restart"
                    n += 1
                    token = f"{name}a{n}"
                    started = time.monotonic()
                    result = await client.call_tool(
                        "save_context", {"content": f"{name} attempt {n}: token {token}", "project_id": PROJECT})
                    took = time.monotonic() - started
                    if result.is_error:
                        failures.append((took, " ".join(getattr(b, "text", "") for b in result.content)))
                        await anyio.sleep(0.05)
                        continue
                    assert isinstance(result.structured_content, dict)
                    acked[token] = result.structured_content["id"]
                    if phase["name"] == "restarted":
                        after_restart[name] += 1

    async def killer() -> None:
        while len(acked) < 40:
            await anyio.sleep(0.005)
        redis.kill()  # SIGKILL: no shutdown, no final fsync
        phase["name"] = "down"
        await anyio.sleep(1.5)
        await anyio.to_thread.run_sync(redis.start)  # same port, same directory: replays the AOF
        phase["name"] = "restarted"

    async def main() -> list[str]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            for k in range(writers):
                tg.start_soon(writer, k)
        missing = []
        with (tmp_path / "checker.err").open("w") as errlog:
            async with Client(stdio_client(server(envs[1]), errlog=errlog), read_timeout_seconds=60) as checker:
                for token, memory_id in acked.items():
                    result = await checker.call_tool("search_contexts",
                                                     {"query": token, "project_id": PROJECT, "limit": 1})
                    hits = result.structured_content["results"]  # type: ignore[index]
                    if [h["id"] for h in hits] != [memory_id]:
                        missing.append(token)
        return missing

    try:
        assert anyio.run(main) == []
        stored = {e.memory_id for e in RedisEventLog(redis.url, root=tmp_path / "check").read(PROJECT)}
        assert set(acked.values()) <= stored, "acknowledged saves lost"
        assert failures, "the outage was not noticed by any save"
        assert max(took for took, _ in failures) < TIMEOUT + 3, sorted(failures)[-3:]
        for _, text in failures:
            assert f"Redis at {redis.url}" in text, text
        for path in tmp_path.glob("*.err"):
            text = path.read_text()
            assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
        for home in homes:
            service = MemoryService(load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none",
                                                   "MNEMOLOG_STORAGE": redis.url}))
            try:
                report = service.verify()
                assert report.ok and report.problems == [], report
                assert service.load(project=PROJECT, limit=1).total == len(stored)
            finally:
                service.close()
    finally:
        redis.stop()


def test_with_redis_unreachable_every_tool_fails_fast_with_a_clear_error(
    connect: Callable[..., Any], tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis", aof=True).start()
    port = redis.port
    session = connect(MNEMOLOG_STORAGE=f"redis://:pa55word-secret@127.0.0.1:{port}/0", MNEMOLOG_REDIS_TIMEOUT="1")
    try:
        redis.extra = ["--requirepass", "pa55word-secret"]
        redis.stop()
        redis.start()
        saved = session.ok("save_context", content="saved while Redis is up")
        redis.stop()
        calls: list[tuple[str, dict[str, Any]]] = [
            ("save_context", {"content": "while Redis is down"}),
            ("search_contexts", {"query": "saved"}),
            ("load_contexts", {}),
            ("forget_context", {"context_id": saved["id"]}),
            ("list_all_projects", {}),
            ("get_popular_tags", {}),
        ]
        for tool, arguments in calls:
            started = time.monotonic()
            text = session.error(tool, **arguments)
            assert time.monotonic() - started < 3, tool
            assert f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable" in text, text
            assert "pa55word-secret" not in text
        redis.start()  # back, with nothing lost: the same session carries on
        found = session.ok("search_contexts", query="saved")
        assert [r["id"] for r in found["results"]] == [saved["id"]]
        assert session.ok("save_context", content="after the outage")["created"] is True
    finally:
        redis.stop()
