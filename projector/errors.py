"""Errors of the read side: one base class, one small subclass per thing that went wrong."""

from __future__ import annotations


class ProjectorError(Exception):
    """Base class of every error raised by ``projector``."""


class SQLiteUnavailable(ProjectorError):
    """Neither the stdlib sqlite3 nor sqlean.py can load the sqlite-vec extension."""


class IndexCorrupt(ProjectorError):
    """``index.db`` is not a readable mnemolog index (it is rebuilt from the logs)."""


class EmbedderUnavailable(ProjectorError):
    """The embedding model could not load or the embedding endpoint did not answer."""


class MemoryNotFound(ProjectorError, LookupError):
    """No memory of this project has that id (or id prefix)."""


class AmbiguousId(ProjectorError, LookupError):
    """An id prefix matches more than one memory of the project; give more characters."""


class InvalidQuery(ProjectorError, ValueError):
    """A search argument (query, time phrase, limit) is unusable."""
