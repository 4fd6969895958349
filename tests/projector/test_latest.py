"""``Index.latest``: a memory's state from the index plus the log's unapplied tail, as the
save path reads it instead of catching up. It must say exactly what a catch-up would say."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import EventLog, compute_memory_id
from projector import Index
from projector.errors import MemoryNotFound

CONTENTS = ["alpha", "beta", "gamma"]

# (op, content index, importance, catch the reader up afterwards)
steps = st.lists(
    st.tuples(st.sampled_from(["save", "forget"]), st.integers(0, 2), st.integers(1, 10), st.booleans()),
    max_size=12,
)


def caught_up_state(index: Index, project: str, memory_id: str) -> tuple[object, str | None]:
    """What a full catch-up says: the memory (or None) and its deciding event's timestamp."""
    index.catch_up(project)
    row = index._connection().execute(
        "SELECT updated_at FROM memory WHERE project = ? AND memory_id = ?", (project, memory_id)
    ).fetchone()
    try:
        memory: object = index.get(project, memory_id)
    except MemoryNotFound:
        memory = None
    return memory, (row[0] if row else None)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_latest_says_what_a_catch_up_would(ops: list[tuple[str, int, int, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp))
        reader, truth = Index(log, None), Index(log, None, path=Path(tmp) / "truth.db")
        try:
            for op, which, importance, catch_up in ops:
                content = CONTENTS[which]
                if op == "save":
                    log.save("acme", content, importance=importance)
                else:
                    log.forget("acme", compute_memory_id("acme", content))
                if catch_up:
                    reader.catch_up("acme")
                for other in CONTENTS:
                    memory_id = compute_memory_id("acme", other)
                    assert reader.latest("acme", memory_id) == caught_up_state(truth, "acme", memory_id)
        finally:
            reader.close()
            truth.close()


def test_latest_does_not_catch_the_index_up(log: EventLog, index: Index) -> None:
    index.catch_up("acme")
    memory_id = log.save("acme", "saved by another server")
    memory, changed = index.latest("acme", memory_id)
    assert memory is not None and memory.content == "saved by another server" and changed == memory.updated_at
    assert index._connection().execute("SELECT count(*) FROM memory").fetchone()[0] == 0


def test_latest_recovers_an_index_replaced_by_garbage(log: EventLog, index: Index) -> None:
    index.catch_up("acme")
    memory_id = log.save("acme", "kept in the log whatever happens to the index")
    assert index.latest("acme", memory_id)[0] is not None  # the reader connection is open now
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index.path}{suffix}").unlink(missing_ok=True)
    index.path.write_bytes(b"garbage!" * 2048)
    memory, _ = index.latest("acme", memory_id)
    assert memory is not None and memory.content == "kept in the log whatever happens to the index"
