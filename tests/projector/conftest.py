"""Fixtures shared by the projector tests.

Helpers that modules and child processes import live in ``_projector_support.py`` (conftest
modules are not importable in importlib mode), so this directory goes on ``sys.path``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _projector_support import FakeEmbedder  # noqa: E402

from eventlog import EventLog  # noqa: E402
from projector import Index  # noqa: E402


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store root that does not exist yet."""
    return tmp_path / "store"


@pytest.fixture
def log(root: Path) -> EventLog:
    """An EventLog without fsync (the tests are about the index, not the disk)."""
    return EventLog(root, durability="never", client="pytest")


@pytest.fixture
def make_index(log: EventLog) -> Iterator[Callable[..., Index]]:
    """Open Index objects on the store; every one is closed at the end of the test."""
    opened: list[Index] = []

    def make(embedder: Any = None, **kwargs: Any) -> Index:
        index = Index(log, embedder, **kwargs)
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.close()


@pytest.fixture
def index(make_index: Callable[..., Index]) -> Index:
    """An index without an embedder (keyword search only)."""
    return make_index()


@pytest.fixture
def fake() -> FakeEmbedder:
    """A deterministic 16-d fake embedding model, ``fake-v1``."""
    return FakeEmbedder()
