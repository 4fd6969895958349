"""A real ``redis-server`` for the tests: started on a free loopback port in a temporary
directory, stopped (or killed, and started again from its files) on demand.

Importable because ``tests/conftest.py`` puts this directory on ``sys.path``. When
``redis-server`` is missing the tests that need it are skipped -- except in CI (``CI`` set),
where they fail: ``.ci/run`` installs it, so a missing server there is a broken setup.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

STARTUP_SECONDS = 10.0


def require_redis_server() -> str:
    """The path of ``redis-server``; skip the test without it (fail it in CI)."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (tools/test.sh installs it from the system packages)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{message}; in CI the Redis tests must run, not skip", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process bound to 127.0.0.1, its data in ``directory``."""

    def __init__(self, directory: Path, *, aof: bool = False, port: int | None = None,
                 extra: list[str] | None = None) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.aof = aof
        self.extra = extra or []
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The command line: loopback only, no RDB snapshots, AOF with fsync on every write if
        asked (so an acknowledged write survives ``kill -9``)."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
                "--logfile", str(self.directory / "redis.log")]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self.extra

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.directory)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.directory / "redis.log")
                raise RuntimeError(f"redis-server exited: {log.read_text() if log.exists() else ''}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {STARTUP_SECONDS} s")

    def ping(self) -> bool:
        """True if the server answers ``PING`` (raw RESP, no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up, maybe behind a password
        except OSError:
            return False

    def kill(self) -> None:
        """``kill -9`` the server (no shutdown, no final fsync)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> object:
        """A ``redis.Redis`` client of this server (bytes replies)."""
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)
