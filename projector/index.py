"""``Index``: the read side of a store. Opens lazily, catches up before answering, recovers
from a missing or corrupt ``index.db`` by rebuilding it from the logs. The logs are any
``EventStore`` (files or Redis); the index lives under the store's local ``root``."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eventlog import EventStore, MemorySaved, MemoryState, fold
from eventlog.lock import held
from eventlog.paths import ensure_dir
from eventlog.validate import validate_importance, validate_project

from . import db, query
from .errors import AmbiguousId, EmbedderUnavailable, IndexCorrupt, InvalidQuery, MemoryNotFound, ProjectorError
from .model import Hit, Memory, ProjectInfo, SearchResult, TagCount, VerifyReport
from .hybrid import SearchTuning
from .runner import Projection
from .schema import SCHEMA_VERSION, TABLES
from .tracking import Tracking, is_pending, read_tracking

if TYPE_CHECKING:
    from .embed import Embedder

logger = logging.getLogger(__name__)

INDEX_LOCK_TIMEOUT = 120.0
EMBED_RETRY_SECONDS = 30.0
EMBED_AHEAD_LINES = 512
MAX_LIMIT = 100
MIN_PREFIX = 6

T = TypeVar("T")


class Index:
    """The SQLite index of a store, kept equal to the fold of its logs."""

    def __init__(
        self,
        log: EventStore,
        embedder: Embedder | None = None,
        *,
        path: Path | None = None,
        cache_path: Path | None = None,
        lock_timeout: float = INDEX_LOCK_TIMEOUT,
        tuning: SearchTuning | None = None,
    ) -> None:
        self.log = log
        self.path = path or log.root / "index.db"
        self._cache_path = cache_path or log.root / "cache" / "embeddings.db"
        self._lock_path = log.root / "locks" / "index.lock"
        self._lock_timeout = lock_timeout
        self._inner_embedder = embedder
        self._embedder: Embedder | None = None
        self._embed_error: str | None = None
        self._embed_failed_at = 0.0
        self._conn: Any = None
        self._identity: tuple[int, int] | None = None
        self._mutex = threading.RLock()  # one connection per Index, shared by worker threads
        # A second connection for the save path's reads (``latest``), which should not wait
        # while a catch-up holds ``_mutex`` to embed or to wait for the store-wide index lock.
        self._reader: tuple[Any, tuple[int, int] | None] | None = None
        self._reader_mutex = threading.Lock()
        self._watcher: Any = None
        self._helper: ThreadPoolExecutor | None = None
        self.tuning = tuning or SearchTuning()

    # -- connection ----------------------------------------------------------------------

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        ensure_dir(self._lock_path.parent)
        with held(self._lock_path, self._lock_timeout):
            yield

    def _connection(self) -> Any:
        """The open connection, reopened if ``index.db`` was replaced or deleted under us."""
        with self._mutex:
            identity = _file_identity(self.path)
            if self._conn is not None and identity == self._identity:
                return self._conn
            if self._conn is not None:
                logger.warning("index %s was deleted or replaced; reopening it and catching up from the logs", self.path)
            self._close_connection()
            self._conn = self._open()
            self._identity = _file_identity(self.path)
            return self._conn

    def _open(self) -> Any:
        ensure_dir(self.path.parent)
        try:
            return self._open_checked()
        except IndexCorrupt as e:
            logger.warning("index %s is unusable (%s); rebuilding it from the logs", self.path, e)
        with self._index_lock():
            try:  # another process may have recovered it while we waited
                return self._open_checked()
            except IndexCorrupt:
                _remove_index_files(self.path)
                return self._open_checked()

    def _open_checked(self) -> Any:
        try:  # a garbage file already fails here, on the journal-mode pragma
            conn = db.retry_busy(lambda: db.connect(self.path))
        except db.database_error() as e:
            raise _as_corruption(e) from e
        try:
            version = _schema_version(conn)
            if version is None:
                self._create_schema(conn)
            elif version != str(SCHEMA_VERSION):
                raise IndexCorrupt(f"schema version {version}, this code uses {SCHEMA_VERSION}")
            return conn
        except (db.database_error(), IndexCorrupt) as e:
            conn.close()
            raise e if isinstance(e, IndexCorrupt) else _as_corruption(e) from e

    def _create_schema(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(TABLES):
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?), ('model_id', '')",
                (str(SCHEMA_VERSION),),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        _chmod_private(self.path)

    def _close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a connection to a deleted or corrupt file may fail to close
                pass
            self._conn = None

    def close(self) -> None:
        """Stop the watcher and close the connection."""
        if self._watcher is not None:
            if not self._watcher.stop():
                logger.warning("a background catch-up is still running; closing the index after it")
            self._watcher = None
        with self._mutex:
            self._close_connection()
            pool, self._helper = self._helper, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._reader_mutex:
            if self._reader is not None:
                self._reader[0].close()
                self._reader = None

    # -- embeddings ----------------------------------------------------------------------

    def _active_embedder(self) -> Embedder | None:
        """The cached embedder, or None if there is none or it failed recently."""
        if self._inner_embedder is None:
            return None
        if self._embed_error and time.monotonic() - self._embed_failed_at < EMBED_RETRY_SECONDS:
            return None
        if self._embedder is None:
            from .embed import CachedEmbedder
            from .embed_cache import EmbeddingCache

            self._embedder = CachedEmbedder(self._inner_embedder, EmbeddingCache(self._cache_path))
        return self._embedder

    def _embed(self, texts: Sequence[str], *, cached: bool = True) -> list[bytes] | None:
        """Vectors of ``texts`` as float32 bytes, or None without a working model. ``cached``
        False skips the embedding cache: right for queries, which rarely come twice, while a
        lookup in a cache as large as the store costs up to ~2 ms when its file is not in the
        OS's page cache (BENCHMARKS.md, `tools/probe_search.py cache`)."""
        embedder = self._active_embedder()
        if embedder is None or self._inner_embedder is None:  # the one implies the other
            return None
        try:
            vectors = (embedder if cached else self._inner_embedder).embed(list(texts))
        except EmbedderUnavailable as e:
            if self._embed_error is None:
                logger.warning("embeddings unavailable, using keyword search: %s", e)
            self._embed_error, self._embed_failed_at = str(e), time.monotonic()
            return None
        self._embed_error = None
        return [row.astype("float32").tobytes() for row in vectors]

    def run_beside(self, job: Callable[[], T]) -> Callable[[], T]:
        """Start ``job`` on this index's helper thread and return the wait for its result. A
        search runs its keyword SQL there while it embeds the query itself (SQLite and
        onnxruntime both release the GIL); the caller must wait before it lets go of ``_mutex``
        if the job uses the connection."""
        with self._mutex:
            if self._helper is None:
                self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnemolog-search-helper")
            future = self._helper.submit(job)
        return future.result

    def prepare(self, saves: Sequence[MemorySaved]) -> None:
        """Embed the memories of ``saves`` into the embedding cache now, outside the index
        lock: the projection of them runs under that store-wide lock, where every other server
        waits, and then only reads the cache. Best effort: without a working
        model this does nothing and the catch-up decides what happens. (Takes no ``_mutex``
        itself: the embedder and its cache are thread-safe; ``catch_up`` calls it under it.)"""
        from .runner import embedding_text

        if saves:
            self._embed([embedding_text(e) for e in saves])

    @property
    def model_id(self) -> str:
        """The id of the configured embedding model ('' for none)."""
        return self._inner_embedder.model_id if self._inner_embedder is not None else ""

    # -- projection ----------------------------------------------------------------------

    def _projection(self, conn: Any) -> Projection:
        return Projection(conn, self.log, self._embed)

    def catch_up(self, project: str | None = None) -> int:
        """Apply what the logs hold beyond the index; cheap (a ``stat``) when nothing is new."""
        with self._mutex:
            conn = self._connection()
            projects = [validate_project(project)] if project else self._known_projects(conn)
            heads = self.log.heads(projects)  # one stat per file, one round trip to Redis
            pending = [p for p in projects if is_pending(read_tracking(conn, p), heads[p])]
            needs_vectors = self._vectors_stale(conn)
            if not pending and not needs_vectors:
                return 0
            self._embed_ahead(conn, pending)
            with self._index_lock():
                conn = self._connection()
                self._sync_vectors(conn)
                projection = self._projection(conn)
                return sum(projection.project_log(p) for p in pending)

    def _embed_ahead(self, conn: Any, projects: Sequence[str]) -> None:
        """Embed the saves the logs hold beyond the index into the embedding cache before the
        store-wide index lock is taken: every other server waits on that lock, so the model
        should not run under it; the projection then reads the cache. Best effort, and at
        most ``EMBED_AHEAD_LINES`` per project (a long tail is embedded under the lock as
        before). Under ``_mutex``, so a request thread waits for a background catch-up of the
        same saves instead of embedding them a second time."""
        if self._active_embedder() is None:
            return
        for project in projects:
            t = read_tracking(conn, project) or Tracking(project)
            try:
                if t.stalled or self.log.is_rewritten(project, t.mark):
                    continue  # the projection under the lock sorts these out
                lines = itertools.islice(self.log.scan_after(project, t.mark), EMBED_AHEAD_LINES)
                self.prepare([line.event for line in lines if isinstance(line.event, MemorySaved)])
            except Exception as e:  # the projection reads and embeds again, and reports errors
                logger.debug("embedding ahead of project %r failed: %s", project, e)

    def _known_projects(self, conn: Any) -> list[str]:
        tracked = [r[0] for r in conn.execute("SELECT project FROM tracking")]
        return sorted(set(self.log.projects()) | set(tracked))

    def _is_pending(self, conn: Any, project: str) -> bool:
        return is_pending(read_tracking(conn, project), self.log.heads([project])[project])

    # -- vectors of the configured model -------------------------------------------------

    def _meta(self, conn: Any, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _vectors_stale(self, conn: Any) -> bool:
        """True if the index's vectors are not (all) of the configured model."""
        if self._active_embedder() is None:
            return False
        return self._meta(conn, "model_id") != self.model_id or self._meta(conn, "vectors_complete") == "0"

    def _sync_vectors(self, conn: Any) -> None:
        """Re-embed when the configured model differs from the index's, or some memories have
        no vector (saves projected while the model could not load). Under the index lock."""
        from .vectors import backfill_vectors

        if not self._vectors_stale(conn):
            return
        complete = backfill_vectors(conn, self._embed, reset=self._meta(conn, "model_id") != self.model_id)
        _set_meta(conn, "model_id", self.model_id)
        _set_meta(conn, "vectors_complete", "1" if complete else "0")

    # -- reading ---------------------------------------------------------------------------

    def search(
        self,
        query_text: str,
        *,
        project: str,
        limit: int = 10,
        tags: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        min_importance: int | None = None,
    ) -> SearchResult:
        """Hybrid search in one project: bm25 and vector candidates fused by rank."""
        filters = self._filters(project, tags, min_importance, since, until)
        if not isinstance(query_text, str) or not query_text.strip():
            raise InvalidQuery("query is empty; give words to search for")
        limit = _check_limit(limit)
        # Every project, not only this one: FTS5 keeps its bm25 statistics (row count, term
        # frequencies) over the whole table, so a project's scores would otherwise depend on
        # which other projects this process happens to have caught up.
        self.catch_up()
        from .hybrid import hybrid_search

        with self._mutex:
            return hybrid_search(self._connection(), query_text, filters, limit, self)

    def load_context(
        self,
        project: str,
        *,
        limit: int = 30,
        min_importance: int | None = None,
        tags: Sequence[str] | None = None,
        budget_chars: int = 24_000,
    ) -> tuple[list[Memory], int]:
        """The most important, then most recent, memories of a project within a size budget."""
        filters = self._filters(project, tags, min_importance, None, None)
        limit = _check_limit(limit)
        self.catch_up(filters.project)
        with self._mutex:
            conn = self._connection()
            sql, params = query.context_sql(filters, limit)
            memories = [query.row_to_memory(r) for r in conn.execute(sql, params)]
            sql, params = query.count_sql(filters)
            total = int(conn.execute(sql, params).fetchone()[0])
        return _within_budget(memories, budget_chars), total

    def get(self, project: str, id_or_prefix: str) -> Memory:
        """The present memory of ``project`` whose id is or starts with ``id_or_prefix``."""
        project = validate_project(project)
        prefix = _check_prefix(id_or_prefix)
        self.catch_up(project)
        with self._mutex:
            sql, params = query.prefix_sql(project, prefix)
            rows = self._connection().execute(sql, params).fetchall()
        if not rows:
            raise MemoryNotFound(f"no memory {id_or_prefix!r} in project {project!r}")
        if len(rows) > 1:
            raise AmbiguousId(f"id prefix {id_or_prefix!r} matches several memories in {project!r}; give more characters")
        return query.row_to_memory(rows[0])

    def latest(self, project: str, memory_id: str) -> tuple[Memory | None, str | None]:
        """A memory's state as the log holds it now: the memory if present, and the timestamp
        of its deciding event (forgotten ones included). Read from the index and the log's tail
        that the index has not applied yet, without catching the index up: a save checks this
        and should not first embed and index what other servers have just saved."""
        project = validate_project(project)
        try:
            row, tracking = self._read_state(project, memory_id)
        except db.database_error():  # replaced or damaged just now: the catch-up path recovers it
            row, tracking = None, None
        if tracking is None:
            return self._latest_after_catch_up(project, memory_id)
        if not is_pending(tracking, self.log.heads([project])[project]):
            return _state_of_row(row)
        if tracking.stalled or self.log.is_rewritten(project, tracking.mark):
            return self._latest_after_catch_up(project, memory_id)  # the projection sorts that tail out
        tail = (line.event for line in self.log.scan_after(project, tracking.mark))
        state = fold(e for e in tail if e is not None and e.memory_id == memory_id).get((project, memory_id))
        indexed = None if row is None else (row[query.STATE_UPDATED_AT], row[query.STATE_WINNER_EVENT_ID])
        if state is None or (indexed is not None and state.winner <= indexed):
            return _state_of_row(row)
        return _state_of_tail(state, row), state.winner[0]

    def _latest_after_catch_up(self, project: str, memory_id: str) -> tuple[Memory | None, str | None]:
        self.catch_up(project)
        with self._mutex:
            return _state_of_row(self._connection().execute(query.state_sql(), (project, memory_id)).fetchone())

    def _read_state(self, project: str, memory_id: str) -> tuple[Sequence[Any] | None, Tracking | None]:
        """A memory's row and its project's tracking, read on the reader connection; no
        tracking when the index is not open yet (the caller then takes the catch-up path)."""
        with self._reader_mutex:
            identity = self._identity
            if self._conn is None or identity is None or identity != _file_identity(self.path):
                return None, None
            if self._reader is None or self._reader[1] != identity:
                if self._reader is not None:
                    self._reader[0].close()
                self._reader = (db.connect(self.path), identity)
            conn = self._reader[0]
            conn.execute("BEGIN")  # one snapshot: the row and the tracking row of the same commit
            try:
                row = conn.execute(query.state_sql(), (project, memory_id)).fetchone()
                return row, read_tracking(conn, project) or Tracking(project)
            finally:
                conn.execute("COMMIT")

    def projects(self) -> list[ProjectInfo]:
        """Every project with a log, its memory count and last activity."""
        self.catch_up()
        with self._mutex:
            return query.list_projects(self._connection(), self.log.projects())

    def tags(self, project: str | None = None, limit: int = 20, min_usage: int = 1) -> list[TagCount]:
        """Most used tags of one project, or of all projects."""
        if project is not None:
            project = validate_project(project)
        limit = _check_limit(limit, 1000)
        if isinstance(min_usage, bool) or not isinstance(min_usage, int) or min_usage < 1:
            raise InvalidQuery(f"min_usage must be a positive integer, got {min_usage!r}")
        self.catch_up(project)
        with self._mutex:
            return query.popular_tags(self._connection(), project, limit, min_usage)

    def _filters(
        self, project: str, tags: Sequence[str] | None, min_importance: int | None,
        since: str | None, until: str | None,
    ) -> query.Filters:
        from eventlog.validate import validate_tags

        return query.Filters(
            project=validate_project(project),
            tags=validate_tags(tags),
            min_importance=None if min_importance is None else validate_importance(min_importance),
            since=since,
            until=until,
        )

    # -- maintenance -----------------------------------------------------------------------

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Replay every log into a fresh index file, then swap it in; return events applied."""
        from .rebuild import rebuild_index

        with self._mutex:
            applied = rebuild_index(self, progress)
            self._close_connection()
        self.catch_up()
        return applied

    def verify(self) -> VerifyReport:
        """Catch up, then compare the index with a pure replay of the logs."""
        from .verify import verify_index

        self.catch_up()
        with self._mutex:
            return verify_index(self._connection(), self.log, self._meta(self._connection(), "model_id") or "")

    def start_watching(self) -> None:
        """Catch up in the background when logs change (debounced); reads stay correct without."""
        from .watch import LogWatcher

        if self._watcher is None:
            self._watcher = LogWatcher(self.log, self.catch_up)
            self._watcher.start()


def _as_corruption(error: Exception) -> Exception:
    """``IndexCorrupt`` (rebuild it) unless ``error`` is contention, which is reported as a
    ``ProjectorError`` and leaves the index alone. Another process holding the index (even past
    the long busy timeout and the retries) is no reason to delete it under them; anything else
    that stops the file from opening (corrupt, not a database, stale WAL of a deleted file) is
    cured by a rebuild."""
    text = str(error).lower()
    if db.is_busy(error) or "locked" in text or "busy" in text:
        return ProjectorError(f"the index is busy ({error}); the logs are untouched, try again")
    return IndexCorrupt(str(error))


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _schema_version(conn: Any) -> str | None:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not exists:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise IndexCorrupt("not a mnemolog index (no meta table)")
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return str(row[0]) if row else None


def _statements(script: str) -> list[str]:
    # executescript() would commit the caller's transaction, so statements run one by one.
    return [s.strip() for s in script.split(";") if s.strip()]


def _set_meta(conn: Any, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _chmod_private(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        target = Path(f"{path}{suffix}")
        if target.exists():
            os.chmod(target, 0o600)


def _remove_index_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _check_limit(limit: object, maximum: int = MAX_LIMIT) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidQuery(f"limit must be an integer from 1 to {maximum}, got {limit!r}")
    return limit


def _state_of_row(row: Sequence[Any] | None) -> tuple[Memory | None, str | None]:
    """(the memory if present, its deciding event's timestamp) of a ``query.state_sql`` row."""
    if row is None:
        return None, None
    return (query.row_to_memory(row) if row[query.STATE_PRESENT] else None), str(row[query.STATE_UPDATED_AT])


def _state_of_tail(state: MemoryState, row: Sequence[Any] | None) -> Memory | None:
    """The memory that ``state``, folded from the log's unapplied tail, makes present (its
    first save may be in the index already: ``created_at`` is the earlier of the two)."""
    if state.saved is None:
        return None
    created = min(c for c in (state.created_at, row[query.STATE_CREATED_AT] if row else None) if c is not None)
    e = state.saved
    return Memory(id=e.memory_id, project=e.project, content=e.content, tags=tuple(e.tags), importance=e.importance,
                  kind=e.kind, created_at=created, updated_at=e.ts, meta=dict(e.meta))


def _check_prefix(id_or_prefix: object) -> str:
    if not isinstance(id_or_prefix, str):
        raise InvalidQuery("memory id must be a string")
    prefix = id_or_prefix.strip().lower()
    if len(prefix) < MIN_PREFIX or len(prefix) > 16 or any(c not in "0123456789abcdef" for c in prefix):
        raise InvalidQuery(
            f"memory id {id_or_prefix!r} is not an id: give the 16 hex digits or a unique prefix of at least {MIN_PREFIX}"
        )
    return prefix


def _within_budget(memories: list[Memory], budget_chars: int) -> list[Memory]:
    kept: list[Memory] = []
    used = 0
    for memory in memories:
        if kept and used + len(memory.content) > budget_chars:
            break
        kept.append(memory)
        used += len(memory.content)
    return kept
