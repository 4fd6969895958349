"""Fixtures shared by the event log tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from eventlog import EventLog

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("_writer.py")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store root that does not exist yet (EventLog creates it)."""
    return tmp_path / "store"


@pytest.fixture
def log(root: Path) -> EventLog:
    """An EventLog on a fresh root, with the default (durable) settings."""
    return EventLog(root, client="pytest")


def snapshot(path: Path) -> dict[str, bytes | None]:
    """Every file under ``path`` (relative name -> bytes; directories -> None)."""
    if not path.exists():
        return {}
    tree: dict[str, bytes | None] = {".": None}
    for item in sorted(path.rglob("*")):
        tree[str(item.relative_to(path))] = item.read_bytes() if item.is_file() else None
    return tree


@pytest.fixture
def tree() -> Callable[[Path], dict[str, bytes | None]]:
    """``snapshot`` as a fixture (conftest modules are not importable in importlib mode)."""
    return snapshot


def subprocess_env() -> dict[str, str]:
    """Environment for child processes that import ``eventlog`` from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def child_env() -> dict[str, str]:
    """``subprocess_env()`` as a fixture."""
    return subprocess_env()


@pytest.fixture
def spawn_writer() -> Callable[..., subprocess.Popen[str]]:
    """Start ``_writer.py`` as a real OS process with its stdout piped back."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:  # never leave a writer behind, whatever the test did
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
