"""eventlog: the durable source of truth of mnemolog -- append-only per-project logs, in JSONL
files (``EventLog``) or Redis streams (``eventlog.redis_log.RedisEventLog``), one protocol
(``EventStore``) for both."""

from __future__ import annotations

from .codec import decode_line, encode_event
from .errors import (
    ContentTooLarge,
    CorruptLine,
    EventLogError,
    InvalidContent,
    InvalidImportance,
    InvalidKind,
    InvalidMemoryId,
    InvalidMeta,
    InvalidProject,
    InvalidTags,
    LockTimeout,
    ReplicationTimeout,
    StoreError,
    StoreUnavailable,
    UnknownEventType,
    UnsupportedEventVersion,
    ValidationError,
)
from .fold import MemoryState, fold, present
from .model import Actor, Event, MemoryForgotten, MemorySaved, compute_memory_id
from .reader import LogLine, read_events, scan
from .source import EventStore, Head, Mark
from .store import EventLog
from .writer import Durability

__all__ = [
    "Actor",
    "ContentTooLarge",
    "CorruptLine",
    "Durability",
    "Event",
    "EventLog",
    "EventLogError",
    "EventStore",
    "Head",
    "InvalidContent",
    "InvalidImportance",
    "InvalidKind",
    "InvalidMemoryId",
    "InvalidMeta",
    "InvalidProject",
    "InvalidTags",
    "LockTimeout",
    "LogLine",
    "Mark",
    "MemoryForgotten",
    "MemorySaved",
    "MemoryState",
    "ReplicationTimeout",
    "StoreError",
    "StoreUnavailable",
    "UnknownEventType",
    "UnsupportedEventVersion",
    "ValidationError",
    "compute_memory_id",
    "decode_line",
    "encode_event",
    "fold",
    "present",
    "read_events",
    "scan",
]
