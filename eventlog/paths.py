"""Where a store lives on disk, and making its directories with private permissions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

DIR_MODE = 0o700
FILE_MODE = 0o600
LOG_SUFFIX = ".jsonl"
GITATTRIBUTES = "*.jsonl merge=union\n"


def default_root(environ: Mapping[str, str] | None = None) -> Path:
    """``MNEMOLOG_HOME``, else the platform's user data dir (``$XDG_DATA_HOME/mnemolog``...)."""
    env = os.environ if environ is None else environ
    home = env.get("MNEMOLOG_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    xdg = env.get("XDG_DATA_HOME", "").strip()
    if xdg and os.name == "posix":
        return Path(xdg).expanduser() / "mnemolog"
    return Path(platformdirs.user_data_dir("mnemolog", appauthor=False))


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing; return it."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask
    return path


def logs_dir(root: Path) -> Path:
    """The directory of per-project logs (the git-syncable part of a store)."""
    return root / "logs"


def log_path(root: Path, project: str) -> Path:
    """The log file of an already validated project id."""
    return logs_dir(root) / f"{project}{LOG_SUFFIX}"


def lock_path(root: Path, project: str) -> Path:
    """The advisory lock file of a project's log."""
    return root / "locks" / f"{project}.lock"


def ensure_logs_dir(root: Path) -> Path:
    """Create ``logs/`` (0700) with its ``.gitattributes`` for union merges on first use."""
    ensure_dir(root)
    logs = ensure_dir(logs_dir(root))
    attributes = logs / ".gitattributes"
    if not attributes.exists():
        try:
            fd = os.open(attributes, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass  # another process made it between our check and our open
        else:
            try:
                os.write(fd, GITATTRIBUTES.encode())
            finally:
                os.close(fd)
    ensure_dir(root / "locks")
    return logs
