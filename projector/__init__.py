"""projector: the read side of mnemolog -- folds the event logs into a SQLite index
(FTS5 words + sqlite-vec vectors) that every process reads, and keeps it equal to them."""

from __future__ import annotations

from .errors import (
    AmbiguousId,
    EmbedderUnavailable,
    IndexCorrupt,
    InvalidQuery,
    MemoryNotFound,
    ProjectorError,
    SQLiteUnavailable,
)
from .index import Index
from .model import Hit, Memory, ProjectInfo, SearchResult, TagCount, VerifyReport

__all__ = [
    "AmbiguousId",
    "EmbedderUnavailable",
    "Hit",
    "Index",
    "IndexCorrupt",
    "InvalidQuery",
    "Memory",
    "MemoryNotFound",
    "ProjectInfo",
    "ProjectorError",
    "SQLiteUnavailable",
    "SearchResult",
    "TagCount",
    "VerifyReport",
]
