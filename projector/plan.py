"""The pure planner: one event and the memory's current row -> the operations to apply.

It mirrors ``eventlog.fold.apply_event`` exactly, so the index is the fold of the log: the
latest event by ``(ts, event_id)`` decides, a duplicate or older event changes nothing but
possibly ``created_at`` (the earliest save).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from eventlog import Event, MemoryForgotten, MemorySaved


@dataclass(frozen=True, slots=True)
class Current:
    """What the index holds of a memory now: its deciding event and earliest save."""

    winner: tuple[str, str]
    created_at: str | None


@dataclass(frozen=True, slots=True)
class UpsertMemory:
    """Make the memory present with the attributes of ``event``."""

    event: MemorySaved
    created_at: str


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Make the memory absent (row kept, text and vector removed)."""

    event: MemoryForgotten
    created_at: str | None


@dataclass(frozen=True, slots=True)
class SetCreated:
    """Only the earliest save time changed (an older save arrived late)."""

    project: str
    memory_id: str
    created_at: str


Op: TypeAlias = UpsertMemory | Tombstone | SetCreated


def _earliest(current: Current | None, event: Event) -> str | None:
    candidates = [current.created_at] if current and current.created_at else []
    if isinstance(event, MemorySaved):
        candidates.append(event.ts)
    return min(candidates) if candidates else None


def plan_ops(event: Event, current: Current | None) -> list[Op]:
    """Operations that bring the memory of ``event`` from ``current`` to the folded state."""
    created = _earliest(current, event)
    if current is None or event.key > current.winner:
        if isinstance(event, MemorySaved):
            assert created is not None  # a save always has its own timestamp
            return [UpsertMemory(event, created)]
        return [Tombstone(event, created)]
    if created is not None and created != current.created_at:
        return [SetCreated(event.project, event.memory_id, created)]
    return []
