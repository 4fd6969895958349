"""The pure planner: an event and the memory's current row in, operations out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import Event, MemoryForgotten, MemorySaved, fold
from projector.plan import Current, SetCreated, Tombstone, UpsertMemory, plan_ops

P, M = "acme", "0123456789abcdef"
T1, T2, T3 = "2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z", "2026-01-03T10:00:00.000Z"


def save(event_id: str, ts: str, content: str = "fact", memory_id: str = M) -> MemorySaved:
    return MemorySaved(event_id=event_id, ts=ts, project=P, memory_id=memory_id, content=content)


def forget(event_id: str, ts: str, memory_id: str = M) -> MemoryForgotten:
    return MemoryForgotten(event_id=event_id, ts=ts, project=P, memory_id=memory_id)


def test_first_save_inserts_with_its_own_time_as_created():
    e = save("01B", T2)
    assert plan_ops(e, None) == [UpsertMemory(e, T2)]


def test_first_event_a_forget_makes_a_tombstone_without_created_time():
    e = forget("01B", T2)
    assert plan_ops(e, None) == [Tombstone(e, None)]


def test_newer_save_replaces_and_keeps_the_earliest_created_time():
    e = save("01C", T3, "new wording")
    assert plan_ops(e, Current((T2, "01B"), T1)) == [UpsertMemory(e, T1)]


def test_newer_forget_tombstones_and_keeps_created_time():
    e = forget("01C", T3)
    assert plan_ops(e, Current((T2, "01B"), T2)) == [Tombstone(e, T2)]


def test_older_save_after_a_newer_one_only_moves_created_back():
    e = save("01A", T1)
    assert plan_ops(e, Current((T2, "01B"), T2)) == [SetCreated(P, M, T1)]


def test_older_save_that_is_not_earliest_changes_nothing():
    assert plan_ops(save("01B", T2), Current((T3, "01C"), T1)) == []


def test_older_forget_changes_nothing():
    assert plan_ops(forget("01A", T1), Current((T2, "01B"), T2)) == []


def test_duplicate_of_the_deciding_event_changes_nothing():
    assert plan_ops(save("01B", T2), Current((T2, "01B"), T2)) == []
    assert plan_ops(forget("01B", T2), Current((T2, "01B"), T1)) == []


def test_same_timestamp_is_decided_by_event_id():
    later_id = save("01C", T2, "b")
    assert plan_ops(later_id, Current((T2, "01B"), T2)) == [UpsertMemory(later_id, T2)]
    assert plan_ops(forget("01A", T2), Current((T2, "01B"), T2)) == []


def test_late_save_behind_a_tombstone_that_came_first():
    # The forget was seen before any save: created_at unknown until a save arrives.
    tomb = Current((T3, "01C"), None)
    assert plan_ops(save("01A", T1), tomb) == [SetCreated(P, M, T1)]
    newer = save("01D", "2026-01-04T10:00:00.000Z")
    assert plan_ops(newer, tomb) == [UpsertMemory(newer, newer.ts)]


# -- the planner is the fold, one event at a time ---------------------------------------

State = dict[str, tuple[tuple[str, str], str | None, MemorySaved | None]]


def run_plans(events: list[Event]) -> State:
    """A dict standing in for the ``memory`` table, driven only by planned operations."""
    table: State = {}
    for event in events:
        row = table.get(event.memory_id)
        current = Current(row[0], row[1]) if row else None
        for op in plan_ops(event, current):
            match op:
                case UpsertMemory(event=e, created_at=created):
                    table[e.memory_id] = (e.key, created, e)
                case Tombstone(event=e, created_at=created):
                    table[e.memory_id] = (e.key, created, None)
                case SetCreated(memory_id=mid, created_at=created):
                    winner, _, saved = table[mid]
                    table[mid] = (winner, created, saved)
    return table


times = st.sampled_from([T1, T2, T3])
memory_ids = st.sampled_from(["0" * 16, "1" * 16])


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    count = draw(st.integers(0, 12))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count, unique=True))
    events: list[Event] = []
    for n in ids:
        event_id, ts, mid = f"{n:026d}", draw(times), draw(memory_ids)
        if draw(st.booleans()):
            events.append(save(event_id, ts, draw(st.sampled_from(["a", "b"])), mid))
        else:
            events.append(forget(event_id, ts, mid))
    # duplicates, as a re-delivered line or a union merge would give
    return events + draw(st.lists(st.sampled_from(events), max_size=4)) if events else events


@settings(max_examples=300, deadline=None)
@given(event_lists(), st.randoms(use_true_random=False))
def test_planned_operations_give_the_fold_in_any_order(events: list[Event], rnd) -> None:
    rnd.shuffle(events)
    table = run_plans(events)
    expected = fold(events)
    assert table.keys() == {mid for (_, mid) in expected}
    for (_, mid), state in expected.items():
        assert table[mid] == (state.winner, state.created_at, state.saved)
