"""The codec: round trips, the upcasting chain, and every way a line can be refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog import (
    Actor,
    CorruptLine,
    MemoryForgotten,
    MemorySaved,
    UnknownEventType,
    UnsupportedEventVersion,
    codec,
    decode_line,
    encode_event,
)
from eventlog.clock import format_ts
from eventlog.model import FORGOTTEN, SAVED

# -- strategies ------------------------------------------------------------------------

ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
event_ids = st.text(ULID_ALPHABET, min_size=26, max_size=26)
timestamps = st.integers(0, 253_402_300_799_999).map(format_ts)  # up to year 9999
projects = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)
memory_ids = st.text("0123456789abcdef", min_size=16, max_size=16)
optional_text = st.none() | st.text(max_size=40)
actors = st.builds(Actor, client=optional_text, host=optional_text, pid=st.none() | st.integers(0, 2**31))
# JSON values orjson round-trips exactly: 64-bit integers, finite floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

saves = st.builds(
    MemorySaved,
    event_id=event_ids,
    ts=timestamps,
    project=projects,
    memory_id=memory_ids,
    content=st.text(),  # any unicode, including newlines, quotes, NUL and emoji
    tags=st.lists(st.text(max_size=64), max_size=32).map(tuple),
    importance=st.integers(1, 10),
    kind=optional_text,
    meta=st.dictionaries(st.text(max_size=20), json_values, max_size=5),
    actor=actors,
)
forgets = st.builds(
    MemoryForgotten,
    event_id=event_ids,
    ts=timestamps,
    project=projects,
    memory_id=memory_ids,
    actor=actors,
)


# -- round trip ------------------------------------------------------------------------


@given(saves | forgets)
def test_round_trip_of_every_event_type(event: MemorySaved | MemoryForgotten) -> None:
    line = encode_event(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one event, one line
    assert decode_line(line) == event
    assert decode_line(line.rstrip(b"\n")) == event  # the newline is optional on read


@given(saves | forgets)
def test_encoded_line_has_the_v1_wire_shape(event: MemorySaved | MemoryForgotten) -> None:
    payload = orjson.loads(encode_event(event))
    common = ["v", "type", "event_id", "ts", "project", "memory_id"]
    assert list(payload)[:6] == common
    assert payload["v"] == 1
    if isinstance(event, MemorySaved):
        assert payload["type"] == "memory.saved"
        assert {"content", "tags", "importance", "kind", "meta", "actor"} <= set(payload)
    else:
        assert payload["type"] == "memory.forgotten"
        assert "content" not in payload


def test_literal_line_decodes() -> None:
    line = (
        b'{"v":1,"type":"memory.saved","event_id":"01JDQ0000000000000000000AA",'
        b'"ts":"2026-11-22T10:00:00.123Z","project":"acme","memory_id":"0123456789abcdef",'
        b'"content":"use \\u00e9vents","tags":["arch"],"importance":7,"kind":"decision",'
        b'"meta":{"k":[1,2]},"actor":{"client":"claude-code","host":"laptop","pid":4242}}\n'
    )
    assert decode_line(line) == MemorySaved(
        event_id="01JDQ0000000000000000000AA",
        ts="2026-11-22T10:00:00.123Z",
        project="acme",
        memory_id="0123456789abcdef",
        content="use \u00e9vents",
        tags=("arch",),
        importance=7,
        kind="decision",
        meta={"k": [1, 2]},
        actor=Actor("claude-code", "laptop", 4242),
    )


# -- upcasting -------------------------------------------------------------------------
# A hypothetical history of memory.saved: v1 called the content "text", v2 renamed it to
# "content", v3 renamed "labels" to "tags". The tests pretend v3 is current.


def upcast_saved_v1(payload: dict[str, Any]) -> dict[str, Any]:
    payload = dict(payload)
    payload["content"] = payload.pop("text")
    return payload


def upcast_saved_v2(payload: dict[str, Any]) -> dict[str, Any]:
    payload = dict(payload)
    payload["tags"] = payload.pop("labels")
    return payload


@contextmanager
def saved_is_at_v3(upcasters: dict[int, codec.Upcaster] | None = None) -> Iterator[None]:
    chain = {1: upcast_saved_v1, 2: upcast_saved_v2} if upcasters is None else upcasters
    with (
        mock.patch.dict(codec.CURRENT_VERSION, {SAVED: 3}),
        mock.patch.dict(codec.UPCASTERS, {SAVED: chain}),
        mock.patch.object(codec, "HIGHEST_KNOWN_VERSION", 3),
    ):
        yield


def old_line(event: MemorySaved, version: int) -> bytes:
    """``event`` as an older version of this code would have written it."""
    payload = orjson.loads(encode_event(event))
    payload["v"] = version
    if version < 3:
        payload["labels"] = payload.pop("tags")
    if version < 2:
        payload["text"] = payload.pop("content")
    return orjson.dumps(payload) + b"\n"


@given(saves, st.sampled_from([1, 2, 3]))
def test_every_older_version_upcasts_to_the_current_shape(event: MemorySaved, version: int) -> None:
    with saved_is_at_v3():
        assert decode_line(old_line(event, version)) == event


def test_upcasters_run_in_order_and_only_from_the_line_version() -> None:
    calls: list[int] = []

    def recording(n: int, step: codec.Upcaster) -> codec.Upcaster:
        def run(payload: dict[str, Any]) -> dict[str, Any]:
            assert payload["v"] == n  # each step sees the version it upgrades from
            calls.append(n)
            return step(payload)

        return run

    event = MemorySaved("01JDQ0000000000000000000AA", "2026-11-22T10:00:00.123Z", "p", "0" * 16, "hi")
    with saved_is_at_v3({1: recording(1, upcast_saved_v1), 2: recording(2, upcast_saved_v2)}):
        assert decode_line(old_line(event, 1)) == event
        assert calls == [1, 2]
        calls.clear()
        assert decode_line(old_line(event, 2)) == event
        assert calls == [2]


def test_missing_upcaster_is_a_corrupt_line() -> None:
    event = MemorySaved("01JDQ0000000000000000000AA", "2026-11-22T10:00:00.123Z", "p", "0" * 16, "hi")
    with saved_is_at_v3({2: upcast_saved_v2}), pytest.raises(CorruptLine, match="no upcaster .*v1"):
        decode_line(old_line(event, 1))


# -- refusals --------------------------------------------------------------------------

FORGET = {
    "v": 1,
    "type": FORGOTTEN,
    "event_id": "01JDQ0000000000000000000AA",
    "ts": "2026-11-22T10:00:00.123Z",
    "project": "acme",
    "memory_id": "0123456789abcdef",
}


def line(**changes: Any) -> bytes:
    payload = {**FORGET, **changes}
    return orjson.dumps({k: v for k, v in payload.items() if v is not ...})


@pytest.mark.parametrize("event_type", [SAVED, FORGOTTEN, "memory.pinned"])
def test_newer_version_is_refused_with_an_upgrade_message(event_type: str) -> None:
    with pytest.raises(UnsupportedEventVersion) as info:
        decode_line(line(v=2, type=event_type))
    message = str(info.value)
    assert "schema version 2" in message and "up to v1" in message and "upgrade" in message
    assert event_type in message


def test_unknown_type_at_a_known_version_is_skippable() -> None:
    with pytest.raises(UnknownEventType, match="unknown event type 'memory.pinned' at v1"):
        decode_line(line(type="memory.pinned"))
    assert issubclass(UnknownEventType, CorruptLine)  # readers skip it like any bad line


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"not json at all\n", "not valid JSON"),
        (b"\xff\xfe\x00garbage\n", "not valid JSON"),
        (b'{"v":1,"type":"memory.forgotten","event_id":"01J', "not valid JSON"),  # torn
        (line() + line() + b"\n", "not valid JSON"),  # two events glued on one line
        (b"[1, 2, 3]\n", "not a JSON object"),
        (b'"memory.saved"\n', "not a JSON object"),
        (line(v=...), "missing or invalid version"),
        (line(v="1"), "missing or invalid version"),
        (line(v=True), "missing or invalid version"),
        (line(v=0), "missing or invalid version"),
        (line(v=1.0), "missing or invalid version"),
        (line(type=...), "missing or invalid event type"),
        (line(type=[]), "missing or invalid event type"),  # unhashable: once a TypeError
        (line(type={"a": 1}), "missing or invalid event type"),
        (line(event_id=...), "malformed memory.forgotten event"),
        (line(event_id=""), "'event_id' must be a non-empty string"),
        (line(project=7), "'project' must be a non-empty string"),
        (line(actor="me"), "'actor' must be an object"),
        (line(actor={"pid": "42"}), "'actor.pid' must be an integer"),
        (line(actor={"client": 1}), "must be strings"),
        (line(type=SAVED), "malformed memory.saved event"),  # no content
        (line(type=SAVED, content=5), "'content' must be a string"),
        (line(type=SAVED, content="x", tags="a,b"), "'tags' must be a list of strings"),
        (line(type=SAVED, content="x", tags=[1]), "'tags' must be a list of strings"),
        (line(type=SAVED, content="x", importance="5"), "'importance' must be an integer"),
        (line(type=SAVED, content="x", importance=True), "'importance' must be an integer"),
        (line(type=SAVED, content="x", kind=3), "'kind' must be a string"),
        (line(type=SAVED, content="x", meta=[1]), "'meta' must be an object"),
    ],
)
def test_garbage_is_a_corrupt_line_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(CorruptLine, match=reason) as info:
        decode_line(raw)
    assert type(info.value) is CorruptLine


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_only_codec_errors(raw: bytes) -> None:
    try:
        decode_line(raw)
    except (CorruptLine, UnsupportedEventVersion):
        pass


@given(st.dictionaries(st.sampled_from([*FORGET, "content", "tags", "meta", "actor", "kind", "importance"]), json_values))
def test_arbitrary_objects_decode_or_raise_only_codec_errors(payload: dict[str, Any]) -> None:
    raw = orjson.dumps({**FORGET, **payload})
    try:
        event = decode_line(raw)
    except (CorruptLine, UnsupportedEventVersion):
        return
    assert decode_line(encode_event(event)) == event


@pytest.mark.parametrize("ts", ["zzz", "2026-11-22", "2026-11-22T10:00:00Z", "2026-11-22 10:00:00.123Z"])
def test_a_timestamp_of_another_shape_is_a_corrupt_line(ts: str) -> None:
    # Timestamps order events as strings: a foreign shape would win (or lose) every comparison.
    line = (
        '{"v":1,"type":"memory.forgotten","event_id":"01M80GNSTV0EHM8566JZFW18XH","ts":"%s",'
        '"project":"acme","memory_id":"38c51becf22d429b"}' % ts
    ).encode()
    with pytest.raises(CorruptLine, match="ts"):
        decode_line(line)
