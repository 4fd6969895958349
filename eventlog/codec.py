"""The only module that knows the JSON line format of events (orjson). Pure: no I/O.

``encode_event`` writes the current schema. ``decode_line`` reads any supported version,
upcasting old versions through a chain of small ``upcast_<type>_v<n>`` functions, and raises
``UnsupportedEventVersion`` for versions newer than this code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from .errors import CorruptLine, UnknownEventType, UnsupportedEventVersion
from .model import FORGOTTEN, SAVED, Actor, Event, MemoryForgotten, MemorySaved

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

CURRENT_VERSION: dict[str, int] = {SAVED: MemorySaved.version, FORGOTTEN: MemoryForgotten.version}
# The highest schema version any event type has; an unknown type at or below it is skipped.
HIGHEST_KNOWN_VERSION = max(CURRENT_VERSION.values())

# UPCASTERS[type][n] turns a version-n payload into version n+1. Schema v1 is the first
# released version, so the chains are empty today; the mechanism is exercised by tests.
UPCASTERS: dict[str, dict[int, Upcaster]] = {SAVED: {}, FORGOTTEN: {}}


def encode_event(event: Event) -> bytes:
    """One event as one ``\\n``-terminated UTF-8 JSON line."""
    payload: dict[str, Any] = {
        "v": event.version,
        "type": event.type,
        "event_id": event.event_id,
        "ts": event.ts,
        "project": event.project,
        "memory_id": event.memory_id,
    }
    if isinstance(event, MemorySaved):
        payload.update(
            content=event.content,
            tags=list(event.tags),
            importance=event.importance,
            kind=event.kind,
            meta=event.meta,
        )
    payload["actor"] = _encode_actor(event.actor)
    return orjson.dumps(payload) + b"\n"


def _encode_actor(actor: Actor) -> dict[str, Any]:
    return {k: v for k, v in (("client", actor.client), ("host", actor.host), ("pid", actor.pid)) if v is not None}


def decode_line(line: bytes) -> Event:
    """Parse one line (with or without its ``\\n``) into an event of the current schema.

    Raises ``CorruptLine`` (not JSON, wrong shape), ``UnknownEventType`` (well formed, type
    unknown at a known version) or ``UnsupportedEventVersion`` (newer than this code).
    """
    try:
        payload = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise CorruptLine(f"not valid JSON: {e}") from e
    if not isinstance(payload, dict):
        raise CorruptLine("not a JSON object")
    payload = upcast(payload)
    try:
        return _build_event(payload)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptLine(f"malformed {payload.get('type')} event: {e}") from e


def upcast(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring a payload of any supported version up to the current version of its type."""
    version, event_type = payload.get("v"), payload.get("type")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptLine(f"missing or invalid version 'v': {version!r}")
    if not isinstance(event_type, str):
        # Checked before the lookup: an unhashable "type" ([] or {}) must not crash a reader.
        raise CorruptLine(f"missing or invalid event type 'type': {event_type!r}")
    if event_type not in CURRENT_VERSION:
        if version > HIGHEST_KNOWN_VERSION:
            raise UnsupportedEventVersion(_too_new(event_type, version))
        raise UnknownEventType(f"unknown event type {event_type!r} at v{version}")
    current = CURRENT_VERSION[event_type]
    if version > current:
        raise UnsupportedEventVersion(_too_new(event_type, version))
    chain = UPCASTERS[event_type]
    while version < current:
        if version not in chain:
            raise CorruptLine(f"no upcaster for {event_type} v{version}")
        payload = chain[version](payload)
        version += 1
        payload["v"] = version
    return payload


def _too_new(event_type: object, version: int) -> str:
    return (
        f"event {event_type!r} has schema version {version}, newer than this mnemolog "
        f"understands (up to v{HIGHEST_KNOWN_VERSION}); upgrade mnemolog to read this log"
    )


def _require_str(payload: dict[str, Any], key: str) -> str:
    value = payload[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key!r} must be a non-empty string")
    return value


def _decode_actor(raw: object) -> Actor:
    if raw is None:
        return Actor()
    if not isinstance(raw, dict):
        raise TypeError("'actor' must be an object")
    pid = raw.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        raise TypeError("'actor.pid' must be an integer")
    client, host = raw.get("client"), raw.get("host")
    if not all(v is None or isinstance(v, str) for v in (client, host)):
        raise TypeError("'actor.client' and 'actor.host' must be strings")
    return Actor(client=client, host=host, pid=pid)


# The one timestamp shape writers produce; it sorts by time as a string, which the fold's
# "latest event wins" rule relies on. Anything else would decide a memory's state forever.
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def _require_ts(payload: dict[str, Any]) -> str:
    ts = _require_str(payload, "ts")
    if not _TS.fullmatch(ts):
        raise ValueError(f"'ts' must look like 2026-11-22T10:00:00.123Z, got {ts!r}")
    return ts


def _build_event(payload: dict[str, Any]) -> Event:
    event_id, ts = _require_str(payload, "event_id"), _require_ts(payload)
    project, memory_id = _require_str(payload, "project"), _require_str(payload, "memory_id")
    actor = _decode_actor(payload.get("actor"))
    if payload["type"] == FORGOTTEN:
        return MemoryForgotten(event_id, ts, project, memory_id, actor)
    tags, importance = payload.get("tags", []), payload.get("importance", 5)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TypeError("'tags' must be a list of strings")
    if isinstance(importance, bool) or not isinstance(importance, int):
        raise TypeError("'importance' must be an integer")
    kind, meta = payload.get("kind"), payload.get("meta") or {}
    if kind is not None and not isinstance(kind, str):
        raise TypeError("'kind' must be a string or null")
    if not isinstance(meta, dict):
        raise TypeError("'meta' must be an object")
    content = payload["content"]
    if not isinstance(content, str):
        raise TypeError("'content' must be a string")
    return MemorySaved(
        event_id, ts, project, memory_id, content, tuple(tags), importance, kind, meta, actor
    )
