"""The service layer's pure helpers, and orderings that depend on clocks."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ulid import ULID

from eventlog import EventLog
from eventlog import clock
from eventlog.clock import format_ts
from eventlog.transfer import export_lines
from mcp_server.service import InvalidArgument, Loaded, MemoryService, render_context, time_range
from mcp_server.settings import load_settings
from projector import Memory

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=timezone.utc)


def memory(**fields: object) -> Memory:
    base: dict[str, object] = {
        "id": "0123456789abcdef", "project": "acme", "content": "A fact.", "tags": ("a", "b"),
        "importance": 7, "kind": None, "created_at": "2026-11-20T09:00:00.000Z",
        "updated_at": "2026-11-21T09:00:00.000Z", "meta": {},
    }
    return Memory(**{**base, **fields})  # type: ignore[arg-type]


def test_time_range_makes_until_exclusive() -> None:
    assert time_range("yesterday", "yesterday", NOW) == ("2026-11-21T00:00:00.000Z", "2026-11-22T00:00:00.000Z")
    assert time_range(None, None, NOW) == (None, None)
    assert time_range("2026-03-01", None, NOW) == ("2026-03-01T00:00:00.000Z", None)


def test_time_range_refuses_an_empty_range() -> None:
    with pytest.raises(InvalidArgument, match="not before"):
        time_range("today", "last week", NOW)


def test_render_context_lists_memories_with_importance_date_tags_and_id() -> None:
    text = render_context(Loaded("acme", [memory(content="Line one\nline two")], 3))
    assert text.splitlines()[0] == "# Memory: project acme"
    assert "1 of 3 memories" in text
    assert "- [7] 2026-11-21 #a #b (id 01234567)\n  Line one\n  line two" in text


def test_render_context_of_an_empty_project() -> None:
    assert "No memories" in render_context(Loaded("acme", [], 0))


def _service(home: Path) -> MemoryService:
    return MemoryService(load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none"}))


def test_update_and_forget_take_effect_after_a_save_from_a_clock_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A memory saved by a machine whose clock runs an hour ahead can still be changed here."""
    # Stamping after that save moves this process's monotonic clock an hour ahead, by design;
    # put it back afterwards so later tests in this process see real time.
    monkeypatch.setattr(clock, "_last_ms", clock._last_ms)
    monkeypatch.setattr(clock, "_last_random", clock._last_random)
    log = EventLog(tmp_path)
    ahead = log.build_save("acme", "Saved on a laptop with a fast clock.", ["x"])
    ms = int(datetime.now(timezone.utc).timestamp() * 1000) + 3_600_000  # not via next_stamp: it
    log.append("acme", [dataclasses.replace(ahead, event_id=str(ULID.from_timestamp(ms / 1000)),
                                            ts=format_ts(ms))])  # would move this process's clock

    service = _service(tmp_path)
    try:
        updated = service.update(ahead.memory_id, tags=["y"], project="acme")
        assert updated.changed
        [m] = service.load(project="acme").memories
        assert m.tags == ("y",)
        service.forget(ahead.memory_id[:8], project="acme")
        assert service.load(project="acme").total == 0
    finally:
        service.close()


def test_the_service_opens_no_index_until_used(tmp_path: Path) -> None:
    service = _service(tmp_path)
    assert not service.index_opened and not (tmp_path / "index.db").exists()
    service.save("Now it opens.")
    assert service.index_opened and (tmp_path / "index.db").exists()
    service.close()
    assert not service.index_opened


def test_an_import_is_indexed_before_it_returns(tmp_path: Path) -> None:
    """Servers watching the store are not told of appends, so an import indexes what it added,
    as a save does; nothing reads the index in between."""
    source = EventLog(tmp_path / "source")
    for n in range(3):
        source.save("acme", f"imported fact {n}")
    source.save("beta", "a second project")
    source.save("gamma", "a project the target already holds")
    target = _service(tmp_path / "target")
    try:
        target.log.append("gamma", list(source.read("gamma")))
        report = target.import_lines(list(export_lines(source)))
        assert report.projects == {"acme", "beta"} and report.present == 1
    finally:
        target.close()
    index_path = tmp_path / "target" / "index.db"
    assert index_path.exists(), "the import indexed nothing"
    index = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True)
    try:
        tracked = dict(index.execute("SELECT project, offset FROM tracking").fetchall())
    finally:
        index.close()
    assert {p: tracked.get(p) for p in ("acme", "beta")} == {
        p: target.log.log_path(p).stat().st_size for p in ("acme", "beta")
    }


def test_memory_record_is_json_ready() -> None:
    from mcp_server.service import memory_record

    record = memory_record(memory(), 0.5)
    assert json.loads(json.dumps(record)) == {
        "id": "0123456789abcdef", "project_id": "acme", "content": "A fact.", "tags": ["a", "b"],
        "importance": 7, "kind": None, "created_at": "2026-11-20T09:00:00.000Z",
        "updated_at": "2026-11-21T09:00:00.000Z", "score": 0.5,
    }


def test_resave_after_a_forget_stamped_in_the_future_takes_effect(tmp_path, monkeypatch) -> None:
    """A forget written by a machine whose clock runs ahead must not swallow a later re-save."""
    monkeypatch.setattr(clock, "_last_ms", clock._last_ms)  # the re-save moves this process's clock
    monkeypatch.setattr(clock, "_last_random", clock._last_random)
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(tmp_path), "MNEMOLOG_EMBEDDER": "none"}))
    saved = service.save("the build runs on Fridays", project="acme")
    future = clock.format_ts(clock.parse_ts(service.index.get("acme", saved.id).updated_at) + 3_600_000)
    forget = service.log.build_forget("acme", saved.id)
    service.log.append("acme", [type(forget)(forget.event_id, future, "acme", saved.id, forget.actor)])
    assert service.load(project="acme").total == 0
    again = service.save("the build runs on Fridays", project="acme")
    assert again.id == saved.id and again.created
    assert [m.id for m in service.load(project="acme").memories] == [saved.id]
    service.close()
