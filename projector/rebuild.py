"""``rebuild``: replay every log into a fresh index file, then swap it in.

The fresh index is written to a temp file and fsync'd. If no usable live index exists it is
renamed into place; otherwise its pages are copied into the live index in one SQLite
transaction (the backup API), because renaming a file over a WAL database that other
processes hold open lets one of them delete the new file's WAL when it closes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eventlog.paths import ensure_dir

from . import db
from .runner import Projection

if TYPE_CHECKING:
    from .index import Index

logger = logging.getLogger(__name__)


def _temp_path(live: Path) -> Path:
    return live.with_name(f"{live.name}.rebuild-{os.getpid()}")


def _remove_stale_temps(live: Path) -> None:
    """Temp files of rebuilds whose process died (kill -9) are removed."""
    for temp in live.parent.glob(f"{live.name}.rebuild-*"):
        pid = temp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            temp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_fresh(index: Index, temp: Path, progress: Callable[[int, int], None] | None) -> int:
    """Project every log into a new index at ``temp``; return events applied."""
    temp.unlink(missing_ok=True)
    conn = db.connect(temp, wal=False)
    try:
        # A crash here only loses the temp file, so skip the journal and syncs until the end.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        index._create_schema(conn)
        projects = index.log.projects()
        total = sum(head.size for head in index.log.heads(projects).values() if head is not None)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], total)

        projection = Projection(conn, index.log, index._embed)
        applied = sum(projection.project_log(p, advance) for p in projects)
        vectors_ok = index._active_embedder() is not None and not projection.vectors_missing
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('model_id', ?), ('vectors_complete', ?)",
            (index.model_id, "1" if vectors_ok else "0"),
        )
    finally:
        conn.close()
    _fsync_file(temp)
    return applied


def swap_in(index: Index, temp: Path) -> None:
    """Make the index at ``temp`` the live one (caller holds the index lock)."""
    live = index.path
    try:
        target = index._open_checked() if live.exists() else None
    except Exception:  # the live index is corrupt: nothing worth copying into
        target = None
    if target is None:
        from .index import _remove_index_files

        _remove_index_files(live)
        os.replace(temp, live)
        dir_fd = os.open(live.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return
    source = db.connect(temp, wal=False)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
        temp.unlink(missing_ok=True)


def rebuild_index(index: Index, progress: Callable[[int, int], None] | None) -> int:
    """Build a fresh index from the logs and swap it in; return events applied."""
    ensure_dir(index.path.parent)  # a Redis-backed store may have no local directory yet
    _remove_stale_temps(index.path)
    temp = _temp_path(index.path)
    try:
        applied = build_fresh(index, temp, progress)
        with index._index_lock():
            index._close_connection()
            swap_in(index, temp)
    finally:
        temp.unlink(missing_ok=True)
    logger.info("rebuilt %s: %d events applied", index.path, applied)
    return applied
