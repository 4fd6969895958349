"""Convergence: whatever happens to the logs and to the projector, the index is the pure fold
of the events it has applied, and in the end live index == full rebuild == pure fold.

``HYPOTHESIS_PROFILE=long`` runs many more and longer examples than the default fast run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from _projector_support import (
    FakeEmbedder,
    all_events,
    derived_problems,
    diff_rows,
    fold_rows,
    index_rows,
    table_rows,
    tracked_events,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from eventlog import Event, EventLog, MemoryForgotten, MemorySaved, encode_event
from eventlog.clock import format_ts, parse_ts
from eventlog.paths import ensure_logs_dir
from projector import Index, query, runner

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
MACHINE_SETTINGS = settings(
    max_examples=400 if LONG else 40,
    stateful_step_count=80 if LONG else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PROJECTS = st.sampled_from(["alpha", "beta"])
CONTENTS = st.sampled_from([
    "use postgres for the ledger",
    "deploys happen on tuesdays",
    "the api speaks json over http",
    "cache keys include the tenant",
    "use   postgres for the ledger",  # same memory id as the first (whitespace-normalized)
])
TAGS = st.lists(st.sampled_from(["db", "DB", "ops", "api"]), max_size=2)
HAS_EMBED = True
try:
    import projector.embed  # noqa: F401
except ImportError:  # until the embedder lands, the machine runs in keyword mode
    HAS_EMBED = False


class Stop(Exception):
    """Raised from a progress callback to cut a projection short after some batches."""


class ProjectorMachine(RuleBasedStateMachine):
    """A store whose logs and projector are abused in every way the design allows."""

    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        # Made here, not by a fixture: every example gets a fresh store.
        self.dir = Path(tempfile.mkdtemp(prefix="mnemolog-machine-"))
        self.log = EventLog(self.dir / "store", durability="never", client="machine")
        self.embedder = FakeEmbedder() if HAS_EMBED else None
        self.index = Index(self.log, self.embedder)
        self.clock_skew = 0

    # -- writers -------------------------------------------------------------------------

    def _append(self, project: str, events: list[Event]) -> list[Event]:
        self.log.append(project, events)
        return events

    @rule(target=events, project=PROJECTS, content=CONTENTS, tags=TAGS, importance=st.integers(1, 10))
    def save(self, project: str, content: str, tags: list[str], importance: int):
        event = self.log.build_save(project, content, tags, importance)
        return multiple(*self._append(project, [event]))

    @rule(target=events, project=PROJECTS, content=CONTENTS, back_ms=st.integers(1, 10**8))
    def save_from_a_machine_with_a_slow_clock(self, project: str, content: str, back_ms: int):
        # Another machine's events arrive late (git sync) and carry older timestamps.
        event = self.log.build_save(project, content, importance=3)
        event = replace(event, ts=format_ts(parse_ts(event.ts) - back_ms))
        return multiple(*self._append(project, [event]))

    @rule(target=events, saved=events)
    def forget_existing(self, saved: Event):
        event = self.log.build_forget(saved.project, saved.memory_id)
        return multiple(*self._append(saved.project, [event]))

    @rule(target=events, saved=events, back_ms=st.integers(1, 10**8))
    def forget_with_a_slow_clock(self, saved: Event, back_ms: int):
        event = self.log.build_forget(saved.project, saved.memory_id)
        event = replace(event, ts=format_ts(parse_ts(event.ts) - back_ms))
        return multiple(*self._append(saved.project, [event]))

    @rule(target=events, project=PROJECTS, memory_id=st.sampled_from(["0" * 16, "abcdef0123456789"]))
    def forget_unknown(self, project: str, memory_id: str):
        return multiple(*self._append(project, [self.log.build_forget(project, memory_id)]))

    @rule(target=events, saved=events, content=CONTENTS)
    def update(self, saved: Event, content: str):
        # An update: the new save and the forget of the old id in one write.
        new = self.log.build_save(saved.project, content)
        before = len(self.log.log_path(saved.project).read_bytes())
        self.log.replace(saved.project, saved.memory_id, new)
        after = self.log.log_path(saved.project).read_bytes()[before:]
        return multiple(*[e for e in self._decode(after)])

    def _decode(self, data: bytes) -> list[Event]:
        from eventlog import decode_line

        return [decode_line(line) for line in data.splitlines() if line.strip()]

    @rule(event=events)
    def duplicate_append(self, event: Event):
        # At-least-once delivery: the exact same event again (a retried write, a union merge).
        self.log.append(event.project, [event])

    @rule(event=events, cut=st.integers(1, 400))
    def torn_tail(self, event: Event, cut: int):
        # A writer killed mid-write: part of a line, no newline. The next writer terminates it.
        line = encode_event(event)
        with open(self.log.log_path(event.project), "ab") as f:
            f.write(line[: min(cut, len(line) - 1)])

    @rule(project=PROJECTS, garbage=st.sampled_from([b"not json at all", b"{\"v\":1}", b"[1,2]", b"\xff\xfe", b"   "]))
    def garbage_line(self, project: str, garbage: bytes):
        ensure_logs_dir(self.log.root)
        path = self.log.log_path(project)
        with open(path, "ab") as f:
            if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                f.write(b"\n")  # as a writer would terminate a torn tail first
            f.write(garbage + b"\n")

    # -- the projector -------------------------------------------------------------------

    @rule(project=PROJECTS)
    def catch_up_one_project(self, project: str):
        self.index.catch_up(project)

    @rule()
    def catch_up_everything(self):
        self.index.catch_up()

    @rule(project=PROJECTS, batch=st.integers(1, 3), batches=st.integers(0, 3))
    def partial_projection(self, project: str, batch: int, batches: int):
        # Project a few small batches, then stop as a killed projector would.
        done = [0]

        def progress(_: int) -> None:
            done[0] += 1
            if done[0] > batches:
                raise Stop

        saved, runner.BATCH_LINES = runner.BATCH_LINES, batch
        try:
            with self.index._index_lock():
                conn = self.index._connection()
                runner.Projection(conn, self.log, self.index._embed).project_log(project, progress)
        except Stop:
            pass
        finally:
            runner.BATCH_LINES = saved

    @rule()
    def restart(self):
        self.index.close()
        self.index = Index(self.log, self.embedder)

    @rule(project=PROJECTS)
    def search_reads_its_writes(self, project: str):
        # A read catches the project up first: every present memory of the fold is findable.
        memories, total = self.index.load_context(project, limit=100, budget_chars=10**9)
        want = {k[1] for k, row in fold_rows(all_events(self.log)).items() if k[0] == project and row[0]}
        assert {m.id for m in memories} == want and total == len(want)

    @precondition(lambda self: HAS_EMBED)
    @rule()
    def model_goes_away_and_comes_back(self):
        self.embedder.fail = not self.embedder.fail
        self.index._embed_failed_at = -1e9  # do not wait out the retry delay in a test

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def index_is_the_fold_of_what_it_applied(self):
        conn = self.index._connection()
        want = fold_rows(tracked_events(self.log, conn))
        assert diff_rows(want, index_rows(conn)) == []
        assert derived_problems(conn, vectors_expected=False) == []

    @invariant()
    def unapplied_lines_are_seen_as_pending(self):
        # catch_up skips a log whose stat matches its tracking row: that must never hide lines.
        conn = self.index._connection()
        tracked = {r[0]: r[1] for r in conn.execute("SELECT project, offset FROM tracking")}
        for project in self.log.projects():
            data = self.log.log_path(project).read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete > tracked.get(project, 0):
                assert self.index._is_pending(conn, project), (project, tracked.get(project), complete)

    @invariant()
    def the_size_bound_of_the_vector_ladder_holds(self):
        # The coarse vector pass starts from query.present_bound_sql: an upper bound, or it could
        # start at a cap too loose (too slow) for the project; torn lines, garbage and
        # duplicates in the log must not make it one.
        conn = self.index._connection()
        for (project,) in conn.execute("SELECT DISTINCT project FROM memory").fetchall():
            present = conn.execute("SELECT count(*) FROM memory WHERE project = ? AND present = 1", (project,)).fetchone()[0]
            assert conn.execute(*query.present_bound_sql(project)).fetchone()[0] >= present

    def teardown(self):
        try:
            if self.embedder is not None:
                self.embedder.fail = False
                self.index._embed_failed_at = -1e9
            report = self.index.verify()  # catches up first
            assert report.ok, report.differences
            conn = self.index._connection()
            folded = fold_rows(all_events(self.log))
            live = index_rows(conn)
            assert diff_rows(folded, live) == []
            assert derived_problems(conn, vectors_expected=self.embedder is not None) == []
            live_table = table_rows(conn)
            self.index.rebuild()
            rebuilt = index_rows(self.index._connection())
            assert diff_rows(folded, rebuilt) == []
            assert table_rows(self.index._connection()) == live_table  # every column, not only the fold's
            assert derived_problems(self.index._connection(), vectors_expected=self.embedder is not None) == []
            fresh = Index(self.log, self.embedder, path=self.dir / "fresh.db")
            try:
                fresh.catch_up()
                assert diff_rows(folded, index_rows(fresh._connection())) == []
            finally:
                fresh.close()
        finally:
            self.index.close()
            shutil.rmtree(self.dir, ignore_errors=True)


TestProjectorMachine = ProjectorMachine.TestCase
TestProjectorMachine.settings = MACHINE_SETTINGS


# -- order independence ----------------------------------------------------------------------

T = ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.001Z", "2026-01-02T00:00:00.000Z"]
CONTENT_POOL = ["alpha fact", "beta fact", "gamma fact"]


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    """Events of two projects with colliding timestamps (ties broken by event id)."""
    from eventlog import compute_memory_id

    n = draw(st.integers(1, 14))
    numbers = draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n, unique=True))
    events: list[Event] = []
    for number in numbers:
        project, content = draw(PROJECTS), draw(st.sampled_from(CONTENT_POOL))
        event_id, ts, memory_id = f"01J{number:023d}", draw(st.sampled_from(T)), compute_memory_id(project, content)
        if draw(st.integers(0, 2)):
            events.append(MemorySaved(event_id, ts, project, memory_id, content,
                                      tags=tuple(draw(TAGS)), importance=draw(st.integers(1, 10))))
        else:
            events.append(MemoryForgotten(event_id, ts, project, memory_id))
    return events


def write_store(root: Path, events: list[Event]) -> EventLog:
    log = EventLog(root, durability="never")
    for event in events:
        log.append(event.project, [event])
    return log


@settings(max_examples=300 if LONG else 40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events=event_sets(), data=st.data())
def test_shuffled_and_duplicated_orders_give_the_same_index(tmp_path_factory: pytest.TempPathFactory, events, data):
    base = tmp_path_factory.mktemp("orders")
    orders = [list(events)]
    for _ in range(2):
        shuffled = data.draw(st.permutations(events))
        extra = data.draw(st.lists(st.sampled_from(events), max_size=5))
        at = data.draw(st.integers(0, len(shuffled)))
        orders.append(shuffled[:at] + extra + shuffled[at:])
    results = []
    for i, order in enumerate(orders):
        log = write_store(base / f"s{i}", order)
        index = Index(log)
        try:
            # Projected in two steps for some orders: where the projector stops must not matter.
            if i == 1:
                index.catch_up("alpha")
            index.catch_up()
            results.append(index_rows(index._connection()))
            assert index.verify().ok
        finally:
            index.close()
    assert diff_rows(fold_rows(events), results[0]) == []
    for other in results[1:]:
        assert diff_rows(results[0], other) == []
