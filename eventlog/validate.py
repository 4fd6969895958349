"""Checks run on every argument before anything is written. Pure: no I/O.

Each check returns the cleaned value or raises a specific ``ValidationError`` whose message
says what was wrong and what the limit is.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import (
    ContentTooLarge,
    InvalidContent,
    InvalidImportance,
    InvalidKind,
    InvalidMemoryId,
    InvalidMeta,
    InvalidProject,
    InvalidTags,
)

DEFAULT_MAX_CONTENT_BYTES = 64 * 1024
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_KIND_CHARS = 64
MAX_META_BYTES = 16 * 1024

PROJECT_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MEMORY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
# Names Windows refuses as file names, with or without an extension.
RESERVED_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def validate_project(project: object) -> str:
    """Return the lower-cased project id, or raise ``InvalidProject`` naming the rule broken."""
    if not isinstance(project, str):
        raise InvalidProject(f"project id must be a string, got {type(project).__name__}")
    if project == "" or project.strip() == "":
        raise InvalidProject("project id is empty; use letters, digits, '.', '_' or '-'")
    if _has_control_chars(project):
        raise InvalidProject("project id contains control characters")
    if any(sep in project for sep in ("/", "\\")) or ".." in project:
        raise InvalidProject(f"project id {project!r} contains a path separator or '..'")
    lowered = project.lower()
    # ASCII first: str.lower() maps some non-ASCII letters into [a-z] (the Kelvin sign
    # U+212A becomes "k"), which would file the memory under another project's name.
    if not project.isascii() or not PROJECT_PATTERN.fullmatch(lowered):
        raise InvalidProject(
            f"project id {project!r} is invalid: it must match [a-z0-9][a-z0-9._-]{{0,63}} "
            "(1-64 characters, starting with a letter or digit)"
        )
    if lowered.split(".")[0] in RESERVED_DEVICE_NAMES:
        raise InvalidProject(f"project id {project!r} is a reserved device name on Windows")
    return lowered


def validate_content(content: object, max_bytes: int = DEFAULT_MAX_CONTENT_BYTES) -> str:
    """Return content unchanged if it is non-blank, valid UTF-8 and at most ``max_bytes``."""
    if not isinstance(content, str):
        raise InvalidContent(f"content must be a string, got {type(content).__name__}")
    if content.strip() == "":
        raise InvalidContent("content is empty (or only whitespace)")
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidContent(
            f"content is not valid UTF-8 (lone surrogate at character {e.start})"
        ) from e
    if "\x00" in content:
        raise InvalidContent("content contains a NUL character")
    if size > max_bytes:
        raise ContentTooLarge(
            f"content is {size} bytes of UTF-8; the limit is {max_bytes} bytes"
        )
    return content


def validate_tags(tags: object) -> tuple[str, ...]:
    """Return tags trimmed, de-duplicated in order without regard to case (the first spelling
    is kept: tag filters and counts do not tell ``DB`` from ``db`` either); refuse more than 32
    or bad ones."""
    if tags is None:
        return ()
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise InvalidTags("tags must be a list of strings")
    cleaned: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidTags(f"tag {tag!r} is not a string")
        if _has_control_chars(tag):
            raise InvalidTags(f"tag {tag!r} contains control characters")
        try:
            tag.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidTags(f"tag {tag!r} is not valid UTF-8") from e
        tag = tag.strip()
        if not 1 <= len(tag) <= MAX_TAG_CHARS:
            raise InvalidTags(f"each tag must be 1-{MAX_TAG_CHARS} characters, got {len(tag)}")
        if tag.lower() not in seen:
            seen.add(tag.lower())
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise InvalidTags(f"{len(cleaned)} tags given; at most {MAX_TAGS} are allowed")
    return tuple(cleaned)


def validate_importance(importance: object) -> int:
    """Return importance if it is an integer from 1 to 10 (booleans and floats refused)."""
    if isinstance(importance, bool) or not isinstance(importance, int):
        if isinstance(importance, float) and math.isfinite(importance) and importance.is_integer():
            importance = int(importance)
        else:
            raise InvalidImportance(f"importance must be an integer 1-10, got {importance!r}")
    if not 1 <= importance <= 10:
        raise InvalidImportance(f"importance must be an integer 1-10, got {importance}")
    return importance


def validate_kind(kind: object) -> str | None:
    """Return a kind such as ``decision``: None, or 1-64 characters without control chars."""
    if kind is None:
        return None
    if not isinstance(kind, str) or not 1 <= len(kind.strip()) <= MAX_KIND_CHARS:
        raise InvalidKind(f"kind must be a string of 1-{MAX_KIND_CHARS} characters")
    if _has_control_chars(kind):
        raise InvalidKind("kind contains control characters")
    try:
        kind.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidKind(f"kind {kind!r} is not valid UTF-8") from e
    return kind.strip()


def validate_meta(meta: object, encoded_size: int | None = None) -> dict[str, Any]:
    """Return meta as a dict with string keys; refuse other shapes or more than 16 KiB."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise InvalidMeta("meta must be an object with string keys")
    if encoded_size is not None and encoded_size > MAX_META_BYTES:
        raise InvalidMeta(f"meta is {encoded_size} bytes as JSON; the limit is {MAX_META_BYTES}")
    return dict(meta)


def validate_memory_id(memory_id: object) -> str:
    """Return a memory id (16 lower-case hex digits), lower-casing it first."""
    if not isinstance(memory_id, str) or not MEMORY_ID_PATTERN.fullmatch(memory_id.lower()):
        raise InvalidMemoryId(f"memory id must be 16 hex digits, got {memory_id!r}")
    return memory_id.lower()
