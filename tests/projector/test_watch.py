"""The background watcher (an optimisation: reads are correct without it) and the rebuild's
progress reports."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
from _projector_support import write_events

from eventlog import EventLog
from projector import Index
from projector.watch import LogWatcher


def tracked_offset(index: Index, project: str) -> int:
    # A separate read-only connection: looking must not catch up (every Index read would).
    if not index.path.exists():
        return 0
    conn = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT offset FROM tracking WHERE project = ?", (project,)).fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        conn.close()


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def replace_log(log: EventLog, project: str, extra: str) -> int:
    """Swap ``project``'s log for a copy with one more save, as a git pull does (a new file);
    the new size."""
    path = log.log_path(project)
    other = EventLog(path.parent.parent / "elsewhere")
    for event in log.read(project):
        other.append(project, [event])
    other.save(project, extra)
    os.replace(other.log_path(project), path)
    return path.stat().st_size


def test_watcher_catches_up_in_the_background(index: Index, log: EventLog):
    log.save("acme", "first")
    index.catch_up()
    index.start_watching()
    index.start_watching()  # idempotent
    size = replace_log(log, "acme", "second, seen by the watcher")
    assert wait_for(lambda: tracked_offset(index, "acme") == size), "the watcher never caught up"
    log.save("newproject", "a log created while watching")
    size = log.log_path("newproject").stat().st_size
    assert wait_for(lambda: tracked_offset(index, "newproject") == size)
    index.close()  # stops the observer and its timers
    assert index._watcher is None


def test_watcher_debounces_a_burst(make_index, log: EventLog, monkeypatch):
    index = make_index()
    calls: list[str] = []
    real = index.catch_up

    def counting(project=None):
        calls.append(project)
        return real(project)

    monkeypatch.setattr(index, "catch_up", counting)
    log.save("acme", "before watching")
    index.start_watching()
    for i in range(50):
        size = replace_log(log, "acme", f"burst {i}")
    assert wait_for(lambda: tracked_offset(index, "acme") == size)
    time.sleep(0.3)
    assert 1 <= len(calls) < 25, calls  # a burst of 50 swaps, a handful of catch-ups


def test_watcher_leaves_appends_to_their_writer(make_index, log: EventLog, monkeypatch):
    index = make_index()
    calls: list[str] = []
    monkeypatch.setattr(index, "catch_up", lambda project=None: calls.append(project))
    log.save("acme", "before watching")
    index.start_watching()
    for i in range(5):
        log.save("acme", f"appended {i}")
    time.sleep(0.6)  # over twice the debounce
    assert calls == []


class NoticesByHand:
    """A log backend stand-in whose change notices the test sends itself."""

    def __init__(self) -> None:
        self.notify = None
        self.stopped = False

    def watch(self, on_change):
        self.notify = on_change
        return self

    def stop(self) -> None:
        self.stopped = True


def test_stopping_a_watcher_waits_for_the_catch_up_under_way():
    store, started, release, finished = NoticesByHand(), threading.Event(), threading.Event(), threading.Event()

    def slow_catch_up(project):
        started.set()
        release.wait(5)
        finished.set()

    watcher = LogWatcher(store, slow_catch_up, debounce=0.01)  # type: ignore[arg-type]
    watcher.start()
    store.notify("acme")
    assert started.wait(5), "the notice never led to a catch-up"
    threading.Timer(0.2, release.set).start()
    assert watcher.stop() is True
    assert finished.is_set(), "stop() returned while the catch-up was still using the index"
    assert store.stopped


def test_a_stopped_watcher_starts_no_catch_up():
    store, calls = NoticesByHand(), []
    watcher = LogWatcher(store, calls.append, debounce=0.05)  # type: ignore[arg-type]
    watcher.start()
    store.notify("acme")  # due in 0.05 s: cancelled by stop()
    assert watcher.stop() is True
    watcher._run("acme")  # what a timer already past its wait when cancelled goes on to do
    store.notify("acme")  # a notice still in flight from the observer's thread
    time.sleep(0.2)
    assert calls == []


def test_stop_gives_up_waiting_after_its_timeout():
    store, started, release = NoticesByHand(), threading.Event(), threading.Event()

    def stuck_catch_up(project):
        started.set()
        release.wait(5)

    watcher = LogWatcher(store, stuck_catch_up, debounce=0.01)  # type: ignore[arg-type]
    watcher.start()
    store.notify("acme")
    assert started.wait(5), "the notice never led to a catch-up"
    try:
        assert watcher.stop(timeout=0.1) is False
    finally:
        release.set()


def test_reads_are_correct_without_a_watcher(index: Index, log: EventLog):
    for i in range(5):
        memory_id = log.save("acme", f"fact {i}")
        assert index.get("acme", memory_id).content == f"fact {i}"


def test_rebuild_reports_progress_in_bytes(index: Index, log: EventLog):
    write_events(log, "alpha", 1200)
    write_events(log, "beta", 300, "beta")
    total = sum(log.log_path(p).stat().st_size for p in ("alpha", "beta"))
    seen: list[tuple[int, int]] = []
    assert index.rebuild(lambda done, of: seen.append((done, of))) == 1500
    assert seen and all(of == total for _, of in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == total
    assert index.verify().ok


@pytest.mark.parametrize("project", [None, "alpha"])
def test_catch_up_returns_events_applied_and_is_free_when_current(index: Index, log: EventLog, project):
    write_events(log, "alpha", 30)
    write_events(log, "beta", 20, "beta")
    assert index.catch_up(project) == (30 if project else 50)
    assert index.catch_up(project) == 0
