"""What the tools do, shared by the MCP server and the command line. No ``mcp`` import here.

Writes go to the event log (files, or Redis: see ``open_event_log``) and are acknowledged
once the log holds them durably. Every read catches the index up from the log first, so the
next query from any process sees a write however far its indexing has got. Indexing a write
(embedding it, projecting it into SQLite) happens right after the append in a short-lived
process (the command line: a user expects the command to have done its work when it exits),
or on a background thread in the server (``index_in_background``: off the response path). The
index (and with it SQLite, numpy and the embedding model) is opened on first use only:
listing the tools costs nothing.

Not thread-safe: one ``MemoryService`` is used by one thread at a time (the MCP server runs
every call on a single worker thread). The background indexer only calls ``Index.catch_up``,
which serialises itself with the index's own mutex.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

from eventlog import EventLog, EventStore, MemorySaved, StoreError
from eventlog.clock import next_stamp, parse_ts
from eventlog.validate import validate_importance, validate_project, validate_tags

from .indexer import BackgroundIndexer
from .settings import Settings

if TYPE_CHECKING:  # imported lazily at run time: they pull in SQLite, numpy and the model
    from eventlog.transfer import ImportReport
    from projector import Index, Memory, ProjectInfo, TagCount, VerifyReport

logger = logging.getLogger(__name__)

MIN_PREFIX = 6
INDEXER_CLOSE_TIMEOUT = 10.0  # long enough for a first model load and a few catch-ups
MAX_QUERY_CHARS = 2000
MAX_SEARCH_LIMIT = 100
MAX_LOAD_LIMIT = 100
MAX_TAG_LIMIT = 1000
_HEX = re.compile(r"[0-9a-f]+")


class ServiceError(Exception):
    """Base class of the errors raised by the service layer itself."""


class InvalidArgument(ServiceError, ValueError):
    """A tool or command argument is unusable; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Saved:
    """The outcome of a save: the memory id, its project, and whether it is new."""

    id: str
    project: str
    created: bool


@dataclass(frozen=True, slots=True)
class Updated:
    """The outcome of an update: the new id (same as before unless the content changed)."""

    id: str
    project: str
    previous_id: str
    changed: bool


@dataclass(frozen=True, slots=True)
class Forgotten:
    """The outcome of a forget."""

    id: str
    project: str


@dataclass(frozen=True, slots=True)
class Loaded:
    """A project's start-of-session context and how many memories the project holds."""

    project: str
    memories: list[Memory]
    total: int


@dataclass(frozen=True, slots=True)
class Found:
    """Search results with their scores, the mode used, and a warning if degraded."""

    project: str
    hits: list[tuple[Memory, float]]
    mode: str
    warning: str | None


def memory_record(memory: Memory, score: float | None = None) -> dict[str, Any]:
    """A memory in the wire shape shared by the MCP tools and ``--json`` output."""
    record: dict[str, Any] = {
        "id": memory.id,
        "project_id": memory.project,
        "content": memory.content,
        "tags": list(memory.tags),
        "importance": memory.importance,
        "kind": memory.kind,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }
    if score is not None:
        record["score"] = round(score, 6)
    return record


class MemoryService:
    """The memory operations over one data root (an ``EventLog`` and its ``Index``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: str | None = None,
        watch: bool = False,
        index: Index | None = None,
        index_in_background: bool = False,
    ) -> None:
        self.settings = settings
        self.log = open_event_log(settings, client)
        self._watch = watch
        self._index = index
        self._index_lock = threading.Lock()
        self._indexer = BackgroundIndexer(self._caught_up) if index_in_background else None

    # -- plumbing -------------------------------------------------------------------------

    @property
    def index(self) -> Index:
        """The read index, opened (and watched, in a server) on first use."""
        with self._index_lock:
            if self._index is None:
                from projector import Index

                self._index = Index(self.log, self._embedder())
                if self._watch:
                    self._index.start_watching()
            return self._index

    def _embedder(self) -> Any:
        s = self.settings
        if s.embedder == "none":
            return None
        from projector.embed import make_embedder  # builds a handle; the model loads on first use

        return make_embedder(s.embedder, url=s.embed_url, model=s.embed_model, api_key=s.embed_api_key,
                             dim=s.embed_dim)

    @property
    def index_opened(self) -> bool:
        """Whether the index has been opened (startup must not open it)."""
        return self._index is not None

    def close(self) -> None:
        """Finish background indexing, stop the watcher, close the index (if it was opened)
        and the log's connections."""
        if self._indexer is not None and not self._indexer.close(INDEXER_CLOSE_TIMEOUT):
            # Closing the index under a worker that still uses it could fail in odd ways; the
            # process is ending, and the log holds every write.
            logger.warning("background indexing did not finish within %g s; leaving it to the next reader",
                           INDEXER_CLOSE_TIMEOUT)
            self.log.close()
            return
        with self._index_lock:
            if self._index is not None:
                self._index.close()
                self._index = None
        self.log.close()

    def wait_indexed(self, timeout: float = INDEXER_CLOSE_TIMEOUT) -> bool:
        """Wait until the background indexer has indexed every write so far (for tests and
        benchmarks: reads never need this, they catch up themselves); False on timeout."""
        return self._indexer is None or self._indexer.wait_idle(timeout)

    def resolve_project(self, project: str | None) -> str:
        """The argument, else the configured project (``MNEMOLOG_PROJECT``, else ``general``)."""
        if project is None or (isinstance(project, str) and project.strip() == ""):
            return self.settings.project
        return validate_project(project.strip() if isinstance(project, str) else project)

    def _written(self, project: str) -> None:
        """A write to ``project`` is in the log: index it now, or hand it to the background."""
        if self._indexer is not None:
            self._indexer.submit(project)
        else:
            self._caught_up(project)

    def _caught_up(self, project: str) -> None:
        """Bring the index up to date with ``project`` after a write; the write is already safe."""
        try:
            self.index.catch_up(project)
        except StoreError as e:  # the log's server went away just now: no traceback for that
            logger.warning("index catch-up of project %r failed after a write: %s", project, e)
        except Exception:  # the event is durable in the log; the next read catches up again
            logger.warning("index catch-up of project %r failed after a write", project, exc_info=True)

    def _find(self, project: str, id_or_prefix: object) -> Memory:
        # get() catches up first: a memory another process has just saved is found.
        return self.index.get(project, _check_id(id_or_prefix))

    # -- writing --------------------------------------------------------------------------

    def save(
        self,
        content: str,
        *,
        importance: int = 5,
        tags: Iterable[str] | str | None = None,
        project: str | None = None,
        kind: str | None = None,
    ) -> Saved:
        """Save a memory; the same content again is the same memory (``created`` False). Saving
        it again adds the new tags and may raise its importance, but never drops a tag or lowers
        the importance it has: an assistant that saves a fact twice, the second time with the
        default arguments, must not erase what the first save said (``update`` changes those)."""
        project = self.resolve_project(project)
        event = self.log.build_save(project, content, _split_tags(tags), importance, kind)
        # The index and the log's unapplied tail, not a catch-up: a save does not wait to
        # embed and index what other servers have just saved.
        existing, last_change = self.index.latest(project, event.memory_id)
        if existing is not None:  # validate_tags keeps the first spelling of tags equal but for case
            event = dataclasses.replace(
                event, tags=validate_tags([*existing.tags, *event.tags]),
                importance=max(existing.importance, event.importance),
                kind=existing.kind if kind is None else event.kind, meta=dict(existing.meta),
            )
        if existing is not None and _same_attributes(existing, event):
            return Saved(event.memory_id, project, created=False)  # a retried save: nothing to write
        if last_change is not None:  # present, or forgotten by a writer whose clock runs ahead
            event = _after(event, last_change)
        self.log.append(project, [event])
        self._written(project)
        return Saved(event.memory_id, project, created=existing is None)

    def update(
        self,
        context_id: str,
        *,
        content: str | None = None,
        importance: int | None = None,
        tags: Iterable[str] | str | None = None,
        project: str | None = None,
    ) -> Updated:
        """Change a memory's content, importance or tags (new save, then forget of the old id)."""
        project = self.resolve_project(project)
        if content is None and importance is None and tags is None:
            raise InvalidArgument("nothing to update: give content, importance_level or tags")
        if importance is not None:
            validate_importance(importance)
        old = self._find(project, context_id)
        new = self.log.build_save(
            project,
            old.content if content is None else content,
            old.tags if tags is None else _split_tags(tags),
            old.importance if importance is None else importance,
            old.kind,
            old.meta,
        )
        if new.memory_id == old.id and _same_attributes(old, new):
            return Updated(old.id, project, old.id, changed=False)
        new = _after(new, old.updated_at)
        if new.memory_id != old.id:
            # New content that another memory already holds would be a save of that memory with
            # this one's tags and importance, which would silently replace its own.
            other, last_change = self.index.latest(project, new.memory_id)
            if other is not None:
                raise InvalidArgument(
                    f"memory {other.id} already has that content: update or forget {other.id}, "
                    f"or forget {old.id} if it is no longer needed"
                )
            if last_change is not None:  # that content was forgotten, by a writer whose clock may run ahead
                new = _after(new, last_change)
        self.log.replace(project, old.id, new)
        self._written(project)
        return Updated(new.memory_id, project, old.id, changed=True)

    def forget(self, context_id: str, *, project: str | None = None) -> Forgotten:
        """Forget a memory of ``project`` (an id of another project is not found)."""
        project = self.resolve_project(project)
        memory = self._find(project, context_id)
        self.log.forget(project, memory.id, not_before_ts=memory.updated_at)
        self._written(project)
        return Forgotten(memory.id, project)

    # -- reading --------------------------------------------------------------------------

    def load(
        self,
        *,
        project: str | None = None,
        min_importance: int | None = None,
        limit: int = 30,
        tags: Iterable[str] | str | None = None,
        budget_chars: int = 24000,
    ) -> Loaded:
        """The start-of-session context: most important, then most recent, within a budget."""
        project = self.resolve_project(project)
        _check_range("limit", limit, 1, MAX_LOAD_LIMIT)
        _check_range("budget_chars", budget_chars, 200, 10_000_000)
        if min_importance is not None:
            _check_range("importance_level", min_importance, 1, 10)
        memories, total = self.index.load_context(
            project, limit=limit, min_importance=min_importance, tags=_tag_filter(tags) or None,
            budget_chars=budget_chars,
        )
        return Loaded(project, list(memories), total)

    def search(
        self,
        query: str,
        *,
        project: str | None = None,
        limit: int = 10,
        tags: Iterable[str] | str | None = None,
        since: str | None = None,
        until: str | None = None,
        min_importance: int | None = None,
        now: datetime | None = None,
    ) -> Found:
        """Hybrid (or keyword) search inside one project, with tag, time and importance filters."""
        project = self.resolve_project(project)
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgument("query is empty: give the words or the idea to look for")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgument(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        _check_range("limit", limit, 1, MAX_SEARCH_LIMIT)
        if min_importance is not None:
            _check_range("min_importance", min_importance, 1, 10)
        start, stop = time_range(since, until, now)
        result = self.index.search(
            query.strip(), project=project, limit=limit, tags=_tag_filter(tags) or None,
            since=start, until=stop, min_importance=min_importance,
        )
        return Found(project, [(h.memory, h.score) for h in result.hits], result.mode, result.warning)

    def projects(self) -> list[ProjectInfo]:
        """Every project with its memory count and last activity."""
        return self.index.projects()

    def tags(self, *, project: str | None = None, all_projects: bool = False, limit: int = 20,
             min_usage: int = 1) -> list[TagCount]:
        """The most used tags of a project (or of every project), most used first."""
        _check_range("limit", limit, 1, MAX_TAG_LIMIT)
        _check_range("min_usage", min_usage, 1, 1_000_000_000)
        if all_projects:
            return self.index.tags(None, limit=limit, min_usage=min_usage)
        project = self.resolve_project(project)
        return self.index.tags(project, limit=limit, min_usage=min_usage)

    def popular_tags(self, project: str | None, limit: int, min_usage: int) -> tuple[str, list[TagCount]]:
        """The resolved project and its most used tags."""
        project = self.resolve_project(project)
        return project, self.tags(project=project, limit=limit, min_usage=min_usage)

    def context_text(self, *, project: str | None = None, limit: int = 30,
                     min_importance: int | None = None, budget_chars: int = 24000) -> str:
        """The start-of-session context as Markdown, for a client's session-start hook."""
        loaded = self.load(project=project, min_importance=min_importance, limit=limit,
                           budget_chars=budget_chars)
        return render_context(loaded)

    # -- maintenance ----------------------------------------------------------------------

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Replay every log into a fresh index; return the number of events applied."""
        return self.index.rebuild(progress)

    def verify(self) -> VerifyReport:
        """Compare the index with a pure replay of the logs."""
        return self.index.verify()

    def export(self, out: BinaryIO, project: str | None = None) -> int:
        """Write every event (of one project, if given) as JSON lines; return how many."""
        from eventlog.transfer import write_export

        projects = None if project is None else [validate_project(project)]
        return write_export(self.log, out, projects)

    def import_lines(self, lines: Iterable[bytes]) -> ImportReport:
        """Append the events of JSON lines that the log does not hold yet (by event id), then
        index the projects that gained any, as a save does: servers watching the store are not
        told of appends (their writers index them), so nobody else would until the next read."""
        from eventlog.transfer import import_lines

        report = import_lines(self.log, lines)
        for project in sorted(report.projects):
            self._written(project)
        return report


def open_event_log(settings: Settings, client: str | None = None) -> EventStore:
    """The configured event log: Redis streams if ``redis_url`` is set, else files under home."""
    if settings.redis_url:
        from eventlog.redis_log import RedisEventLog

        return RedisEventLog(
            settings.redis_url,
            root=settings.home,
            prefix=settings.redis_prefix,
            max_content_bytes=settings.max_content_bytes,
            client=client,
            timeout=settings.redis_timeout,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout=settings.redis_wait_timeout,
        )
    return EventLog(
        settings.home,
        max_content_bytes=settings.max_content_bytes,
        durability=settings.durability,
        lock_timeout=settings.lock_timeout,
        client=client,
    )


# -- helpers (pure) -------------------------------------------------------------------------


def time_range(since: str | None, until: str | None, now: datetime | None = None) -> tuple[str | None, str | None]:
    """``since``/``until`` phrases as ISO UTC bounds: ``since`` inclusive, ``until`` exclusive."""
    from projector.timephrase import format_utc, parse_time_bound

    now = now or datetime.now().astimezone()
    start = parse_time_bound(_bound_text("since", since), now=now) if since is not None else None
    stop = None
    if until is not None:
        last = parse_time_bound(_bound_text("until", until), now=now, end=True)
        # The last millisecond the phrase covers, plus one: the index compares until exclusively.
        stop = format_utc(datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(milliseconds=1))
    if start is not None and stop is not None and start >= stop:
        raise InvalidArgument(
            f"since {since!r} ({start}) is not before until {until!r} ({stop}, exclusive): "
            "nothing can match; swap or widen them"
        )
    return start, stop


def _bound_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string such as '2026-03-01' or 'last week'")
    return value


def render_context(loaded: Loaded) -> str:
    """Markdown: a heading, then one bullet per memory with importance, date, tags and id."""
    shown = len(loaded.memories)
    if not shown:
        return f"# Memory: project {loaded.project}\n\nNo memories saved in this project yet.\n"
    lines = [
        f"# Memory: project {loaded.project}",
        "",
        f"{shown} of {loaded.total} memories, most important and most recent first:",
        "",
    ]
    for m in loaded.memories:
        tags = " ".join(f"#{t}" for t in m.tags)
        head = f"- [{m.importance}] {m.updated_at[:10]}" + (f" {tags}" if tags else "") + f" (id {m.id[:8]})"
        body = m.content.strip().replace("\n", "\n  ")
        lines.append(f"{head}\n  {body}")
    return "\n".join(lines) + "\n"


def _check_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument("context_id must be a string: a memory id or a unique prefix of it")
    text = value.strip().lower()
    if not _HEX.fullmatch(text) or not MIN_PREFIX <= len(text) <= 16:
        raise InvalidArgument(
            f"context_id {value!r} is not a memory id: give the 16 hex characters of an id, "
            f"or a unique prefix of at least {MIN_PREFIX}"
        )
    return text


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be a whole number from {low} to {high}, got {value!r}")


def _split_tags(tags: Iterable[str] | str | None) -> Iterable[str] | None:
    """Tags as a list; a single string is split on commas ("arch, db" is two tags)."""
    if isinstance(tags, str):
        return [t for t in (part.strip() for part in tags.split(",")) if t]
    return tags


def _tag_filter(tags: Iterable[str] | str | None) -> tuple[str, ...]:
    return validate_tags(_split_tags(tags))


def _same_attributes(memory: Memory, event: MemorySaved) -> bool:
    return (
        memory.content == event.content
        and tuple(memory.tags) == tuple(event.tags)
        and memory.importance == event.importance
        and memory.kind == event.kind
        and dict(memory.meta) == dict(event.meta)
    )


def _after(event: MemorySaved, updated_at: str) -> MemorySaved:
    """``event`` re-stamped, if needed, to sort after a memory state written at ``updated_at``
    (whose writer's clock may run ahead of ours): otherwise the change would not take effect."""
    if event.ts > updated_at:
        return event
    event_id, ts = next_stamp(parse_ts(updated_at) + 1)
    return dataclasses.replace(event, event_id=event_id, ts=ts)


__all__: Sequence[str] = (
    "Forgotten", "Found", "InvalidArgument", "Loaded", "MemoryService", "Saved", "ServiceError",
    "Updated", "memory_record", "open_event_log", "render_context", "time_range",
)
