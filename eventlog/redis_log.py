"""``RedisEventLog``: the Redis backend -- one stream per project, shared by several machines.

Keys, under a configurable prefix (default ``mnemolog:``)::

    <prefix>log:<project>   a stream; each entry has one field ``e`` holding one event line,
                            the codec's bytes, exactly as a line of a log file
    <prefix>projects        the set of projects that have a stream

An append (one event, or the save and forget of an update) is one ``MULTI``/``EXEC`` of its
``XADD``s and the ``SADD``: the events land together and in order, or not at all. It returns
once Redis has replied -- with ``appendfsync always``, after its AOF fsync -- and, when
``wait_replicas`` is set, once that many replicas confirmed it (``WAIT``). Arguments are
validated before anything is sent, as for files.

Readers (``heads``, ``scan_after``, ``is_rewritten``) follow ``EventStore``: the head of a
stream is its last entry id, a reader's mark holds the id of the last entry it applied, and
entries are read with ``XRANGE`` in batches. An entry that is not one decodable event line is
reported and skipped, like a bad line; an event newer than this code stops the reading of that
project (``UnsupportedEventVersion``). ``watch`` listens with a blocking ``XREAD`` in a
background thread.

Every call is bounded by a socket timeout; Redis errors become ``StoreUnavailable`` (cannot
reach or no answer) or ``StoreError``, whose messages never hold the password. Connections are
made again on the next call when Redis comes back, so a long-running server recovers by itself.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from .base import LogBase, is_valid_project
from .codec import encode_event
from .errors import ReplicationTimeout, StoreError, StoreUnavailable
from .model import Event
from .reader import LogLine, make_line
from .source import Head, Mark
from .validate import DEFAULT_MAX_CONTENT_BYTES, validate_project

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "mnemolog:"
DEFAULT_TIMEOUT = 5.0
FIELD = b"e"
BATCH_ENTRIES = 512
LISTEN_BLOCK_MS = 500
SCHEMES = ("redis", "rediss")


# -- URLs (pure) ------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and ``repr``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return SplitResult(parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment).geturl()


def check_redis_url(url: str) -> str:
    """Return ``url`` if it names a Redis server (``redis://`` or ``rediss://``, a host, a port
    and a database number), else raise ``ValueError`` with a message free of the password."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"{shown}: use redis://[user:password@]host:port/db or rediss:// for TLS")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{shown}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{shown}: no host; use redis://[user:password@]host:port/db")
    if port == 0:
        raise ValueError(f"{shown}: the port is not a number from 1 to 65535")
    db = unquote(parts.path).strip("/")
    if db and not db.isdigit():
        raise ValueError(f"{shown}: the database ({db!r}) must be a number, as in redis://host:6379/0")
    return url


def _password(url: str) -> str | None:
    password = urlsplit(url).password
    return unquote(password) if password else None


# -- the log ------------------------------------------------------------------------------------


class RedisEventLog(LogBase):
    """Per-project logs as Redis streams; safe for many processes on many machines at once."""

    def __init__(
        self,
        url: str,
        *,
        root: Path | str,
        prefix: str = DEFAULT_PREFIX,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        client: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        super().__init__(max_content_bytes=max_content_bytes, client=client)
        self.root = Path(root)
        self.url = check_redis_url(url)
        self.display = redact_url(url)
        self.prefix = prefix
        self.timeout = timeout
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._secret = _password(url)
        self._reader: Any = None
        self._writer: Any = None
        self._clients_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisEventLog({self.display!r}, prefix={self.prefix!r}, root={str(self.root)!r})"

    # -- connections ---------------------------------------------------------------------

    def _connect(self, *, single: bool = False, extra_timeout: float = 0.0) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options: dict[str, Any] = {
            "socket_timeout": self.timeout + extra_timeout,
            "socket_connect_timeout": self.timeout,
            # No retries inside the client (they nest: connect, handshake, command, so a hung
            # server would cost several timeouts); ``_call`` retries once on a dropped connection.
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 30,
        }
        if single:
            # Writes go through one connection, so WAIT (which counts the writes of its own
            # connection) covers the append just made.
            pool = redis.BlockingConnectionPool.from_url(self.url, max_connections=1, timeout=self.timeout, **options)
            return redis.Redis(connection_pool=pool)
        return redis.Redis.from_url(self.url, **options)

    @property
    def _r(self) -> Any:
        with self._clients_lock:
            if self._reader is None:
                self._reader = self._connect()
            return self._reader

    @property
    def _w(self) -> Any:
        with self._clients_lock:
            if self._writer is None:
                # WAIT may block for wait_timeout before it answers.
                self._writer = self._connect(single=True, extra_timeout=self.wait_timeout if self.wait_replicas else 0)
            return self._writer

    def close(self) -> None:
        """Close the connections (they reopen on the next call)."""
        with self._clients_lock:
            for client in (self._reader, self._writer):
                if client is not None:
                    client.close()
                    client.connection_pool.disconnect()
            self._reader = self._writer = None

    def _call(self, what: str, work: Callable[[], T]) -> T:
        """Run ``work``, turning Redis errors into ``StoreError``s without the password.

        A dropped connection (a pooled one that died with a restarted Redis) is retried once on
        a new one; a timeout is not, so a call never takes much more than ``timeout``."""
        import redis

        try:
            try:
                return work()
            except redis.exceptions.AuthenticationError:
                raise
            except redis.exceptions.ConnectionError:
                return work()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise StoreUnavailable(
                f"cannot {what}: Redis at {self.display} is unreachable or did not answer within "
                f"{self.timeout:g} s ({self._clean(e)})"
            ) from e
        except redis.exceptions.RedisError as e:
            raise StoreError(f"cannot {what}: Redis at {self.display} answered: {self._clean(e)}") from e

    def _clean(self, error: BaseException) -> str:
        text = str(error) or type(error).__name__
        return text.replace(self._secret, "***") if self._secret else text

    def key(self, project: str) -> str:
        """The stream key of an already validated project."""
        return f"{self.prefix}log:{project}"

    @property
    def projects_key(self) -> str:
        """The key of the set of projects."""
        return f"{self.prefix}projects"

    # -- writing -------------------------------------------------------------------------

    def _write(self, project: str, events: Sequence[Event], durable: bool) -> None:
        """``XADD`` each event line and ``SADD`` the project in one ``MULTI``/``EXEC``."""
        lines = [encode_event(e) for e in events]
        key = self.key(project)

        def run() -> None:
            with self._w.pipeline(transaction=True) as pipe:
                for line in lines:
                    pipe.xadd(key, {FIELD: line})
                pipe.sadd(self.projects_key, project)
                pipe.execute()
            if durable:
                self._wait_for_replicas()

        self._call(f"append to project {project!r}", run)

    def sync(self, project: str) -> None:
        """Wait for the replicas (if asked) after appends made with ``durable=False``."""
        validate_project(project)
        self._call(f"sync project {project!r}", self._wait_for_replicas)

    def _wait_for_replicas(self) -> None:
        if self.wait_replicas <= 0:
            return
        confirmed = int(self._w.wait(self.wait_replicas, int(self.wait_timeout * 1000)))
        if confirmed < self.wait_replicas:
            raise ReplicationTimeout(
                f"the append reached Redis at {self.display} but only {confirmed} of "
                f"{self.wait_replicas} replica(s) confirmed it within {self.wait_timeout:g} s"
            )

    # -- reading -------------------------------------------------------------------------

    def projects(self) -> list[str]:
        """Projects in the set of known projects, sorted."""
        members = self._call("list projects", lambda: self._r.smembers(self.projects_key))
        names = (m.decode("utf-8", "replace") for m in members)
        return sorted(n for n in names if is_valid_project(n))

    def heads(self, projects: Sequence[str]) -> dict[str, Head | None]:
        """The last entry id and length of each stream, all in one round trip."""
        projects = list(projects)
        if not projects:
            return {}

        def run() -> list[Any]:
            with self._r.pipeline(transaction=False) as pipe:
                for project in projects:
                    key = self.key(validate_project(project))
                    pipe.exists(key)
                    pipe.xlen(key)
                    pipe.xrevrange(key, "+", "-", count=1)
                return list(pipe.execute())

        replies = self._call("read the heads of the logs", run)
        out: dict[str, Head | None] = {}
        for n, project in enumerate(projects):
            exists, length, last = replies[3 * n : 3 * n + 3]
            if not exists:
                out[project] = None
            else:
                token = _text(last[0][0]) if last else "0-0"
                out[project] = Head(token, "", int(length))
        return out

    def scan_after(self, project: str, mark: Mark) -> Iterator[LogLine]:
        """The entries after ``mark`` (``XRANGE`` in batches of ``BATCH_ENTRIES``)."""
        project = validate_project(project)
        key = self.key(project)
        start = f"({mark.entry_id}" if mark.entry_id else "-"
        line_no, offset = mark.line_no, mark.offset
        while True:
            batch = self._call(
                f"read project {project!r}",
                lambda: self._r.xrange(key, start, "+", count=BATCH_ENTRIES),  # noqa: B023
            )
            for entry_id, fields in batch:
                yield _entry_line(line_no, offset, _text(entry_id), fields, project)
                line_no, offset = line_no + 1, offset + 1
            if len(batch) < BATCH_ENTRIES:
                return
            start = f"({_text(batch[-1][0])}"

    def is_rewritten(self, project: str, mark: Mark) -> bool:
        """True if the last read entry is gone or holds other bytes (the stream was deleted,
        trimmed, or loaded again)."""
        if not mark.entry_id:
            return False
        key = self.key(validate_project(project))
        entries = self._call(
            f"read project {project!r}", lambda: self._r.xrange(key, mark.entry_id, mark.entry_id, count=1)
        )
        if not entries:
            return True
        raw, _ = _entry_raw(entries[0][1])
        return hashlib.sha256(raw).hexdigest() != mark.last_hash

    def watch(self, on_change: Callable[[str], None]) -> StreamWatch:
        """A background thread that calls ``on_change(project)`` when a stream grows."""
        watch = StreamWatch(self, on_change)
        watch.start()
        return watch

    def describe(self) -> str:
        """The server (password hidden) and the key prefix."""
        return f"Redis at {self.display}, keys {self.prefix}*"


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _entry_raw(fields: dict[bytes, bytes]) -> tuple[bytes, str | None]:
    """The event line of an entry, or the entry's fields as bytes and what is wrong with it."""
    if list(fields) == [FIELD]:
        return fields[FIELD], None
    shown = b" ".join(k + b"=" + v for k, v in fields.items())
    return shown, f"stream entry without exactly one field {FIELD.decode()!r}"


def _entry_line(line_no: int, offset: int, entry_id: str, fields: dict[bytes, bytes], project: str) -> LogLine:
    raw, problem = _entry_raw(fields)
    if problem is not None:
        return LogLine(line_no, offset, offset + 1, raw, None, problem, entry_id=entry_id)
    line = make_line(line_no, offset, offset + 1, raw, project, entry_id)
    if line.problem is not None:
        return LogLine(line_no, offset, offset + 1, raw, None, f"entry {entry_id}: {line.problem}",
                       line.unknown_type, entry_id)
    return line


class StreamWatch:
    """Listens for new entries in every project's stream with a blocking ``XREAD``.

    Runs on its own connection in a daemon thread. Projects that appear later are picked up
    from the set of projects on every round (at most ``LISTEN_BLOCK_MS`` apart). When Redis goes
    away it logs once, retries with a growing pause, and on its return notifies every project
    (entries may have come while it was away)."""

    def __init__(self, log: RedisEventLog, on_change: Callable[[str], None],
                 block_ms: int = LISTEN_BLOCK_MS) -> None:
        self._log = log
        self._on_change = on_change
        self._block_ms = block_ms
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mnemolog-redis-listener", daemon=True)
        self._client: Any = None
        self._initial: dict[str, str] | None = None

    def start(self) -> None:
        """Note where every stream ends now (so nothing appended from here on is missed), then
        start the listener thread. If Redis cannot be reached now, the thread keeps trying."""
        try:
            self._initial = self._start_positions(self._log)
        except StoreError as e:
            logger.warning("listening to Redis at %s: %s; retrying in the background", self._log.display, e)
            self._initial = None
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (it ends within one blocking round)."""
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=0.2)

    def _run(self) -> None:
        pause, failing = 0.2, self._initial is None
        positions: dict[str, str] = {}
        while not self._stopping.is_set():
            try:
                if self._client is None:
                    self._client = self._log._connect(extra_timeout=self._block_ms / 1000)
                    positions, self._initial = self._initial or self._start_positions(self._log), None
                    if failing:
                        logger.warning("Redis at %s is back; catching up", self._log.display)
                        self._notify(list(positions))
                    failing, pause = False, 0.2
                self._listen(positions)
            except Exception as e:  # connection lost, Redis restarting, a bad reply...
                if not failing:
                    logger.warning("listening to Redis at %s failed (%s); retrying",
                                   self._log.display, self._log._clean(e))
                failing = True
                self._drop_client()
                self._stopping.wait(pause)
                pause = min(pause * 2, 2.0)
        self._drop_client()

    @staticmethod
    def _start_positions(log: RedisEventLog) -> dict[str, str]:
        """The last entry id of every stream now."""
        heads = log.heads(log.projects())
        return {p: (h.token if h else "0-0") for p, h in heads.items()}

    def _known_projects(self) -> list[str]:
        members = self._client.smembers(self._log.projects_key)
        return [n for n in (_text(m) for m in members) if is_valid_project(n)]

    def _listen(self, positions: dict[str, str]) -> None:
        for project in self._known_projects():
            positions.setdefault(project, "0-0")  # a new project: everything in it is news
        if not positions:
            self._stopping.wait(self._block_ms / 1000)
            return
        streams = {self._log.key(p): position for p, position in positions.items()}
        reply = self._client.xread(streams, count=BATCH_ENTRIES, block=self._block_ms)
        items = reply.items() if isinstance(reply, dict) else (reply or [])
        changed = []
        for key, entries in items:
            if entries:
                project = _text(key)[len(self._log.key("")):]
                positions[project] = _text(entries[-1][0])
                changed.append(project)
        self._notify(changed)

    def _notify(self, projects: list[str]) -> None:
        for project in projects:
            if self._stopping.is_set():
                return
            try:
                self._on_change(project)
            except Exception as e:  # a failed catch-up is retried by the next read
                logger.warning("catch-up of %r after a Redis notice failed: %s", project, e)

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
                self._client.connection_pool.disconnect()
            except Exception:  # the connection is already broken
                pass
            self._client = None
