"""Values the read API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Memory:
    """A present memory as the index holds it."""

    id: str
    project: str
    content: str
    tags: tuple[str, ...]
    importance: int
    kind: str | None
    created_at: str
    updated_at: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the memory and its fused score (higher is better)."""

    memory: Memory
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Search hits, the mode used (``hybrid`` or ``keyword``) and why, if degraded."""

    hits: list[Hit]
    mode: str
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """A project, how many memories it holds now, and its latest event time."""

    name: str
    memories: int
    last_activity: str | None


@dataclass(frozen=True, slots=True)
class TagCount:
    """A tag and how many present memories carry it."""

    tag: str
    count: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Index vs a pure replay of the logs: differences (drift) and log problems (bad lines)."""

    ok: bool
    differences: list[str]
    problems: list[str]
