"""The pure fold: the specification of what the index must hold. No I/O.

State of a memory = its latest event by ``(ts, event_id)``: saved -> present with that event's
attributes, forgotten -> absent (a tombstone, never dropped). ``created_at`` is the earliest
``memory.saved`` timestamp of the memory. The result depends only on the *set* of events, so
any order, interleaving or duplication of them folds to the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .model import Event, MemorySaved

MemoryKey = tuple[str, str]  # (project, memory_id)


@dataclass(frozen=True, slots=True)
class MemoryState:
    """What the latest event says of one memory. ``saved`` is None for a tombstone."""

    project: str
    memory_id: str
    winner: tuple[str, str]  # (ts, event_id) of the deciding event
    created_at: str | None  # earliest save timestamp; None if never saved
    saved: MemorySaved | None

    @property
    def present(self) -> bool:
        """True when the memory exists (its latest event is a save)."""
        return self.saved is not None


def apply_event(state: MemoryState | None, event: Event) -> MemoryState:
    """Fold one event into the state of its memory (commutative, idempotent)."""
    is_save = isinstance(event, MemorySaved)
    created = event.ts if is_save else None
    if state is not None:
        if state.created_at is not None and (created is None or state.created_at < created):
            created = state.created_at
        if state.winner >= event.key:
            return MemoryState(state.project, state.memory_id, state.winner, created, state.saved)
    saved = event if isinstance(event, MemorySaved) else None
    return MemoryState(event.project, event.memory_id, event.key, created, saved)


def fold(events: Iterable[Event]) -> dict[MemoryKey, MemoryState]:
    """Fold events of any number of projects into ``{(project, memory_id): state}``."""
    states: dict[MemoryKey, MemoryState] = {}
    for event in events:
        key = (event.project, event.memory_id)
        states[key] = apply_event(states.get(key), event)
    return states


def present(states: dict[MemoryKey, MemoryState]) -> dict[MemoryKey, MemorySaved]:
    """Only the memories that exist, with the save that decides their attributes."""
    return {key: s.saved for key, s in states.items() if s.saved is not None}
