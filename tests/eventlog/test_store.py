"""EventLog on disk: layout, permissions, reading from offsets, torn tails, bad lines, locks."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from eventlog import (
    EventLog,
    InvalidProject,
    LockTimeout,
    MemoryForgotten,
    MemorySaved,
    UnsupportedEventVersion,
    compute_memory_id,
    encode_event,
    fold,
    present,
    read_events,
    scan,
)
from eventlog import writer
from eventlog.lock import held
from eventlog.paths import default_root, ensure_logs_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_private_permissions_whatever_the_umask(root: Path) -> None:
    old = os.umask(0)  # a permissive umask must not leak into the modes
    try:
        EventLog(root).save("acme", "hello")
    finally:
        os.umask(old)
    for directory in (root, root / "logs", root / "locks"):
        assert mode(directory) == 0o700, directory
    for file in (root / "logs" / "acme.jsonl", root / "logs" / ".gitattributes", root / "locks" / "acme.lock"):
        assert mode(file) == 0o600, file
    assert (root / "logs" / ".gitattributes").read_text() == "*.jsonl merge=union\n"
    assert sorted(p.name for p in (root / "logs").iterdir()) == [".gitattributes", "acme.jsonl"]


def test_gitattributes_is_left_alone_once_it_exists(log: EventLog, root: Path) -> None:
    log.save("acme", "one")
    attributes = root / "logs" / ".gitattributes"
    attributes.write_text("*.jsonl merge=union\n*.md text\n")
    log.save("acme", "two")
    assert attributes.read_text() == "*.jsonl merge=union\n*.md text\n"


def test_default_root_follows_the_environment(tmp_path: Path) -> None:
    assert default_root({"MNEMOLOG_HOME": str(tmp_path / "m")}) == tmp_path / "m"
    if os.name == "posix" and sys.platform != "darwin":
        assert default_root({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "mnemolog"


def test_save_writes_one_line_with_the_event(log: EventLog, root: Path) -> None:
    memory_id = log.save("acme", "Use Postgres", tags=["db"], importance=8, kind="decision", meta={"src": "chat"})
    raw = (root / "logs" / "acme.jsonl").read_bytes()
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")
    payload = orjson.loads(raw)
    assert payload["v"] == 1 and payload["type"] == "memory.saved" and payload["memory_id"] == memory_id
    assert payload["actor"]["client"] == "pytest" and payload["actor"]["pid"] == os.getpid()
    (event,) = log.read("acme")
    assert isinstance(event, MemorySaved)
    assert (event.content, event.tags, event.importance, event.kind, event.meta) == (
        "Use Postgres", ("db",), 8, "decision", {"src": "chat"}
    )
    assert memory_id == compute_memory_id("acme", "Use Postgres") and len(memory_id) == 16


def test_same_content_same_id(log: EventLog) -> None:
    first = log.save("acme", "Deploys happen on Fridays")
    assert log.save("acme", "Deploys happen on Fridays") == first
    assert log.save("acme", "  Deploys   happen\non Fridays \n") == first  # whitespace-normalized
    assert log.save("other", "Deploys happen on Fridays") != first  # ids are per project
    events = list(log.read("acme"))
    assert len(events) == 3 and len({e.event_id for e in events}) == 3  # three events, one memory
    assert len(present(fold(events))) == 1


def test_forget_and_replace(log: EventLog) -> None:
    old = log.save("acme", "Staging is on port 8080")
    log.forget("acme", old.upper())  # ids are case-insensitive on input
    assert present(fold(log.read("acme"))) == {}
    again = log.save("acme", "Staging is on port 8080")
    new = log.build_save("acme", "Staging is on port 9090")
    log.replace("acme", again, new)
    *_, saved, forgotten = log.read("acme")
    assert saved == new and isinstance(forgotten, MemoryForgotten) and forgotten.memory_id == old
    assert forgotten.key > saved.key  # the forget of the old id is ordered after the new save
    assert list(present(fold(log.read("acme")))) == [("acme", new.memory_id)]


def test_append_refuses_events_of_another_project(log: EventLog, root: Path) -> None:
    event = log.build_save("beta", "belongs to beta")
    with pytest.raises(InvalidProject, match="must belong to it"):
        log.append("acme", [event])
    assert not (root / "logs" / "acme.jsonl").exists()


def test_projects_lists_only_valid_log_names(log: EventLog, root: Path) -> None:
    assert log.projects() == []
    log.save("beta", "b")
    log.save("acme", "a")
    (root / "logs" / "Not Valid.jsonl").write_bytes(b"")
    (root / "logs" / "notes.txt").write_bytes(b"")
    assert log.projects() == ["acme", "beta"]
    assert [e.project for e in log.read_all()] == ["acme", "beta"]


# -- reading ---------------------------------------------------------------------------


def test_reader_from_an_offset_yields_later_events_with_their_end_offsets(log: EventLog) -> None:
    ids = [log.save("acme", f"memory {i} " + "x" * i) for i in range(6)]
    path = log.log_path("acme")
    data = path.read_bytes()
    lines = list(scan(path))
    assert [line.event.memory_id for line in lines if line.event] == ids
    assert lines[-1].end == len(data)
    for line in lines:
        assert data[line.start : line.end] == line.raw and line.raw.endswith(b"\n")
    for k in range(len(lines) + 1):
        offset = lines[k - 1].end if k else 0
        later = list(read_events(path, offset))
        assert [e.memory_id for e, _ in later] == ids[k:]
        assert [end for _, end in later] == [line.end for line in lines[k:]]
    resumed = list(log.scan("acme", lines[2].end, line_no=4))
    assert [line.line_no for line in resumed] == [4, 5, 6]


def test_reading_across_chunk_boundaries(root: Path) -> None:
    # ~2.5 MiB: several 1 MiB read chunks, with lines straddling their edges.
    log = EventLog(root, durability="never")
    ids = [log.save("acme", f"{i} " + "y" * (1000 + i % 7)) for i in range(2500)]
    lines = list(log.scan("acme"))
    assert [line.event.memory_id for line in lines if line.event] == ids
    data = log.log_path("acme").read_bytes()
    assert all(data[line.start : line.end] == line.raw for line in lines[::97])


def test_final_line_without_newline_is_not_yielded(log: EventLog) -> None:
    log.save("acme", "complete")
    path = log.log_path("acme")
    size = path.stat().st_size
    whole = encode_event(log.build_save("acme", "written but not yet terminated"))
    with open(path, "ab") as f:
        f.write(whole[:-1])  # even a full JSON object does not count before its newline
    assert [e.content for e in log.read("acme")] == ["complete"]  # type: ignore[union-attr]
    assert log.problems("acme") == []
    assert list(read_events(path, size)) == []
    with open(path, "ab") as f:
        f.write(b"\n")
    assert [e.content for e in log.read("acme")] == ["complete", "written but not yet terminated"]  # type: ignore[union-attr]


def test_torn_tail_is_repaired_by_the_next_append(log: EventLog) -> None:
    log.save("acme", "before the crash")
    path = log.log_path("acme")
    torn = encode_event(log.build_save("acme", "the write that was cut short"))[:40]
    with open(path, "ab") as f:
        f.write(torn)
    new_id = log.save("acme", "after the crash")
    raw_lines = path.read_bytes().split(b"\n")
    assert raw_lines[1] == torn and raw_lines[-1] == b""  # the torn part stands alone
    (problem,) = log.problems("acme")
    assert problem.line_no == 2 and problem.raw == torn + b"\n" and "not valid JSON" in (problem.problem or "")
    assert [e.memory_id for e in log.read("acme")] == [compute_memory_id("acme", "before the crash"), new_id]


def test_bad_lines_are_reported_with_line_number_and_skipped(log: EventLog) -> None:
    log.save("acme", "one")
    path = log.log_path("acme")
    unknown = orjson.dumps({"v": 1, "type": "memory.pinned", "event_id": "x", "ts": "t", "project": "acme"})
    with open(path, "ab") as f:
        f.write(b"this is not json\n\n" + unknown + b"\n")
    log.save("acme", "two")
    problems = log.problems("acme")
    assert [(p.line_no, p.unknown_type) for p in problems] == [(2, False), (3, False), (4, True)]
    assert "not valid JSON" in (problems[0].problem or "") and problems[1].problem == "blank line"
    assert "unknown event type 'memory.pinned'" in (problems[2].problem or "")
    assert [e.content for e in log.read("acme")] == ["one", "two"]  # type: ignore[union-attr]


def test_event_of_another_project_is_a_problem_not_an_event(log: EventLog) -> None:
    log.save("acme", "mine")
    stray = encode_event(log.build_save("beta", "belongs to beta"))
    with open(log.log_path("acme"), "ab") as f:
        f.write(stray)
    assert [e.project for e in log.read("acme")] == ["acme"]
    (problem,) = log.problems("acme")
    assert problem.raw == stray and problem.problem == "event of project 'beta' in the log of 'acme'"


def test_newer_version_in_the_log_stops_reading(log: EventLog) -> None:
    log.save("acme", "old news")
    payload = orjson.loads(encode_event(log.build_save("acme", "from the future")))
    payload["v"] = 2
    with open(log.log_path("acme"), "ab") as f:
        f.write(orjson.dumps(payload) + b"\n")
    with pytest.raises(UnsupportedEventVersion, match="schema version 2.*upgrade mnemolog"):
        list(log.read("acme"))
    with pytest.raises(UnsupportedEventVersion):
        log.problems("acme")


# -- locking ---------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time, portalocker
lock = portalocker.Lock(sys.argv[1], mode="a", timeout=5)
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_lock_timeout_when_another_process_holds_the_lock(root: Path, child_env: dict[str, str]) -> None:
    EventLog(root).save("acme", "first")
    path = root / "logs" / "acme.jsonl"
    before = path.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / "locks" / "acme.lock")],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        impatient = EventLog(root, lock_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            impatient.save("acme", "second")
        waited = time.monotonic() - started
        assert 0.3 <= waited < 3
        assert "could not lock acme.lock within 0.3 s" in str(info.value)
        assert "another process holds it" in str(info.value)
        assert isinstance(info.value, TimeoutError)
        assert path.read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    EventLog(root, lock_timeout=5).save("acme", "second")  # the lock died with its holder
    assert len(list(EventLog(root).read("acme"))) == 2


def test_lock_excludes_other_threads_of_the_same_process(log: EventLog, root: Path) -> None:
    log.save("acme", "first")
    impatient = EventLog(root, lock_timeout=0.2)
    with held(root / "locks" / "acme.lock"):
        for writer in (log, impatient):
            writer.lock_timeout = 0.2
            with pytest.raises(LockTimeout):
                writer.save("acme", "while another thread holds the lock")
    assert len(list(log.read("acme"))) == 1


def test_threads_saving_through_one_eventlog_lose_nothing(log: EventLog) -> None:
    def work(n: int) -> list[str]:
        return [log.save("acme", f"thread {n} memory {i}") for i in range(200)]

    with ThreadPoolExecutor(4) as pool:
        returned = [i for ids in pool.map(work, range(4)) for i in ids]
    assert log.problems("acme") == []
    assert sorted(e.memory_id for e in log.read("acme")) == sorted(returned)
    assert len(set(returned)) == 800


def test_store_removed_under_a_running_eventlog_is_made_again(log: EventLog, root: Path) -> None:
    log.save("acme", "before")
    shutil.rmtree(root)
    memory_id = log.save("acme", "after")
    assert [e.memory_id for e in log.read("acme")] == [memory_id]
    assert (root / "logs" / ".gitattributes").read_text() == "*.jsonl merge=union\n"
    assert mode(root / "logs") == 0o700


def test_first_use_race_on_gitattributes_is_harmless(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    EventLog(root).save("acme", "made by the first process")
    # A second process checked before the first created the file, then tries to create it.
    monkeypatch.setattr(Path, "exists", lambda self: False)
    ensure_logs_dir(root)  # once raised FileExistsError (seen with 8 processes starting at once)
    monkeypatch.undo()
    assert (root / "logs" / ".gitattributes").read_text() == "*.jsonl merge=union\n"


@pytest.mark.parametrize(("durability", "expected"), [("always", 1), ("never", 0)])
def test_a_new_log_file_is_made_durable_in_its_directory(
    root: Path, monkeypatch: pytest.MonkeyPatch, durability: str, expected: int
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(writer, "_sync_dir", synced.append)
    log = EventLog(root, durability=durability)
    log.save("acme", "creates the file")
    log.save("acme", "appends to it")
    assert synced == [root / "logs"] * expected  # only when the file was created
