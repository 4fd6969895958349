"""The pure fold: a function of the *set* of events, checked against a direct model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from eventlog import Actor, Event, MemoryForgotten, MemorySaved, MemoryState, fold, present

PROJECTS = ["acme", "beta"]
MEMORY_IDS = ["000000000000000a", "000000000000000b", "000000000000000c"]
# Few timestamps, so events of one memory often share a millisecond and the event id decides.
TIMESTAMPS = ["2026-11-22T10:00:00.000Z", "2026-11-22T10:00:00.001Z", "2026-11-22T10:00:05.000Z"]
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@st.composite
def event_sets(draw: st.DrawFn, max_size: int = 25) -> list[Event]:
    """Distinct events (unique event ids) over a small pool of memories and timestamps."""
    shapes = draw(
        st.lists(
            st.tuples(
                st.booleans(),  # save or forget
                st.sampled_from(PROJECTS),
                st.sampled_from(MEMORY_IDS),
                st.sampled_from(TIMESTAMPS),
                st.sampled_from(["alpha", "beta", "gamma"]),  # content
                st.integers(1, 10),
                st.sampled_from(["laptop", "desktop"]),  # the machine
            ),
            max_size=max_size,
        )
    )
    ids = draw(st.lists(st.text(ULID_ALPHABET, min_size=4, max_size=4), unique=True, min_size=len(shapes), max_size=len(shapes)))
    events: list[Event] = []
    for (is_save, project, memory_id, ts, content, importance, host), event_id in zip(shapes, ids):
        actor = Actor(client="test", host=host)
        if is_save:
            events.append(MemorySaved(event_id, ts, project, memory_id, content, ("t",), importance, None, {}, actor))
        else:
            events.append(MemoryForgotten(event_id, ts, project, memory_id, actor))
    return events


def model(events: list[Event]) -> dict[tuple[str, str], MemoryState]:
    """The DESIGN.md rule, written as directly as possible."""
    states: dict[tuple[str, str], MemoryState] = {}
    for key in {(e.project, e.memory_id) for e in events}:
        mine = [e for e in events if (e.project, e.memory_id) == key]
        latest = max(mine, key=lambda e: (e.ts, e.event_id))
        save_times = [e.ts for e in mine if isinstance(e, MemorySaved)]
        states[key] = MemoryState(
            project=key[0],
            memory_id=key[1],
            winner=(latest.ts, latest.event_id),
            created_at=min(save_times) if save_times else None,
            saved=latest if isinstance(latest, MemorySaved) else None,
        )
    return states


@given(event_sets())
def test_fold_matches_the_model(events: list[Event]) -> None:
    assert fold(events) == model(events)


@given(event_sets(), st.randoms(use_true_random=False))
def test_any_permutation_folds_to_the_same_state(events: list[Event], rnd: object) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold(shuffled) == fold(events)
    assert fold(reversed(events)) == fold(events)


@given(st.data())
def test_duplicates_in_any_place_do_not_change_the_state(data: st.DataObject) -> None:
    events = data.draw(event_sets())
    extra = data.draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    with_dups = data.draw(st.permutations(events + extra + extra))
    assert fold(with_dups) == fold(events)


@st.composite
def two_machines(draw: st.DrawFn) -> tuple[list[Event], list[Event], list[Event]]:
    """(union, log of machine A, log of machine B): a shared history, then each machine's own."""
    events = draw(event_sets(max_size=30))
    owner = draw(st.lists(st.sampled_from("SAB"), min_size=len(events), max_size=len(events)))
    shared = [e for e, o in zip(events, owner) if o == "S"]
    only_a = [e for e, o in zip(events, owner) if o == "A"]
    only_b = [e for e, o in zip(events, owner) if o == "B"]
    return events, shared + only_a, shared + only_b


def interleave(a: list[Event], b: list[Event], choices: list[bool]) -> list[Event]:
    """Merge two logs keeping each one's order, taking from ``a`` where ``choices`` says so."""
    merged, i, j = [], 0, 0
    for take_a in choices:
        if take_a and i < len(a):
            merged.append(a[i])
            i += 1
        elif j < len(b):
            merged.append(b[j])
            j += 1
    return merged + a[i:] + b[j:]


@given(two_machines(), st.lists(st.booleans(), max_size=70))
def test_any_interleaving_of_two_machines_logs_folds_the_same(
    machines: tuple[list[Event], list[Event], list[Event]], choices: list[bool]
) -> None:
    union, log_a, log_b = machines
    # A git union merge keeps both sides' lines: the shared history appears twice.
    merged = interleave(log_a, log_b, choices)
    assert fold(merged) == fold(union) == model(union)
    assert fold(log_b + log_a) == fold(log_a + log_b)


# -- literal cases ---------------------------------------------------------------------

SAVE = MemorySaved("01A", "2026-11-22T10:00:00.000Z", "acme", "000000000000000a", "first")


def test_forget_after_save_removes_the_memory() -> None:
    forget = MemoryForgotten("01B", "2026-11-22T10:00:00.000Z", "acme", "000000000000000a")
    state = fold([forget, SAVE])[("acme", "000000000000000a")]
    assert not state.present and state.winner == (forget.ts, "01B")
    assert state.created_at == SAVE.ts  # the tombstone keeps when the memory was created
    assert present(fold([SAVE, forget])) == {}


def test_forget_older_than_the_save_loses() -> None:
    forget = MemoryForgotten("01Z", "2026-11-22T09:59:59.999Z", "acme", "000000000000000a")
    assert present(fold([SAVE, forget])) == {("acme", "000000000000000a"): SAVE}


def test_resave_wins_and_keeps_the_first_creation_time() -> None:
    again = MemorySaved("01C", "2026-11-22T11:00:00.000Z", "acme", "000000000000000a", "first", importance=9)
    state = fold([again, SAVE])[("acme", "000000000000000a")]
    assert state.saved == again and state.created_at == SAVE.ts


def test_same_memory_id_in_two_projects_are_two_memories() -> None:
    other = MemorySaved("01A", SAVE.ts, "beta", SAVE.memory_id, "first")
    forget = MemoryForgotten("01B", "2026-11-22T12:00:00.000Z", "beta", SAVE.memory_id)
    assert present(fold([SAVE, other, forget])) == {("acme", SAVE.memory_id): SAVE}
