"""The event model: frozen values, no I/O.

A memory's state is decided by its latest event under ``(ts, event_id)``; see ``fold``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

SAVED = "memory.saved"
FORGOTTEN = "memory.forgotten"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who wrote an event: the MCP client name, the host and the process id (all optional)."""

    client: str | None = None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class MemorySaved:
    """A memory was saved (or saved again: same content, same ``memory_id``)."""

    type: ClassVar[str] = SAVED
    version: ClassVar[int] = 1

    event_id: str
    ts: str
    project: str
    memory_id: str
    content: str
    tags: tuple[str, ...] = ()
    importance: int = 5
    kind: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    actor: Actor = Actor()

    @property
    def key(self) -> tuple[str, str]:
        """Ordering key: the latest event of a memory by this key decides its state."""
        return (self.ts, self.event_id)


@dataclass(frozen=True, slots=True)
class MemoryForgotten:
    """A memory was forgotten (a tombstone that is never dropped)."""

    type: ClassVar[str] = FORGOTTEN
    version: ClassVar[int] = 1

    event_id: str
    ts: str
    project: str
    memory_id: str
    actor: Actor = Actor()

    @property
    def key(self) -> tuple[str, str]:
        """Ordering key: the latest event of a memory by this key decides its state."""
        return (self.ts, self.event_id)


Event: TypeAlias = MemorySaved | MemoryForgotten


def normalize_whitespace(content: str) -> str:
    """Collapse runs of whitespace to one space and trim, as memory ids see content."""
    return " ".join(content.split())


def compute_memory_id(project: str, content: str) -> str:
    """Content address of a memory: 16 hex of sha256(project NUL normalized content)."""
    digest = hashlib.sha256(f"{project}\0{normalize_whitespace(content)}".encode("utf-8"))
    return digest.hexdigest()[:16]
