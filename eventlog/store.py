"""``EventLog``: the file backend -- one append-only JSONL log per project under ``root/logs``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import paths
from .base import LogBase, is_valid_project
from .codec import encode_event
from .lock import DEFAULT_LOCK_TIMEOUT
from .model import Event
from .reader import LogLine, scan
from .source import Head, Mark, Watch
from .validate import DEFAULT_MAX_CONTENT_BYTES, validate_project
from .writer import Durability, append_lines, sync_file


class EventLog(LogBase):
    """Append-only per-project logs under ``root/logs``; safe for many processes at once."""

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        durability: Durability | str = Durability.ALWAYS,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        client: str | None = None,
    ) -> None:
        super().__init__(max_content_bytes=max_content_bytes, client=client)
        self.root = Path(root) if root is not None else paths.default_root()
        self.durability = Durability(durability)
        self.lock_timeout = lock_timeout
        self._dirs_ready = False  # logs/, locks/ and .gitattributes made by this instance
        self._paths: dict[str, tuple[Path, Path]] = {}  # project -> (log, lock)

    # -- writing -----------------------------------------------------------------------

    def _write(self, project: str, events: Sequence[Event], durable: bool) -> None:
        """Append events of an already validated project in one locked ``write()``."""
        data = b"".join(encode_event(e) for e in events)
        if project not in self._paths:
            self._paths[project] = (paths.log_path(self.root, project), paths.lock_path(self.root, project))
        log, lock = self._paths[project]
        durability = self.durability if durable else Durability.NEVER
        if not self._dirs_ready:
            paths.ensure_logs_dir(self.root)
            self._dirs_ready = True
        try:
            append_lines(log, lock, data, durability, self.lock_timeout)
        except FileNotFoundError:
            # The directories went away under a long-running process (checked only once, to
            # keep stat calls off every save). Nothing was written: make them again, retry.
            paths.ensure_logs_dir(self.root)
            append_lines(log, lock, data, durability, self.lock_timeout)

    def sync(self, project: str) -> None:
        """fsync a project's log and its directory (after appends with ``durable=False``)."""
        log = paths.log_path(self.root, validate_project(project))
        if log.exists():
            sync_file(log)

    # -- reading -----------------------------------------------------------------------

    def projects(self) -> list[str]:
        """Projects that have a log, sorted."""
        logs = paths.logs_dir(self.root)
        if not logs.is_dir():
            return []
        names = (p.name[: -len(paths.LOG_SUFFIX)] for p in logs.glob(f"*{paths.LOG_SUFFIX}"))
        return sorted(n for n in names if is_valid_project(n))

    def log_path(self, project: str) -> Path:
        """The log file of ``project`` (which may not exist yet)."""
        return paths.log_path(self.root, validate_project(project))

    def scan(self, project: str, offset: int = 0, line_no: int = 1) -> Iterator[LogLine]:
        """Every complete line of a project's log from ``offset``, events and problems alike."""
        project = validate_project(project)
        return scan(paths.log_path(self.root, project), offset, line_no, project)

    def scan_after(self, project: str, mark: Mark) -> Iterator[LogLine]:
        """The complete lines after ``mark`` (a torn final line waits for its newline)."""
        return self.scan(project, mark.offset, mark.line_no)

    def heads(self, projects: Sequence[str]) -> dict[str, Head | None]:
        """One ``stat`` per log: its identity and size."""
        out: dict[str, Head | None] = {}
        for project in projects:
            try:
                st = os.stat(paths.log_path(self.root, validate_project(project)))
            except FileNotFoundError:
                out[project] = None
                continue
            identity = f"{st.st_dev}:{st.st_ino}"
            out[project] = Head(f"{identity}:{st.st_size}", identity, st.st_size)
        return out

    def is_rewritten(self, project: str, mark: Mark) -> bool:
        """True if the file is another one, shorter than ``mark``, or differs in its last read
        line (truncated, replaced, compacted, rewritten by a git merge)."""
        if mark.offset == 0:
            return False
        path = paths.log_path(self.root, validate_project(project))
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if f"{st.st_dev}:{st.st_ino}" != mark.identity or st.st_size < mark.offset:
                    return True
                f.seek(mark.last_start)
                last_line = f.read(mark.offset - mark.last_start)
        except FileNotFoundError:
            return True
        return hashlib.sha256(last_line).hexdigest() != mark.last_hash

    def watch(self, on_change: Callable[[str], None]) -> Watch | None:
        """A file watcher on ``logs/`` (``None`` where the platform's watcher is unavailable)."""
        from .filewatch import watch_logs

        return watch_logs(self.root, on_change)

    def describe(self) -> str:
        """The logs directory."""
        return f"log files in {paths.logs_dir(self.root)}"
