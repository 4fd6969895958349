"""Two "machines" (two data roots, each with its own index) sharing one Redis, with real
``mnemolog serve`` processes over stdio: what one acknowledges, both find; forgets propagate;
projects stay apart."""

from __future__ import annotations

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
PROJECTS = ("alpha", "beta")

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def server(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "serve"], env=env,
                                 cwd=str(REPO_ROOT))


def content(writer: str, n: int) -> str:
    return f"Fact {n} from writer {writer}: token {writer}n{n} was recorded."


async def search_ids(client: Client, query: str, project: str) -> list[str]:
    result = await client.call_tool("search_contexts", {"query": query, "project_id": project, "limit": 5})
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return [hit["id"] for hit in result.structured_content["results"]]


async def missing(client: Client, expected: dict[str, tuple[str, str]]) -> list[str]:
    """Tokens (token -> (project, id)) that a search in their project does not return first."""
    return [token for token, (project, memory_id) in expected.items()
            if (await search_ids(client, token, project))[:1] != [memory_id]]


def assert_clean(path: Path) -> None:
    text = path.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-3000:]


def verify(home: Path, env: dict[str, str]) -> None:
    settings = load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none",
                              "MNEMOLOG_STORAGE": env["MNEMOLOG_STORAGE"],
                              "MNEMOLOG_REDIS_PREFIX": env["MNEMOLOG_REDIS_PREFIX"]})
    service = MemoryService(settings)
    try:
        report = service.verify()
        assert report.ok and report.problems == [], report
    finally:
        service.close()


def test_two_machines_four_servers_each_share_every_acknowledged_save(
    tmp_path: Path, env_for: Env, redis_url: str, redis_prefix: str,
) -> None:
    homes = {m: tmp_path / f"machine-{m}" for m in "ab"}
    envs = {m: env_for(home, MNEMOLOG_STORAGE=redis_url, MNEMOLOG_REDIS_PREFIX=redis_prefix)
            for m, home in homes.items()}
    per_machine, each = 4, 30
    acked: dict[str, tuple[str, str]] = {}  # token -> (project, id)

    async def writer(machine: str, k: int) -> None:
        name = f"{machine}{k}"
        with (tmp_path / f"{name}.err").open("w") as errlog:
            async with Client(stdio_client(server(envs[machine]), errlog=errlog), read_timeout_seconds=60) as c:
                for n in range(each):
                    project = PROJECTS[(k + n) % 2]
                    result = await c.call_tool("save_context", {"content": content(name, n), "project_id": project})
                    assert not result.is_error, result.content
                    assert isinstance(result.structured_content, dict)
                    acked[f"{name}n{n}"] = (project, result.structured_content["id"])

    async def main() -> dict[str, Any]:
        async with anyio.create_task_group() as tg:  # eight servers, two machines, at once
            for machine in "ab":
                for k in range(per_machine):
                    tg.start_soon(writer, machine, k)
        out: dict[str, Any] = {}
        with (tmp_path / "check-a.err").open("w") as err_a, (tmp_path / "check-b.err").open("w") as err_b:
            async with Client(stdio_client(server(envs["a"]), errlog=err_a), read_timeout_seconds=60) as a, \
                    Client(stdio_client(server(envs["b"]), errlog=err_b), read_timeout_seconds=60) as b:
                out["missing_a"] = await missing(a, acked)
                out["missing_b"] = await missing(b, acked)
                # Projects stay apart: a token is never found in the other project.
                leaks = []
                for token, (project, _) in list(acked.items())[::7]:
                    other = PROJECTS[1 - PROJECTS.index(project)]
                    leaks += await search_ids(b, token, other)
                out["leaks"] = leaks
                # Forgets propagate both ways, and only to the memory forgotten.
                tokens = sorted(acked)
                by_a, by_b = tokens[:10], tokens[10:20]
                for forgetter, mine in ((a, by_a), (b, by_b)):
                    for token in mine:
                        project, memory_id = acked[token]
                        result = await forgetter.call_tool("forget_context",
                                                           {"context_id": memory_id, "project_id": project})
                        assert not result.is_error, result.content
                gone = by_a + by_b
                out["still_found"] = [t for t in gone for c in (a, b)
                                      if acked[t][1] in await search_ids(c, t, acked[t][0])]
                kept = {t: acked[t] for t in tokens[20:40]}
                out["kept_missing"] = await missing(a, kept) + await missing(b, kept)
                projects = (await a.call_tool("list_all_projects", {})).structured_content
                out["projects"] = {p["project_id"]: p["memories"] for p in projects["projects"]}  # type: ignore[index]
        return out

    out = anyio.run(main)
    total = 2 * per_machine * each
    assert len(acked) == total and len({i for _, i in acked.values()}) == total
    assert out["missing_a"] == [] and out["missing_b"] == []
    assert out["leaks"] == []
    assert out["still_found"] == [] and out["kept_missing"] == []
    assert out["projects"] == {"alpha": total // 2 - sum(acked[t][0] == "alpha" for t in sorted(acked)[:20]),
                               "beta": total // 2 - sum(acked[t][0] == "beta" for t in sorted(acked)[:20])}
    for path in tmp_path.glob("*.err"):
        assert_clean(path)
    for machine, home in homes.items():
        verify(home, envs[machine])
