"""Fixtures shared by every test directory: a real ``redis-server`` for the Redis backend.

One server for the whole session (no persistence, fast); every test gets its own key prefix,
so tests never see each other's streams. Tests that kill or restart Redis start their own
``RedisServer`` (see ``_redis_server.py``, importable from here).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent))

from _redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A ``redis-server`` on a free loopback port for the session (skipped without one, but
    failed in CI)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis server."""
    if not redis_server.ping():  # a test killed it: start it again for the next ones
        redis_server.stop()
        redis_server.start()
    return redis_server.url
