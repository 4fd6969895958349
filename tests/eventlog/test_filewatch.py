"""The file backend's change notices: a log that appears or is swapped notifies; appending to
one or reading it does not.

Every server watches ``logs/``, and every catch-up reads a log: if a read notified, each
server's reads would wake every other server into a catch-up of its own. An append is indexed
by its writer; notifying it woke every other server at each save."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventlog import EventLog
from eventlog.paths import logs_dir


class Notices:
    """The projects ``on_change`` was called with, in order, and a way to wait for one."""

    def __init__(self) -> None:
        self.projects: list[str] = []
        self._arrived = threading.Condition()

    def __call__(self, project: str) -> None:
        with self._arrived:
            self.projects.append(project)
            self._arrived.notify_all()

    def wait_for(self, project: str, timeout: float = 10.0) -> list[str]:
        """Every notice up to and including the first one for ``project``."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: project in self.projects, timeout), (
                f"no notice for {project!r} within {timeout} s; got {self.projects}"
            )
            upto = self.projects.index(project) + 1
            seen, self.projects[:] = self.projects[:upto], self.projects[upto:]
            return seen


@pytest.fixture
def watched(log: EventLog) -> Iterator[tuple[EventLog, Notices]]:
    log.save("acme", "a log to watch")
    notices = Notices()
    watch = log.watch(notices)
    assert watch is not None, "inotify is available on the test machines"
    try:
        yield log, notices
    finally:
        watch.stop()


def test_a_new_log_notifies_its_project(watched: tuple[EventLog, Notices]) -> None:
    log, notices = watched
    log.save("newproject", "a log created while watched")
    assert notices.wait_for("newproject") == ["newproject"]


def test_appending_to_or_reading_a_log_notifies_nobody(watched: tuple[EventLog, Notices]) -> None:
    log, notices = watched
    for n in range(3):
        log.save("acme", f"appended while watched {n}")
        assert list(log.scan("acme"))
        log.heads(["acme"])
    # inotify delivers in order: a notice from the appends or reads would arrive before this one.
    log.save("marker", "a new log, written after them")
    assert notices.wait_for("marker") == ["marker"]


def test_a_log_replaced_by_rename_notifies(watched: tuple[EventLog, Notices], root: Path) -> None:
    log, notices = watched
    live = logs_dir(root) / "acme.jsonl"
    replacement = live.with_name("acme.jsonl.new")
    replacement.write_bytes(live.read_bytes())
    os.replace(replacement, live)  # how a sync or a rewrite swaps a log
    assert "acme" in notices.wait_for("acme")


def test_a_log_rewritten_as_git_does_notifies(watched: tuple[EventLog, Notices], root: Path) -> None:
    _log, notices = watched
    live = logs_dir(root) / "acme.jsonl"
    merged = live.read_bytes() + live.read_bytes()  # the content does not matter here
    live.unlink()  # a pull or merge deletes the file, then writes a new one (seen with watchdog)
    live.write_bytes(merged)
    assert "acme" in notices.wait_for("acme")
