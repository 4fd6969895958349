"""The index over the Redis backend: two "machines" (two data roots, each with its own index)
projecting one set of streams, through ``EventStore`` only."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _projector_support import FakeEmbedder, diff_rows, fold_rows, index_rows

from eventlog import encode_event
from eventlog.redis_log import RedisEventLog
from projector import Index

Machine = tuple[RedisEventLog, Index]


@pytest.fixture
def machine(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[Callable[..., Machine]]:
    """``machine(name, embedder=None)``: a Redis log and an index under ``tmp_path/name``."""
    opened: list[Machine] = []

    def make(name: str, embedder: Any = None) -> Machine:
        log = RedisEventLog(redis_url, prefix=redis_prefix, root=tmp_path / name, client=name)
        index = Index(log, embedder)
        opened.append((log, index))
        return log, index

    yield make
    for log, index in opened:
        index.close()
        log.close()


def tracked(index: Index, project: str) -> tuple[int, str] | None:
    """(entries applied, last entry id) from a read-only connection: looking must not catch up."""
    if not index.path.exists():
        return None
    conn = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT offset, entry_id FROM tracking WHERE project = ?", (project,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def test_a_save_on_one_machine_is_found_on_the_other_at_its_next_read(machine: Callable[..., Machine]) -> None:
    log_a, index_a = machine("a", FakeEmbedder())
    log_b, index_b = machine("b", FakeEmbedder())
    memory_id = log_a.save("acme", "the deploy key rotates on Mondays", tags=["ops"])
    assert index_a.get("acme", memory_id).content == "the deploy key rotates on Mondays"
    hits = index_b.search("deploy key", project="acme").hits
    assert [h.memory.id for h in hits] == [memory_id]
    log_b.forget("acme", memory_id, not_before_ts=index_b.get("acme", memory_id).updated_at)
    assert index_a.search("deploy key", project="acme").hits == []  # the forget propagates back
    assert [p.name for p in index_a.projects()] == ["acme"]
    assert index_b.catch_up() == 1  # its own forget, written behind its back
    assert index_a.catch_up() == 0 and index_b.catch_up() == 0  # nothing new: one round trip, no work
    for index in (index_a, index_b):
        assert index.verify().ok


def test_the_index_equals_the_fold_of_the_streams(machine: Callable[..., Machine]) -> None:
    log, index = machine("a")
    for i in range(40):
        project = ("acme", "beta")[i % 2]
        memory_id = log.save(project, f"fact {i % 13}", importance=1 + i % 10, tags=[f"t{i % 3}"])
        if i % 5 == 0:
            log.forget(project, memory_id)
        if i % 7 == 0:
            log.replace(project, memory_id, log.build_save(project, f"fact {i} revised"))
        if i % 9 == 0:
            index.catch_up()  # partial projections along the way
    index.catch_up()
    with index._mutex:
        got = index_rows(index._connection())
    assert diff_rows(fold_rows(log.read_all()), got) == []
    assert tracked(index, "acme") == (len(list(log.scan("acme"))), list(log.scan("acme"))[-1].entry_id)


def test_the_listener_brings_another_machine_up_to_date_within_a_second(machine: Callable[..., Machine]) -> None:
    log_a, _ = machine("a")
    log_b, index_b = machine("b")
    log_a.save("acme", "known before B starts")
    index_b.catch_up()
    index_b.start_watching()
    try:
        for project in ("acme", "new-project"):
            log_a.save(project, f"saved on A into {project}")
            started = time.monotonic()
            want = len(list(log_a.scan(project)))
            while (tracked(index_b, project) or (0, ""))[0] != want:  # no query on B: only its listener
                assert time.monotonic() - started < 1.0, f"B did not see the save in {project} within 1 s"
                time.sleep(0.01)
    finally:
        index_b.close()


def test_bad_entries_are_counted_and_a_newer_version_stops_only_that_project(
    machine: Callable[..., Machine], redis_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    import redis

    log, index = machine("a")
    r = redis.Redis.from_url(redis_url)
    good = log.save("acme", "good one")
    r.xadd(log.key("acme"), {"e": b"not json\n"})
    future = orjson.loads(encode_event(log.build_save("acme", "from the future")))
    future["v"] = 2
    log.save("beta", "beta is fine")
    index.catch_up()
    r.xadd(log.key("acme"), {"e": orjson.dumps(future) + b"\n"})
    after = log.save("acme", "after the future event")
    with caplog.at_level("ERROR"):
        index.catch_up()
    assert "projection of project 'acme' stopped" in caplog.text and "upgrade mnemolog" in caplog.text
    assert index.get("acme", good).content == "good one"
    with pytest.raises(LookupError):
        index.get("acme", after)  # behind the newer event: not applied, never skipped silently
    assert [h.memory.content for h in index.search("beta", project="beta").hits] == ["beta is fine"]
    report = index.verify()
    assert any("acme: projection stopped" in p for p in report.problems)
    assert any("not valid JSON" in p for p in report.problems)
    with index._mutex:
        assert index._connection().execute("SELECT bad_lines FROM tracking WHERE project = 'acme'").fetchone()[0] == 1


def test_a_deleted_or_reloaded_stream_is_noticed(machine: Callable[..., Machine], redis_url: str) -> None:
    import redis

    log, index = machine("a")
    r = redis.Redis.from_url(redis_url)
    ids = [log.save("acme", f"memory {i}") for i in range(5)]
    index.catch_up()
    lines = [line.raw for line in log.scan("acme")]
    with r.pipeline(transaction=True) as pipe:  # reloaded with only part of it: new entry ids
        pipe.delete(log.key("acme"))
        for raw in lines[:2]:
            pipe.xadd(log.key("acme"), {"e": raw})
        pipe.execute()
    assert {m.id for m in index.load_context("acme")[0]} == set(ids[:2])
    r.delete(log.key("acme"))
    assert index.load_context("acme")[0] == []
    assert index.verify().ok


def test_rebuild_reports_progress_in_entries(machine: Callable[..., Machine]) -> None:
    log, index = machine("a", FakeEmbedder())
    for i in range(30):
        log.save(("acme", "beta")[i % 2], f"fact {i}")
    seen: list[tuple[int, int]] = []
    assert index.rebuild(lambda done, total: seen.append((done, total))) == 30
    assert seen[-1] == (30, 30)
    assert index.verify().ok
