"""eventlog: the durable source of truth of mnemolog -- append-only per-project JSONL logs."""

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
    UnknownEventType,
    UnsupportedEventVersion,
    ValidationError,
)
from .fold import MemoryState, fold, present
from .model import Actor, Event, MemoryForgotten, MemorySaved, compute_memory_id
from .reader import LogLine, read_events, scan
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
    "InvalidContent",
    "InvalidImportance",
    "InvalidKind",
    "InvalidMemoryId",
    "InvalidMeta",
    "InvalidProject",
    "InvalidTags",
    "LockTimeout",
    "LogLine",
    "MemoryForgotten",
    "MemorySaved",
    "MemoryState",
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
