"""The ``mnemolog`` command line: the MCP server, and every memory operation without one.

Errors become one line on stderr and exit code 1; usage and configuration errors exit 2.
Only command output goes to stdout (and nothing at all in ``serve`` stdio mode, where stdout
is the MCP stream); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__
from .service import MemoryService, memory_record, render_context
from .settings import Settings, SettingsError, is_loopback, load_settings

logger = logging.getLogger("mnemolog")

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command line that cannot run as given (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mnemolog`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("home", None), ("project", None), ("json", False)):
        # Not parser defaults: the option actions are shared with every subcommand's parser.
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        settings = load_settings(home=args.home, project=args.project)
    except SettingsError as e:
        return _fail(str(e), EXIT_USAGE)
    configure_logging(settings.log_level)
    try:
        return int(args.handler(args, settings) or 0)
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if not _is_expected(e):
            logger.debug("unexpected error", exc_info=True)
            return _fail(f"{type(e).__name__}: {e}", EXIT_ERROR)
        return _fail(str(e), EXIT_ERROR)


def _fail(message: str, code: int) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"mnemolog: error: {first_line}", file=sys.stderr)
    return code


def _is_expected(e: Exception) -> bool:
    from eventlog import EventLogError

    from .service import ServiceError

    if isinstance(e, (EventLogError, ServiceError, OSError)):
        return True
    projector_errors = sys.modules.get("projector.errors")
    return projector_errors is not None and isinstance(e, projector_errors.ProjectorError)


def configure_logging(level: str) -> None:
    """Log records go to stderr, never stdout (stdout is the MCP stream in ``serve``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mnemolog %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("watchdog.observers.inotify").addFilter(_drop_watchdog_stop_race)


def _drop_watchdog_stop_race(record: logging.LogRecord) -> bool:
    """watchdog logs an ERROR when its inotify thread is stopped while a log file is being
    written (a benign race at shutdown: events after stop are dropped, which is what we want)."""
    return "called when the thread is inactive" not in record.getMessage()


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; global options are accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                        help="data root (default: MNEMOLOG_HOME, else the platform's user data dir)")
    common.add_argument("--project", metavar="ID", default=argparse.SUPPRESS,
                        help="project id (default: MNEMOLOG_PROJECT, else 'general')")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="mnemolog", parents=[common],
        description="Event-sourced memory for AI assistants over MCP. Works with no server running.",
    )
    parser.add_argument("--version", action="version", version=f"mnemolog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace, Settings], int | None], help: str,
                ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", cmd_serve, "run the MCP server (stdio by default)")
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP at http://HOST:PORT/mcp")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on with --http (default 127.0.0.1; any non-loopback "
                            "address needs MNEMOLOG_HTTP_TOKEN)")
    serve.add_argument("--port", type=int, default=8765, help="port for --http (default 8765)")

    save = command("save", cmd_save, "save a memory")
    save.add_argument("content", help="the memory ('-' reads it from stdin)")
    _add_tags(save)
    save.add_argument("--importance", type=int, default=5, metavar="N", help="1 to 10 (default 5)")
    save.add_argument("--kind", default=None, help="a kind such as 'decision' or 'preference'")

    search = command("search", cmd_search, "search memories by meaning and words")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=10, metavar="N")
    _add_tags(search)
    search.add_argument("--since", metavar="WHEN", help="'2026-03-01', 'yesterday', 'last week', '3 days ago'...")
    search.add_argument("--until", metavar="WHEN", help="same forms as --since")
    search.add_argument("--min-importance", type=int, metavar="N")

    forget = command("forget", cmd_forget, "forget a memory by id (or a unique prefix of 6+ characters)")
    forget.add_argument("id")

    context = command("context", cmd_context, "print the start-of-session context (for client hooks)")
    context.add_argument("--limit", type=int, default=30, metavar="N")
    context.add_argument("--min-importance", type=int, metavar="N")
    context.add_argument("--budget-chars", type=int, default=24000, metavar="N")

    command("projects", cmd_projects, "list projects with memory counts and last activity")

    tags = command("tags", cmd_tags, "list the most used tags of a project")
    tags.add_argument("--limit", type=int, default=20, metavar="N")
    tags.add_argument("--min-usage", type=int, default=1, metavar="N")
    tags.add_argument("--all", action="store_true", help="count tags over every project")

    command("rebuild", cmd_rebuild, "replay every log into a fresh index")
    command("verify", cmd_verify, "compare the index with a replay of the logs (exit 1 on drift)")

    export = command("export", cmd_export, "write every event as JSON lines (every project unless --project)")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (mode 0600) instead of stdout")
    load = command("import", cmd_import, "add the events of a JSON lines file that the store does not hold yet")
    load.add_argument("file", metavar="FILE", help="a file written by 'mnemolog export' ('-' reads stdin)")
    return parser


def _add_tags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-t", "--tag", dest="tags", action="append", default=None, metavar="TAG",
                     help="a tag (repeat for more, or give 'a,b')")


def _tags(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


# -- commands -------------------------------------------------------------------------------


def _service(settings: Settings) -> MemoryService:
    return MemoryService(settings, client="mnemolog-cli")


# Control characters other than newline and tab (ESC among them): a memory's content may
# hold any of them, and printed as they are they would drive the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:  # JSON escapes them itself
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    elif text:
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the MCP server until the client disconnects (stdio) or until interrupted (HTTP)."""
    if args.http:
        if not 0 < args.port < 65536:
            raise UsageError(f"--port {args.port} is not a port number (1-65535)")
        if not is_loopback(args.host) and not settings.http_token:
            raise UsageError(
                f"refusing to serve on {args.host}, which other machines can reach, without a token: "
                "set MNEMOLOG_HTTP_TOKEN (16+ characters; clients then send 'Authorization: Bearer "
                "<token>') or keep the default --host 127.0.0.1"
            )
    from .app import build_server, run_http, run_stdio

    service = MemoryService(settings, client="mnemolog-mcp", watch=True, index_in_background=True)
    server = build_server(service)
    if args.http:
        host = args.host.strip("[]")
        shown = f"[{host}]" if ":" in host else host
        print(f"mnemolog: serving MCP at http://{shown}:{args.port}/mcp"
              + (" (bearer token required)" if settings.http_token else ""), file=sys.stderr, flush=True)
        run_http(server, host, args.port, settings.http_token, settings.log_level)
    else:
        run_stdio(server)
    return 0


def cmd_save(args: argparse.Namespace, settings: Settings) -> int:
    content = sys.stdin.read() if args.content == "-" else args.content
    service = _service(settings)
    try:
        saved = service.save(content, importance=args.importance, tags=_tags(args.tags), kind=args.kind)
    finally:
        service.close()
    data = {"id": saved.id, "project_id": saved.project, "created": saved.created}
    _emit(args, data, saved.id)
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    try:
        found = service.search(args.query, limit=args.limit, tags=_tags(args.tags), since=args.since,
                               until=args.until, min_importance=args.min_importance)
    finally:
        service.close()
    data: dict[str, Any] = {"project_id": found.project, "mode": found.mode,
                            "results": [memory_record(m, score) for m, score in found.hits]}
    if found.warning:
        data["warning"] = found.warning
        if not args.json:
            print(f"mnemolog: warning: {found.warning}", file=sys.stderr)
    lines = []
    for m, score in found.hits:
        tags = "".join(f" #{t}" for t in m.tags)
        lines.append(f"{m.id}  {score:.3f}  [{m.importance}] {m.created_at[:10]}{tags}")
        lines.append("    " + m.content.strip().replace("\n", "\n    "))
    _emit(args, data, "\n".join(lines))
    return 0


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    try:
        gone = service.forget(args.id)
    finally:
        service.close()
    _emit(args, {"id": gone.id, "project_id": gone.project, "forgotten": True}, f"forgot {gone.id}")
    return 0


def cmd_context(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    try:
        loaded = service.load(limit=args.limit, min_importance=args.min_importance, budget_chars=args.budget_chars)
    finally:
        service.close()
    data = {"project_id": loaded.project, "total": loaded.total,
            "contexts": [memory_record(m) for m in loaded.memories]}
    _emit(args, data, render_context(loaded))
    return 0


def cmd_projects(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    try:
        projects = service.projects()
    finally:
        service.close()
    data = {"projects": [{"project_id": p.name, "memories": p.memories, "last_activity": p.last_activity}
                         for p in projects]}
    width = max((len(p.name) for p in projects), default=0)
    text = "\n".join(f"{p.name:<{width}}  {p.memories:>6}  {p.last_activity or '-'}" for p in projects)
    _emit(args, data, text)
    return 0


def cmd_tags(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    try:
        project = None if args.all else service.resolve_project(None)
        tags = service.tags(project=project, all_projects=args.all, limit=args.limit, min_usage=args.min_usage)
    finally:
        service.close()
    data = {"project_id": project, "tags": [{"tag": t.tag, "count": t.count} for t in tags]}
    _emit(args, data, "\n".join(f"{t.count:>6}  {t.tag}" for t in tags))
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        events = service.rebuild(bar.update if bar else None)
    finally:
        if bar:
            bar.finish()
        service.close()
    _emit(args, {"events": events}, f"rebuilt the index from {events} events")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    service = _service(settings)
    try:
        report = service.verify()
    finally:
        service.close()
    data = {"ok": report.ok, "differences": report.differences, "problems": report.problems}
    lines = ["index matches the logs" if report.ok else f"index differs from the logs "
             f"({len(report.differences)} difference(s)):"]
    lines += [f"  {d}" for d in report.differences[:50]]
    if len(report.differences) > 50:
        lines.append(f"  ... and {len(report.differences) - 50} more")
    if report.problems:
        lines.append(f"{len(report.problems)} log line(s) that are not events:")
        lines += [f"  {p}" for p in report.problems[:50]]
    if not report.ok and not args.json:
        lines.append("run 'mnemolog rebuild' to rebuild the index from the logs")
    _emit(args, data, "\n".join(lines))
    return 0 if report.ok else EXIT_ERROR


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Every event, or those of ``--project``, as JSON lines to stdout or ``--output``."""
    service = _service(settings)
    try:
        if args.output is None:
            count = service.export(sys.stdout.buffer, args.project)
            sys.stdout.flush()
            print(f"mnemolog: exported {count} event(s)", file=sys.stderr)
            return 0
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as out:
            count = service.export(out, args.project)
    finally:
        service.close()
    _emit(args, {"events": count, "output": args.output}, f"exported {count} event(s) to {args.output}")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Append the events of FILE the store does not hold yet; bad lines are reported, skipped."""
    service = _service(settings)
    try:
        if args.file == "-":
            report = service.import_lines(sys.stdin.buffer)
        else:
            with open(args.file, "rb") as lines:
                report = service.import_lines(lines)
    finally:
        service.close()
    for problem in report.problems[:20]:
        print(f"mnemolog: warning: skipped {problem}", file=sys.stderr)
    if len(report.problems) > 20:
        print(f"mnemolog: warning: ... and {len(report.problems) - 20} more line(s) skipped", file=sys.stderr)
    data = {"added": report.added, "present": report.present, "skipped": len(report.problems),
            "projects": sorted(report.projects)}
    _emit(args, data, f"imported {report.added} event(s) into {len(report.projects)} project(s); "
                      f"{report.present} already present, {len(report.problems)} line(s) skipped")
    return 0


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self._last = -1

    def update(self, done: int, total: int) -> None:
        """Redraw if the shown percentage changed."""
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if percent == self._last:
            return
        self._last = percent
        filled = self.width * percent // 100
        self.stream.write(f"\rrebuilding [{'#' * filled}{' ' * (self.width - filled)}] {percent:3d}%")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self._last >= 0:
            self.stream.write("\n")
            self.stream.flush()

