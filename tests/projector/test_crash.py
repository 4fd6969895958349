"""``kill -9`` of a real projector process in the middle of a catch-up and of a rebuild,
looped: the index is always the fold of a prefix of each log (no partial rows), and after the
next catch-up it equals the logs, with nothing lost."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _projector_support import (
    CHILD,
    FakeEmbedder,
    all_events,
    child_env,
    derived_problems,
    diff_rows,
    fold_rows,
    index_rows,
    tracked_events,
    write_events,
)

from eventlog import EventLog
from projector import Index

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def start(mode: str, root: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(root), "--fake", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )


def kill_after(proc: subprocess.Popen[str], delay: float, signal_line: str = "ready") -> bool:
    """Wait for "ready" (then ``signal_line``), SIGKILL ``delay`` s later; True if the child
    had not finished."""
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    if signal_line != "ready":
        assert proc.stdout.readline().strip() == signal_line
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = proc.stdout.read()
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    if finished:
        assert out.startswith("done"), out
    return not finished and "done" not in out


def forget_some(log: EventLog, project: str, ids: list[str], every: int) -> set[str]:
    gone = set(ids[::every])
    log.append(project, [log.build_forget(project, mid) for mid in sorted(gone)])
    return gone


def assert_consistent_prefix(log: EventLog, index_path: Path) -> None:
    """What a killed projector left: the fold of each log up to its tracked offset, exactly."""
    index = Index(log, path=index_path)
    try:
        conn = index._connection()
        assert diff_rows(fold_rows(tracked_events(log, conn)), index_rows(conn)) == []
        assert derived_problems(conn, vectors_expected=False) == []
    finally:
        index.close()


def assert_nothing_lost(log: EventLog, index: Index) -> None:
    report = index.verify()
    assert report.ok, report.differences[:10]
    folded = fold_rows(all_events(log))
    assert diff_rows(folded, index_rows(index._connection())) == []
    assert derived_problems(index._connection(), vectors_expected=True) == []
    for project in log.projects():
        present = {k[1] for k, row in folded.items() if k[0] == project and row[0]}
        assert index.load_context(project)[1] == len(present)
        sample = random.Random(project).sample(sorted(present), 20)
        for memory_id in sample:
            memory = index.get(project, memory_id)
            hits = index.search(memory.content, project=project, limit=5).hits
            assert memory_id in [h.memory.id for h in hits]


def test_kill_during_catch_up_and_rebuild(log: EventLog, root: Path):
    rng = random.Random(1234)
    ids = write_events(log, "alpha", 3000)
    write_events(log, "beta", 600, "beta")
    forget_some(log, "alpha", ids, 7)
    index_path = root / "index.db"
    # How fast a child projects depends on the machine's load: a kill that comes after the
    # child finished shortens the next delays, and rounds go on (bounded) until kills land.
    landed, longest, rounds = 0, 0.7, 0
    while rounds < 5 or (landed < 2 and rounds < 12):
        if rounds:  # more work for every round, so the kill finds a projection under way
            more = write_events(log, "alpha", 1500, f"round {rounds}")
            forget_some(log, "alpha", more, 5)
        hit = kill_after(start("catchup", root), rng.uniform(0.05, longest))
        landed, longest, rounds = landed + hit, longest if hit else max(0.1, longest / 2), rounds + 1
        assert_consistent_prefix(log, index_path)
    assert landed >= 2, f"only {landed} of {rounds} kills landed during a projection: the test lost its point"

    rebuild_landed, longest, rounds = 0, 1.2, 0
    while rounds < 4 or (rebuild_landed < 1 and rounds < 10):
        if rounds == 2:  # no live index at all: the fresh one is renamed into place
            for suffix in ("", "-wal", "-shm"):
                Path(f"{index_path}{suffix}").unlink(missing_ok=True)
        hit = kill_after(start("rebuild", root), rng.uniform(0.05, longest))
        rebuild_landed, longest, rounds = rebuild_landed + hit, longest if hit else max(0.1, longest / 2), rounds + 1
        if index_path.exists():
            assert_consistent_prefix(log, index_path)
    assert rebuild_landed >= 1

    for _ in range(4):  # aimed at the copy of the fresh index into the live one
        write_events(log, "beta", 300, f"swap {_}")
        kill_after(start("rebuild", root, "--announce-swap"), rng.uniform(0, 0.03), "swapping")
        assert_consistent_prefix(log, index_path)

    index = Index(log, FakeEmbedder())
    try:
        index.catch_up()
        assert_nothing_lost(log, index)
        index.rebuild()
        assert sorted(p.name for p in root.glob("index.db.rebuild-*")) == []
        assert_nothing_lost(log, index)
    finally:
        index.close()
