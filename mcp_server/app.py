"""The MCP server: tools, their typed results, and the transports. The only module importing ``mcp``.

Tool names and parameters follow extended-memory-mcp, so users can switch. Every tool returns
structured content (a pydantic model, published as the tool's output schema) plus a text the
model can read directly. Bad input raises ``ToolError``: the client sees ``isError`` with a
message saying what to fix, and nothing is written.

Every call runs on one worker thread per server process: SQLite connections belong to the
thread that opened them, and the service is not meant to be entered twice at once.
"""

from __future__ import annotations

import asyncio
import inspect
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations, jsonrpc_message_adapter
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from eventlog import EventLogError

from . import __version__
from .pipes import std_pipes, std_pipes_usable
from .service import Found, Loaded, MemoryService, ServiceError, memory_record, render_context
from .settings import is_loopback

logger = logging.getLogger(__name__)

T = TypeVar("T")

INSTRUCTIONS = """\
mnemolog is your long-term memory. It is shared by every assistant session that uses this
store and kept per project (project_id; when omitted, the server's configured project).

At the start of every session, call load_contexts (with the project_id of the work at hand,
if you know it) and take what it returns into account before you answer.

Save with save_context what a later session will need and cannot read from the files:
- decisions and the reasons for them (and the alternatives rejected);
- the user's preferences, conventions and corrections;
- the state of the work: what is done, what is next, open problems;
- facts about people, systems and the project that took effort to learn.
One self-contained fact per memory, with a few tags; importance_level 1-10 (5 ordinary,
8 or more: must not be forgotten). Never save secrets or passwords. Saving the same content
again is harmless.

Before answering about earlier work, call search_contexts; since/until accept ISO dates and
phrases such as "yesterday", "last week", "3 days ago", "in March". When a memory is wrong or
outdated, fix it with update_context or remove it with forget_context (an id prefix of 6 or
more characters is enough).
"""

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)


# -- result models (structured content) ---------------------------------------------------


class MemoryOut(BaseModel):
    """A memory."""

    id: str
    project_id: str
    content: str
    tags: list[str]
    importance: int
    kind: str | None
    created_at: str
    updated_at: str


class ScoredMemoryOut(MemoryOut):
    """A memory found by a search, with its relevance score (higher is better)."""

    score: float


class SaveOut(BaseModel):
    """The saved memory's id; ``created`` is false when the same content was already saved."""

    id: str
    project_id: str
    created: bool


class LoadOut(BaseModel):
    """A project's start-of-session context and how many memories the project holds in all."""

    project_id: str
    contexts: list[MemoryOut]
    total: int


class SearchOut(BaseModel):
    """Matching memories, best first; ``mode`` is ``keyword`` when meaning search is unavailable."""

    project_id: str
    results: list[ScoredMemoryOut]
    mode: Literal["hybrid", "keyword"]
    warning: str | None = None


class UpdateOut(BaseModel):
    """The memory after the update; its id changes when its content does."""

    id: str
    project_id: str
    previous_id: str
    changed: bool


class ForgetOut(BaseModel):
    """The forgotten memory."""

    id: str
    project_id: str
    forgotten: bool


class ProjectOut(BaseModel):
    """A project, how many memories it holds, and when it last changed."""

    project_id: str
    memories: int
    last_activity: str | None


class ProjectsOut(BaseModel):
    """Every project of the store."""

    projects: list[ProjectOut]


class TagOut(BaseModel):
    """A tag and how many memories carry it."""

    tag: str
    count: int


class TagsOut(BaseModel):
    """The most used tags of a project."""

    project_id: str
    tags: list[TagOut]


# -- parameters ---------------------------------------------------------------------------

ProjectArg = Annotated[
    str | None,
    Field(description="Project id (letters, digits, '.', '_', '-'). Omit for the configured default project."),
]
TagsArg = Annotated[
    list[str] | str | None,
    Field(description="Tags, as a list (or one comma-separated string)."),
]


def _not_a_bool(value: object) -> object:
    """Refuse true/false where a number is expected: pydantic would read them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true or false")
    return value


# Goes after a whole-number argument's Field (after it, so that the Field's bounds stay on the
# number and in its JSON schema): JSON 5 and 5.0 are taken, true and false are not.
NOT_BOOL = BeforeValidator(_not_a_bool)

ImportanceArg = Annotated[int, Field(ge=1, le=10, description="1 (trivia) to 10 (critical); 5 is ordinary."), NOT_BOOL]
IdArg = Annotated[str, Field(description="The memory id, or a unique prefix of at least 6 characters.")]


# -- the server ---------------------------------------------------------------------------


class _Worker:
    """Runs blocking service calls on one dedicated thread, translating expected errors."""

    def __init__(self, service: MemoryService) -> None:
        self.service = service
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnemolog-worker")

    async def run(self, ctx: Context[Any, Any] | None, call: Callable[[MemoryService], T]) -> T:
        client = _client_name(ctx)

        def job() -> T:
            if client:
                self.service.log.client = client
            return call(self.service)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except Exception as e:
            if _is_user_error(e):
                raise ToolError(str(e)) from e
            if isinstance(e, OSError):  # the data directory: missing, not writable, disk full
                raise ToolError(f"the store could not be read or written: {e}") from e
            raise

    def shutdown(self) -> None:
        """Wait for the call in progress, then stop the thread."""
        self._executor.shutdown(wait=True)


def _is_user_error(e: Exception) -> bool:
    if isinstance(e, (EventLogError, ServiceError)):
        return True
    try:
        from projector.errors import ProjectorError
    except Exception:  # the projector itself cannot import: not the caller's mistake
        return False
    return isinstance(e, ProjectorError)


def _client_name(ctx: Context[Any, Any] | None) -> str | None:
    try:
        params = ctx.session.client_params if ctx is not None else None
        name = params.client_info.name if params is not None else None
    except Exception:  # no request context (e.g. a direct call in a test)
        return None
    return name[:64] if isinstance(name, str) and name.strip() else None


def _result(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
    )


def build_server(service: MemoryService) -> MCPServer[Any]:
    """The MCP server over ``service``. Builds nothing heavy: the index opens on first call."""
    server: MCPServer[Any] = MCPServer(
        "mnemolog",
        title="mnemolog memory",
        description="Event-sourced long-term memory for AI assistants, shared by many clients.",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=service.settings.log_level,  # type: ignore[arg-type]
    )
    worker = _Worker(service)
    server._mnemolog_worker = worker  # type: ignore[attr-defined]  # for shutdown

    def tool(annotations: ToolAnnotations) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a tool; its docstring, dedented, is the description the model reads."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations)
            return fn

        return register

    @tool(ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                             openWorldHint=False))
    async def save_context(
        content: Annotated[str, Field(description="The memory: one self-contained fact, decision or note.")],
        importance_level: ImportanceArg = 5,
        tags: TagsArg = None,
        project_id: ProjectArg = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SaveOut]:
        """Save a memory (a decision and its reason, a preference, the state of the work).

        The same content saved again is the same memory: the call is idempotent and returns
        created=false. Saving again adds new tags and can raise the importance, but never
        removes a tag or lowers it: use update_context for that.
        """
        saved = await worker.run(ctx, lambda s: s.save(content, importance=importance_level, tags=tags,
                                                        project=project_id))
        verb = "Saved new memory" if saved.created else "Memory already saved; kept as"
        return _result(SaveOut(id=saved.id, project_id=saved.project, created=saved.created),
                       f"{verb} {saved.id} in project {saved.project}.")

    @tool(READ_ONLY)
    async def load_contexts(
        project_id: ProjectArg = None,
        importance_level: Annotated[
            int | None,
            Field(ge=1, le=10, description="Only memories at least this important (default: all)."),
            NOT_BOOL,
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many memories."), NOT_BOOL] = 30,
        tags_filter: TagsArg = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, LoadOut]:
        """Load the start-of-session context of a project: its most important and most recent
        memories, within a size budget. Call this at the start of every session."""
        loaded = await worker.run(ctx, lambda s: s.load(project=project_id, min_importance=importance_level,
                                                        limit=limit, tags=tags_filter))
        return _result(_load_out(loaded), render_context(loaded))

    @tool(READ_ONLY)
    async def search_contexts(
        query: Annotated[str, Field(description="What to look for, in words or as an idea.")],
        project_id: ProjectArg = None,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many results."), NOT_BOOL] = 10,
        tags_filter: TagsArg = None,
        since: Annotated[
            str | None, Field(description="Only memories created from then: '2026-03-01', 'yesterday', "
                                          "'last week', '3 days ago', 'in March', 'Monday'.")
        ] = None,
        until: Annotated[str | None, Field(description="Only memories created up to then (same forms).")] = None,
        min_importance: Annotated[int | None, Field(ge=1, le=10, description="Only memories at least this "
                                                                            "important."), NOT_BOOL] = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SearchOut]:
        """Search a project's memories by meaning and by words (hybrid), best first, with
        optional tag, time and importance filters."""
        found = await worker.run(ctx, lambda s: s.search(query, project=project_id, limit=limit, tags=tags_filter,
                                                         since=since, until=until, min_importance=min_importance))
        return _result(_search_out(found), _search_text(found))

    @tool(ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False,
                                             openWorldHint=False))
    async def update_context(
        context_id: IdArg,
        content: Annotated[str | None, Field(description="New content (omit to keep).")] = None,
        importance_level: Annotated[
            int | None, Field(ge=1, le=10, description="New importance (omit to keep)."), NOT_BOOL
        ] = None,
        tags: Annotated[list[str] | str | None, Field(description="New tags, replacing the old (omit to keep).")]
        = None,
        project_id: ProjectArg = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, UpdateOut]:
        """Change a memory's content, importance or tags. A new content gives the memory a new id
        (returned); the old version is forgotten."""
        updated = await worker.run(ctx, lambda s: s.update(context_id, content=content, importance=importance_level,
                                                           tags=tags, project=project_id))
        out = UpdateOut(id=updated.id, project_id=updated.project, previous_id=updated.previous_id,
                        changed=updated.changed)
        if not updated.changed:
            text = f"Memory {updated.id} already had these values; nothing changed."
        elif updated.id != updated.previous_id:
            text = f"Updated memory {updated.previous_id}; its new id is {updated.id}."
        else:
            text = f"Updated memory {updated.id}."
        return _result(out, text)

    @tool(ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True,
                                             openWorldHint=False))
    async def forget_context(
        context_id: IdArg,
        project_id: ProjectArg = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, ForgetOut]:
        """Forget a memory of a project (it stops appearing anywhere; the log keeps the history)."""
        gone = await worker.run(ctx, lambda s: s.forget(context_id, project=project_id))
        return _result(ForgetOut(id=gone.id, project_id=gone.project, forgotten=True),
                       f"Forgot memory {gone.id} of project {gone.project}.")

    @tool(READ_ONLY)
    async def list_all_projects(ctx: Context | None = None) -> Annotated[CallToolResult, ProjectsOut]:
        """List every project with its number of memories and its last activity."""
        projects = await worker.run(ctx, lambda s: s.projects())
        out = ProjectsOut(projects=[ProjectOut(project_id=p.name, memories=p.memories,
                                               last_activity=p.last_activity) for p in projects])
        lines = [f"- {p.name}: {p.memories} memories, last activity {p.last_activity or 'never'}"
                 for p in projects]
        return _result(out, "\n".join(lines) if lines else "No projects yet.")

    @tool(READ_ONLY)
    async def get_popular_tags(
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many tags."), NOT_BOOL] = 20,
        min_usage: Annotated[int, Field(ge=1, description="Only tags used at least this often."), NOT_BOOL] = 1,
        project_id: ProjectArg = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, TagsOut]:
        """The most used tags of a project, most used first."""
        project, tags = await worker.run(ctx, lambda s: s.popular_tags(project_id, limit, min_usage))
        out = TagsOut(project_id=project, tags=[TagOut(tag=t.tag, count=t.count) for t in tags])
        text = ", ".join(f"{t.tag} ({t.count})" for t in tags) or f"No tags in project {project}."
        return _result(out, text)

    return server


def _load_out(loaded: Loaded) -> LoadOut:
    return LoadOut(project_id=loaded.project, total=loaded.total,
                   contexts=[MemoryOut(**memory_record(m)) for m in loaded.memories])


def _search_out(found: Found) -> SearchOut:
    return SearchOut(
        project_id=found.project,
        results=[ScoredMemoryOut(**memory_record(m, score)) for m, score in found.hits],
        mode="keyword" if found.mode == "keyword" else "hybrid",
        warning=found.warning,
    )


def _search_text(found: Found) -> str:
    head = f"{len(found.hits)} result(s) in project {found.project} ({found.mode} search)."
    if found.warning:
        head += f" Note: {found.warning}"
    lines = [head]
    for m, score in found.hits:
        tags = " ".join(f"#{t}" for t in m.tags)
        lines.append(f"- {m.id} [{m.importance}] {m.created_at[:10]} {tags} (score {score:.3f})".replace("  ", " "))
        lines.append("  " + m.content.strip().replace("\n", "\n  "))
    return "\n".join(lines)


# -- transports ---------------------------------------------------------------------------


def transport_security(host: str) -> TransportSecuritySettings:
    """Host/Origin checks against DNS rebinding: the loopback names, or the bound address."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    try:
        wildcard = ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        wildcard = False
    if wildcard:
        # Any name may reach an all-interfaces bind; the bearer token is what protects it.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if not is_loopback(host):
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        hosts.append(f"{shown}:*")
        origins += [f"http://{shown}:*", f"https://{shown}:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


class BearerTokenMiddleware:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"www-authenticate", b'Bearer realm="mnemolog"'),
                ]})
                await send({"type": "http.response.body", "body": b"missing or wrong bearer token\n"})
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer[Any], host: str, token: str | None) -> Any:
    """The streamable HTTP ASGI app (endpoint ``/mcp``), wrapped in the token check if set."""
    app: Any = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=transport_security(host), host=host
    )
    return BearerTokenMiddleware(app, token) if token else app


def run_stdio(server: MCPServer[Any]) -> None:
    """Serve one client over stdin/stdout until it disconnects."""
    try:
        anyio.run(_serve_stdio, server, backend="asyncio")
    finally:
        shutdown_server(server)


def unreadable_line_answer(line: str) -> str | None:
    """The JSON-RPC error answering a line that the SDK's session cannot read (the session
    drops such a line without an answer, and its client would wait for ever), or None for a
    line it can read, or a blank one. The line is checked with the session's own parser; the
    answer carries the request's id when the line is JSON that names one (a request with a
    lone surrogate escape in a string is JSON to Python but not to that parser)."""
    if not line.strip():
        return None
    try:
        jsonrpc_message_adapter.validate_json(line, by_name=False)
        return None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"{where}: {first['msg']}" if where else first["msg"]
    except Exception as e:  # the session would drop the line just the same
        reason = str(e) or type(e).__name__
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    request_id = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
        request_id = None
    code, what = (-32700, "Parse error") if parsed is None else (-32600, "Invalid request")
    error = {"code": code, "message": f"{what}: {reason}"}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}) + "\n"


async def _serve_stdio(server: MCPServer[Any]) -> None:
    """The SDK's stdio session, over pipes the event loop watches itself when stdin and stdout
    are pipes (mcp_server/pipes.py: no thread hop per message); otherwise the SDK's own."""
    lowlevel = getattr(server, "_lowlevel_server", None)  # private in mcp 2.x: no public handle
    if lowlevel is None or not std_pipes_usable():
        await server.run_stdio_async()
        return
    async with std_pipes(unreadable_line_answer) as (lines_in, lines_out):
        # stdio_server is typed for anyio files; it only iterates lines and awaits write/flush.
        async with stdio_server(lines_in, lines_out) as (read, write):  # type: ignore[arg-type]
            await lowlevel.run(read, write, lowlevel.create_initialization_options())


def run_http(server: MCPServer[Any], host: str, port: int, token: str | None, log_level: str) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until interrupted."""
    import uvicorn

    config = uvicorn.Config(http_app(server, host, token), host=host, port=port,
                            log_level=log_level.lower(), lifespan="on", access_log=False)
    try:
        uvicorn.Server(config).run()
    finally:
        shutdown_server(server)


def shutdown_server(server: MCPServer[Any]) -> None:
    """Finish the call in progress, stop the worker thread and close the index."""
    worker = getattr(server, "_mnemolog_worker", None)
    if isinstance(worker, _Worker):
        worker.shutdown()
        worker.service.close()

