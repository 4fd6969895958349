"""Every bad input is refused with its own error, a message naming the rule, and no write."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog import (
    ContentTooLarge,
    EventLog,
    EventLogError,
    InvalidContent,
    InvalidImportance,
    InvalidKind,
    InvalidMemoryId,
    InvalidMeta,
    InvalidProject,
    InvalidTags,
    ValidationError,
)
from eventlog.validate import validate_project

BAD_PROJECTS = [
    ("../x", "path separator or '..'"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("..", "'..'"),
    ("", "empty"),
    ("   ", "empty"),
    ("\t", "empty"),
    ("a\x00b", "control characters"),
    ("a\nb", "control characters"),
    ("a\x1bb", "control characters"),
    ("a\x7fb", "control characters"),
    ("con", "reserved device name"),
    ("nul", "reserved device name"),
    ("COM1", "reserved device name"),
    ("lpt9.log", "reserved device name"),
    ("a" * 65, r"1-64 characters"),
    ("-x", "starting with a letter or digit"),
    (".x", "starting with a letter or digit"),
    ("_x", "starting with a letter or digit"),
    ("a b", r"must match \[a-z0-9\]"),
    ("caf\u00e9", r"must match \[a-z0-9\]"),
    ("\u212acme", r"must match \[a-z0-9\]"),  # Kelvin sign: lower() would make it "kcme"
    (None, "must be a string"),
    (7, "must be a string"),
]

BIG = 64 * 1024
BAD_CONTENT: list[tuple[Any, type[EventLogError], str]] = [
    ("", InvalidContent, "empty"),
    ("  \n\t ", InvalidContent, "empty"),
    ("ok \ud800 no", InvalidContent, "not valid UTF-8 .*lone surrogate at character 3"),
    ("nul \x00 byte", InvalidContent, "NUL"),
    (b"bytes", InvalidContent, "must be a string"),
    (None, InvalidContent, "must be a string"),
    ("x" * (BIG + 1), ContentTooLarge, f"{BIG + 1} bytes .*limit is {BIG} bytes"),
    # The limit is in bytes of UTF-8, not characters: 32,769 characters of 2 bytes each.
    ("\u00e9" * (BIG // 2 + 1), ContentTooLarge, f"{BIG + 2} bytes .*limit is {BIG} bytes"),
]

BAD_TAGS: list[tuple[Any, str]] = [
    ([f"t{i}" for i in range(33)], "33 tags given; at most 32"),
    (["x" * 65], "1-64 characters, got 65"),
    ([""], "1-64 characters, got 0"),
    (["   "], "1-64 characters, got 0"),
    (["ok", "bad\x01"], "control characters"),
    (["tab\there"], "control characters"),
    (["\udc80"], "not valid UTF-8"),
    ("arch", "must be a list of strings"),
    (5, "must be a list of strings"),
    ([1], "is not a string"),
    ([None], "is not a string"),
]

BAD_IMPORTANCE: list[Any] = [0, 11, -1, 5.5, float("nan"), "5", True, False, None, [5]]

BAD_MEMORY_IDS: list[Any] = [
    "",
    "abc",
    "0123456789abcde",  # 15
    "0123456789abcdef0",  # 17
    "0123456789abcdeg",
    " 0123456789abcdef",
    "0123456789abcdef\n",
    "../../etc/passwd",
    None,
    123,
]


@pytest.fixture(params=["existing log", "no log yet"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[EventLog, str, Path]:
    """A store and a project, either with a log holding one event or with no store at all."""
    root = tmp_path / "store"
    log = EventLog(root, max_content_bytes=BIG)
    if request.param == "existing log":
        log.save("proj", "an existing memory", tags=["keep"])
    return log, "proj", root


Refuses = Callable[[tuple[EventLog, str, Path], Callable[[EventLog, str], object], type[EventLogError], str], None]


@pytest.fixture
def refuses(tree: Callable[[Path], dict[str, bytes | None]]) -> Refuses:
    """Check that an action raises exactly an error matching a message and writes nothing."""

    def check(
        setup: tuple[EventLog, str, Path],
        action: Callable[[EventLog, str], object],
        error: type[EventLogError],
        message: str,
    ) -> None:
        log, project, root = setup
        before = tree(root)
        with pytest.raises(error, match=message) as info:
            action(log, project)
        assert type(info.value) is error
        assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)
        assert tree(root) == before  # byte for byte; and nothing created on a fresh store

    return check


@pytest.mark.parametrize(("project", "message"), BAD_PROJECTS)
def test_bad_project(refuses: Refuses, setup: tuple[EventLog, str, Path], project: Any, message: str) -> None:
    refuses(setup, lambda log, _: log.save(project, "content"), InvalidProject, message)
    refuses(setup, lambda log, _: log.forget(project, "0123456789abcdef"), InvalidProject, message)
    refuses(setup, lambda log, _: list(log.read(project)), InvalidProject, message)


def test_project_ids_are_lower_cased_never_rewritten(log: EventLog) -> None:
    assert log.save("ACME.Web_2-x", "hello") == log.save("acme.web_2-x", "hello")
    assert log.projects() == ["acme.web_2-x"]
    assert log.save("a" * 64, "longest allowed") and "a" * 64 in log.projects()


@pytest.mark.parametrize(("content", "error", "message"), BAD_CONTENT)
def test_bad_content(refuses: Refuses, setup: tuple[EventLog, str, Path], content: Any, error: type[EventLogError], message: str) -> None:
    refuses(setup, lambda log, project: log.save(project, content), error, message)


def test_content_at_the_limit_is_accepted(setup: tuple[EventLog, str, Path]) -> None:
    log, project, _ = setup
    memory_id = log.save(project, "y" * BIG)
    assert any(e.memory_id == memory_id and len(e.content) == BIG for e in log.read(project))


def test_configured_smaller_content_limit(refuses: Refuses, tmp_path: Path) -> None:
    root = tmp_path / "store"
    small = EventLog(root, max_content_bytes=100)
    small.save("proj", "z" * 100)
    setup = (small, "proj", root)
    refuses(setup, lambda log, project: log.save(project, "z" * 101), ContentTooLarge, "101 bytes .*limit is 100 bytes")
    refuses(setup, lambda log, project: log.save(project, "\u20ac" * 34), ContentTooLarge, "102 bytes .*limit is 100")


@pytest.mark.parametrize(("tags", "message"), BAD_TAGS)
def test_bad_tags(refuses: Refuses, setup: tuple[EventLog, str, Path], tags: Any, message: str) -> None:
    refuses(setup, lambda log, project: log.save(project, "content", tags=tags), InvalidTags, message)


def test_tags_are_trimmed_and_deduplicated(log: EventLog) -> None:
    log.save("p", "content", tags=[" arch ", "arch", "db", "DB", "Db ", "x" * 64, *[f"t{i}" for i in range(29)]])
    (event,) = log.read("p")
    assert event.tags[:3] == ("arch", "db", "x" * 64) and len(event.tags) == 32


@pytest.mark.parametrize("importance", BAD_IMPORTANCE, ids=repr)
def test_bad_importance(refuses: Refuses, setup: tuple[EventLog, str, Path], importance: Any) -> None:
    refuses(
        setup,
        lambda log, project: log.save(project, "content", importance=importance),
        InvalidImportance,
        "importance must be an integer 1-10",
    )


@pytest.mark.parametrize("memory_id", BAD_MEMORY_IDS, ids=repr)
def test_bad_memory_id(refuses: Refuses, setup: tuple[EventLog, str, Path], memory_id: Any) -> None:
    refuses(setup, lambda log, project: log.forget(project, memory_id), InvalidMemoryId, "memory id must be 16 hex digits")


@pytest.mark.parametrize(
    ("kind", "message"),
    [("", "1-64 characters"), ("k" * 65, "1-64 characters"), (3, "string"), ("a\x00", "control"), ("\ud800", "UTF-8")],
)
def test_bad_kind(refuses: Refuses, setup: tuple[EventLog, str, Path], kind: Any, message: str) -> None:
    refuses(setup, lambda log, project: log.save(project, "content", kind=kind), InvalidKind, message)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ([1, 2], "object with string keys"),
        ("meta", "object with string keys"),
        ({1: "x"}, "object with string keys"),
        ({"k": "v" * (16 * 1024)}, "limit is 16384"),
        ({"k": {1: 2}}, "not valid JSON"),  # a nested non-string key
        ({"k": object()}, "not valid JSON"),
        ({"k": 2**70}, "not valid JSON"),  # beyond 64-bit integers
        ({"k": "\ud800"}, "not valid JSON"),
    ],
    ids=repr,
)
def test_bad_meta(refuses: Refuses, setup: tuple[EventLog, str, Path], meta: Any, message: str) -> None:
    refuses(setup, lambda log, project: log.save(project, "content", meta=meta), InvalidMeta, message)


@given(st.text(max_size=70) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True))
def test_a_project_id_is_accepted_only_as_its_own_lower_case_ascii(project: str) -> None:
    try:
        cleaned = validate_project(project)
    except InvalidProject as e:
        assert str(e)  # always says why
        return
    assert project.isascii() and cleaned == project.lower()
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", cleaned) and ".." not in cleaned
    assert cleaned.split(".")[0] not in {"con", "prn", "aux", "nul"}
