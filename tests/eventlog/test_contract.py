"""One contract, every backend: the file log and the Redis log pass the same tests.

Each test takes ``backend`` (parametrized over "file" and "redis"): it opens stores on one
shared backing (a data root, or a Redis server and key prefix) and can do what a foreign or
crashed writer would (inject raw entries, rewrite or delete a log) and snapshot everything
stored, to prove that a refused call wrote nothing.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest

from eventlog import (
    ContentTooLarge,
    Event,
    EventLog,
    Head,
    EventStore,
    InvalidContent,
    InvalidImportance,
    InvalidMemoryId,
    InvalidMeta,
    InvalidProject,
    InvalidTags,
    Mark,
    MemoryForgotten,
    MemorySaved,
    UnsupportedEventVersion,
    ValidationError,
    compute_memory_id,
    encode_event,
    fold,
    present,
)
from eventlog.paths import ensure_logs_dir
from eventlog.redis_log import RedisEventLog

HERE = Path(__file__).resolve().parent
STORE_WRITER = HERE / "_store_writer.py"


class Backend(Protocol):
    name: str

    def open(self, **options: Any) -> EventStore: ...
    def spec(self) -> str: ...
    def inject(self, project: str, raw: bytes) -> None: ...
    def inject_torn(self, project: str, raw: bytes) -> None: ...
    def rewrite(self, project: str, lines: list[bytes]) -> None: ...
    def delete(self, project: str) -> None: ...
    def snapshot(self) -> Any: ...


class FileBackend:
    """Logs as files under a data root."""

    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, **options: Any) -> EventStore:
        return EventLog(self.root, client="pytest", **options)

    def spec(self) -> str:
        return f"file:{self.root}"

    def _path(self, project: str) -> Path:
        ensure_logs_dir(self.root)
        return self.root / "logs" / f"{project}.jsonl"

    def inject(self, project: str, raw: bytes) -> None:
        with open(self._path(project), "ab") as f:
            f.write(raw + b"\n")

    def inject_torn(self, project: str, raw: bytes) -> None:
        with open(self._path(project), "ab") as f:
            f.write(raw)  # a crashed writer: no newline

    def rewrite(self, project: str, lines: list[bytes]) -> None:
        temp = self._path(project).with_suffix(".tmp")
        temp.write_bytes(b"".join(lines))
        os.replace(temp, self._path(project))

    def delete(self, project: str) -> None:
        self._path(project).unlink()

    def snapshot(self) -> Any:
        logs = self.root / "logs"
        return {p.name: p.read_bytes() for p in sorted(logs.glob("*.jsonl"))} if logs.is_dir() else {}


class RedisBackend:
    """Logs as streams on a real Redis server, under a key prefix of the test's own."""

    name = "redis"

    def __init__(self, url: str, prefix: str, root: Path) -> None:
        import redis

        self.url, self.prefix, self.root = url, prefix, root
        self.r = redis.Redis.from_url(url, socket_timeout=5)

    def open(self, **options: Any) -> EventStore:
        return RedisEventLog(self.url, prefix=self.prefix, root=self.root, client="pytest", **options)

    def spec(self) -> str:
        return f"redis:{self.url}|{self.prefix}|{self.root}"

    def _key(self, project: str) -> str:
        return f"{self.prefix}log:{project}"

    def inject(self, project: str, raw: bytes) -> None:
        self.r.xadd(self._key(project), {"e": raw + b"\n"})
        self.r.sadd(f"{self.prefix}projects", project)

    def inject_torn(self, project: str, raw: bytes) -> None:
        self.r.xadd(self._key(project), {"e": raw})
        self.r.sadd(f"{self.prefix}projects", project)

    def rewrite(self, project: str, lines: list[bytes]) -> None:
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(project))
            for line in lines:
                pipe.xadd(self._key(project), {"e": line})
            pipe.execute()

    def delete(self, project: str) -> None:
        self.r.delete(self._key(project))
        self.r.srem(f"{self.prefix}projects", project)

    def snapshot(self) -> Any:
        keys = sorted(self.r.scan_iter(match=f"{self.prefix}*"))
        out = {}
        for key in keys:
            kind = self.r.type(key)
            out[key] = self.r.xrange(key) if kind == b"stream" else sorted(self.r.smembers(key))
        return out


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, on fresh storage."""
    if request.param == "file":
        yield FileBackend(tmp_path / "store")
    else:
        url = request.getfixturevalue("redis_url")
        backend = RedisBackend(url, request.getfixturevalue("redis_prefix"), tmp_path / "local")
        yield backend
        backend.r.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[EventStore]:
    log = backend.open()
    yield log
    log.close()


def marks_of(lines: list[Any], head: Head | None) -> list[Mark]:
    """The mark before each line and after the last: what a reader stores as it goes (it
    starts from the identity of the log it read, as given by its head)."""
    marks = [Mark(identity=head.identity if head else "")]
    for line in lines:
        marks.append(line.advance(marks[-1]))
    return marks


# -- append and read -------------------------------------------------------------------------


def test_the_store_is_an_event_store(store: EventStore) -> None:
    assert isinstance(store, EventStore)
    assert store.projects() == [] and list(store.read_all()) == []
    assert store.heads(["acme"]) == {"acme": None}


def test_save_forget_replace_and_read_back_in_order(store: EventStore, backend: Backend) -> None:
    first = store.save("acme", "Use Postgres", tags=["db"], importance=8, kind="decision", meta={"src": "chat"})
    assert first == compute_memory_id("acme", "Use Postgres")
    store.forget("acme", first.upper())  # ids are case-insensitive on input
    again = store.save("acme", "Use Postgres")
    new = store.build_save("acme", "Use Postgres 16")
    store.replace("acme", again, new)
    store.save("beta", "another project")
    events = list(backend.open().read("acme"))  # another instance (process) reads the same
    assert [e.type for e in events] == ["memory.saved", "memory.forgotten", "memory.saved", "memory.saved",
                                        "memory.forgotten"]
    saved = events[0]
    assert isinstance(saved, MemorySaved)
    assert (saved.content, saved.tags, saved.importance, saved.kind, saved.meta) == (
        "Use Postgres", ("db",), 8, "decision", {"src": "chat"})
    assert saved.actor.client == "pytest" and saved.actor.pid == os.getpid()
    assert events[3] == new and events[4].memory_id == first and events[4].key > new.key
    assert list(present(fold(events))) == [("acme", new.memory_id)]
    assert store.projects() == ["acme", "beta"]
    assert [e.project for e in store.read_all()] == ["acme"] * 5 + ["beta"]


def test_each_entry_holds_the_codec_line(store: EventStore) -> None:
    event = store.build_save("acme", "exact bytes", tags=["a"])
    store.append("acme", [event])
    (line,) = store.scan("acme")
    assert line.raw == encode_event(event) and line.event == event and line.line_no == 1


def test_reading_from_any_mark_resumes_exactly(store: EventStore, backend: Backend) -> None:
    ids = [store.save("acme", f"memory {i} " + "y" * (i * 7)) for i in range(12)]
    lines = list(store.scan("acme"))
    assert [line.event.memory_id for line in lines if line.event] == ids
    marks = marks_of(lines, store.heads(["acme"])["acme"])
    other = backend.open()
    for k, mark in enumerate(marks):
        rest = list(other.scan_after("acme", mark))
        assert [line.raw for line in rest] == [line.raw for line in lines[k:]]
        assert [line.line_no for line in rest] == list(range(k + 1, len(lines) + 1))
        assert not other.is_rewritten("acme", mark)
    store.save("acme", "one more")
    (newest,) = other.scan_after("acme", marks[-1])
    assert newest.line_no == 13 and newest.event is not None and newest.event.content == "one more"  # type: ignore[union-attr]


def test_heads_change_with_every_append_and_only_then(store: EventStore) -> None:
    store.save("acme", "first")
    before = store.heads(["acme", "nothing"])
    assert before["nothing"] is None and before["acme"] is not None and before["acme"].size > 0
    assert store.heads(["acme"]) == {"acme": before["acme"]}  # nothing new: the same head
    list(store.scan("acme"))  # reading changes nothing
    assert store.heads(["acme"])["acme"] == before["acme"]
    store.save("acme", "second")
    after = store.heads(["acme"])["acme"]
    assert after is not None and after.token != before["acme"].token and after.size > before["acme"].size


def test_durable_false_appends_then_one_sync(store: EventStore) -> None:
    events = [store.build_save("bulk", f"bulk {i}") for i in range(50)]
    for start in range(0, 50, 10):
        store.append("bulk", events[start : start + 10], durable=False)
    store.sync("bulk")
    assert list(store.read("bulk")) == events


# -- rewrites --------------------------------------------------------------------------------


def test_a_rewritten_log_is_noticed(store: EventStore, backend: Backend) -> None:
    for i in range(5):
        store.save("acme", f"memory {i}")
    lines = list(store.scan("acme"))
    marks = marks_of(lines, store.heads(["acme"])["acme"])
    mark = marks[-1]
    assert not store.is_rewritten("acme", mark)
    assert not store.is_rewritten("acme", Mark())  # nothing read yet: nothing to rewrite
    raw = [line.raw for line in lines]
    backend.rewrite("acme", raw[:2] + [raw[3], raw[2], raw[4]])  # same size, other order
    assert store.is_rewritten("acme", marks[3])
    backend.rewrite("acme", raw[:2])  # truncated
    assert store.is_rewritten("acme", mark)
    backend.delete("acme")
    assert store.heads(["acme"])["acme"] is None


# -- bad entries -----------------------------------------------------------------------------


def test_torn_and_invalid_entries_are_reported_and_skipped(store: EventStore, backend: Backend) -> None:
    store.save("acme", "before the crash")
    torn = encode_event(store.build_save("acme", "the write that was cut short"))[:40]
    backend.inject_torn("acme", torn)
    after = store.save("acme", "after the crash")  # never glued to the torn bytes
    unknown = orjson.dumps({"v": 1, "type": "memory.pinned", "event_id": "x", "ts": "t", "project": "acme"})
    stray = encode_event(store.build_save("beta", "belongs to beta")).rstrip(b"\n")
    for raw in (b"this is not json", unknown, stray):
        backend.inject("acme", raw)
    last = store.save("acme", "still fine")
    reader = backend.open()
    assert [e.memory_id for e in reader.read("acme")] == [
        compute_memory_id("acme", "before the crash"), after, last]
    problems = reader.problems("acme")
    assert [p.line_no for p in problems] == [2, 4, 5, 6]
    assert problems[0].raw.rstrip(b"\n") == torn and "not valid JSON" in (problems[0].problem or "")
    assert "not valid JSON" in (problems[1].problem or "")
    assert problems[2].unknown_type and "memory.pinned" in (problems[2].problem or "")
    assert "event of project 'beta' in the log of 'acme'" in (problems[3].problem or "")
    assert [e.project for e in reader.read_all()] == ["acme"] * 3  # nothing leaks into beta


def test_a_newer_event_version_stops_reading_that_project(store: EventStore, backend: Backend) -> None:
    store.save("acme", "old news")
    store.save("beta", "unaffected")
    payload = orjson.loads(encode_event(store.build_save("acme", "from the future")))
    payload["v"] = 2
    backend.inject("acme", orjson.dumps(payload))
    with pytest.raises(UnsupportedEventVersion, match="schema version 2.*upgrade mnemolog"):
        list(store.read("acme"))
    lines = store.scan_after("acme", Mark())
    assert next(lines).event is not None  # the lines before it still come first
    with pytest.raises(UnsupportedEventVersion):
        next(lines)
    assert [e.content for e in store.read("beta")] == ["unaffected"]  # type: ignore[union-attr]


# -- validation: refused before anything is written -----------------------------------------


REFUSED: list[tuple[str, Callable[[EventStore], object], type[Exception]]] = [
    ("bad project", lambda s: s.save("../etc", "x"), InvalidProject),
    ("non-ASCII project", lambda s: s.save("acme\u212a", "x"), InvalidProject),
    ("empty content", lambda s: s.save("acme", "   "), InvalidContent),
    ("too large", lambda s: s.save("acme", "x" * 70_000), ContentTooLarge),
    ("bad tags", lambda s: s.save("acme", "x", tags=["a\nb"]), InvalidTags),
    ("bad importance", lambda s: s.save("acme", "x", importance=11), InvalidImportance),
    ("bad meta", lambda s: s.save("acme", "x", meta={"k": object()}), InvalidMeta),
    ("bad memory id", lambda s: s.forget("acme", "not-an-id"), InvalidMemoryId),
    ("foreign event", lambda s: s.append("acme", [s.build_save("beta", "x")]), InvalidProject),
    ("update with a bad old id", lambda s: s.replace("acme", "zz", s.build_save("acme", "new")), InvalidMemoryId),
]


@pytest.mark.parametrize(("case", "call", "error"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_calls_leave_the_log_unchanged(
    store: EventStore, backend: Backend, case: str, call: Callable[[EventStore], object], error: type[Exception],
) -> None:
    store.save("acme", "already here")
    before = backend.snapshot()
    with pytest.raises(error) as info:
        call(store)
    assert isinstance(info.value, ValidationError)
    assert backend.snapshot() == before


# -- concurrency -----------------------------------------------------------------------------

WRITERS, EACH = 4, 120


@pytest.mark.slow
def test_processes_writing_at_once_lose_nothing_and_keep_updates_whole(
    store: EventStore, backend: Backend, tmp_path: Path, child_env: dict[str, str],
) -> None:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(STORE_WRITER), backend.spec(), "shared", str(EACH), str(go),
                               f"w{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
             for n in range(WRITERS)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr
        go.touch()
        acked = {}
        for n, proc in enumerate(procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            *ids, done = out.splitlines()
            assert done == "done" and len(ids) == EACH
            acked[f"w{n}"] = ids
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert store.problems("shared") == []
    events = list(store.read("shared"))
    updates = EACH // 4
    assert len(events) == WRITERS * (EACH + updates) == len({e.event_id for e in events})
    for name, ids in acked.items():
        saves = [e for e in events if e.actor.client == name and isinstance(e, MemorySaved)]
        assert [e.memory_id for e in saves] == ids  # every acknowledged save, in its order
    for k, event in enumerate(events):
        if isinstance(event, MemoryForgotten):  # an update's two events stay side by side
            save = events[k - 1]
            assert isinstance(save, MemorySaved) and save.actor == event.actor and save.key < event.key
    alive = present(fold(events))
    assert len(alive) == WRITERS * (EACH - updates)


# -- fold equality ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_what_is_read_folds_like_what_was_written(store: EventStore, backend: Backend, seed: int) -> None:
    rng = random.Random(seed)
    written: list[Event] = []
    pool = [f"fact number {n}" for n in range(15)]
    for _ in range(150):
        project = rng.choice(["acme", "beta"])
        alive = [mid for (p, mid) in present(fold(written)) if p == project]
        roll = rng.random()
        if roll < 0.5 or not alive:
            events: list[Event] = [store.build_save(project, rng.choice(pool), importance=rng.randint(1, 10))]
        elif roll < 0.7:
            events = [store.build_forget(project, rng.choice(alive))]
        elif roll < 0.85:
            new = store.build_save(project, rng.choice(pool) + " (revised)")
            old = rng.choice(alive)
            events = [new] if new.memory_id == old else [new, store.build_forget(project, old, new.ts)]
        else:
            events = [written[rng.randrange(len(written))]] if written else []  # a duplicate append
            events = [e for e in events if e.project == project]
        if events:
            store.append(project, events)
            written.extend(events)
    reader = backend.open()
    assert fold(reader.read_all()) == fold(written)
    # Read in pieces, resuming from stored marks, by a fresh instance each time.
    pieces: list[Event] = []
    for project in reader.projects():
        head = reader.heads([project])[project]
        mark = Mark(identity=head.identity if head else "")
        while True:
            chunk = []
            for line in backend.open().scan_after(project, mark):
                chunk.append(line)
                if len(chunk) == 7:
                    break
            if not chunk:
                break
            pieces.extend(line.event for line in chunk if line.event is not None)
            for line in chunk:
                mark = line.advance(mark)
    assert fold(pieces) == fold(written)
