"""Moving a store between backends with ``mnemolog export`` and ``mnemolog import``: files ->
Redis -> files, with the same search results for a fixed set of queries at every step."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_server.service import MemoryService
from mcp_server.settings import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.redis]

QUERIES: list[dict[str, Any]] = [
    {"query": "database choice", "project": "acme"},
    {"query": "deploy", "project": "acme", "tags": ["ops"]},
    {"query": "postgres migration", "project": "acme", "min_importance": 6},
    {"query": "coffee", "project": "acme"},
    {"query": "budget review", "project": "beta"},
    {"query": "holiday schedule", "project": "beta", "limit": 3},
    {"query": "release", "project": "beta", "tags": ["plan"]},
]
TOPICS = ["database choice is postgres", "deploy on fridays is banned", "postgres migration plan",
          "coffee machine on floor 3", "budget review every quarter", "holiday schedule for the team",
          "release train every two weeks", "on-call rotation", "api keys live in the vault"]


def fill(service: MemoryService) -> None:
    """Saves, updates and forgets in two projects, as clients would make them."""
    ids = []
    for i in range(36):
        project = ("acme", "beta")[i % 2]
        tags = [("ops", "plan", "db")[i % 3]] + (["urgent"] if i % 5 == 0 else [])
        saved = service.save(f"{TOPICS[i % len(TOPICS)]} (note {i})", importance=1 + i % 10, tags=tags,
                             project=project)
        ids.append((project, saved.id))
    for project, memory_id in ids[::7]:
        service.forget(memory_id, project=project)
    for project, memory_id in ids[3::9]:
        if (project, memory_id) in ids[::7]:
            continue
        service.update(memory_id, content=f"revised: {memory_id}", project=project)


def results(service: MemoryService) -> list[Any]:
    out = []
    for q in QUERIES:
        found = service.search(q["query"], project=q["project"], tags=q.get("tags"),
                               min_importance=q.get("min_importance"), limit=q.get("limit", 10))
        out.append([(m.id, m.content, tuple(m.tags), m.importance, m.created_at, m.updated_at, round(score, 6))
                    for m, score in found.hits])
    out.append([(p.name, p.memories, p.last_activity) for p in service.projects()])
    out.append(service.load(project="acme", limit=50).memories)
    return out


@pytest.mark.parametrize("embedder", ["none", "minilm"])
def test_files_to_redis_and_back_give_the_same_search_results(
    tmp_path: Path, cli: Callable[..., Any], redis_url: str, redis_prefix: str, embedder: str,
) -> None:
    files, cache, back = tmp_path / "files", tmp_path / "redis-machine", tmp_path / "files-again"
    redis_env = {"MNEMOLOG_STORAGE": redis_url, "MNEMOLOG_REDIS_PREFIX": redis_prefix}

    def service(home: Path, **env: str) -> MemoryService:
        return MemoryService(load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": embedder, **env}))

    source = service(files)
    fill(source)
    want = results(source)
    source.close()
    assert sum(len(r) for r in want[:7]) >= 6  # the queries do find things

    dump = tmp_path / "dump.jsonl"
    run = cli("export", "-o", str(dump), "--json", MNEMOLOG_HOME=str(files))
    assert run.code == 0, run.err
    events = run.json["events"]
    assert events == len(dump.read_bytes().splitlines()) and (dump.stat().st_mode & 0o777) == 0o600

    run = cli("import", str(dump), "--json", MNEMOLOG_HOME=str(cache), **redis_env)
    assert run.code == 0, run.err
    assert run.json == {"added": events, "present": 0, "skipped": 0, "projects": ["acme", "beta"]}
    moved = service(cache, **redis_env)
    assert results(moved) == want
    moved.close()

    again = cli("import", str(dump), "--json", MNEMOLOG_HOME=str(cache), **redis_env)
    assert again.json["added"] == 0 and again.json["present"] == events  # idempotent by event id

    exported = cli("export", MNEMOLOG_HOME=str(cache), **redis_env)  # to stdout
    assert exported.code == 0 and exported.out.encode() == dump.read_bytes()
    assert f"exported {events} event(s)" in exported.err
    one = cli("export", "--project", "beta", MNEMOLOG_HOME=str(cache), **redis_env)
    assert {json.loads(line)["project"] for line in one.out.splitlines()} == {"beta"}

    run = cli("import", "-", input=exported.out, MNEMOLOG_HOME=str(back))
    assert run.code == 0, run.err
    returned = service(back)
    assert results(returned) == want
    assert returned.verify().ok
    returned.close()
