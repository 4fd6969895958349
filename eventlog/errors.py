"""Errors of the event log: one base class, one small subclass per thing that went wrong."""

from __future__ import annotations


class EventLogError(Exception):
    """Base class of every error raised by ``eventlog``."""


class ValidationError(EventLogError, ValueError):
    """An argument was refused before anything was written."""


class InvalidProject(ValidationError):
    """A project id does not match ``[a-z0-9][a-z0-9._-]{0,63}`` or is reserved."""


class InvalidContent(ValidationError):
    """Memory content is empty, not valid UTF-8, or otherwise unusable."""


class ContentTooLarge(InvalidContent):
    """Memory content is larger than the configured limit."""


class InvalidTags(ValidationError):
    """Tags are too many, too long, empty or contain control characters."""


class InvalidImportance(ValidationError):
    """Importance is not an integer from 1 to 10."""


class InvalidKind(ValidationError):
    """A memory kind is not a short identifier."""


class InvalidMeta(ValidationError):
    """Meta is not a JSON object of plain values."""


class InvalidMemoryId(ValidationError):
    """A memory id is not 16 lower-case hex digits."""


class LockTimeout(EventLogError, TimeoutError):
    """The project's advisory lock was not acquired within the bounded wait."""


class UnsupportedEventVersion(EventLogError):
    """A log holds an event version newer than this code understands; upgrade mnemolog."""


class CorruptLine(EventLogError):
    """A complete log line that is not a valid event (reported and skipped by readers)."""


class UnknownEventType(CorruptLine):
    """A well-formed event of a type this code does not know (counted and skipped)."""


class StoreError(EventLogError):
    """The server holding the logs (Redis) refused or failed an operation."""


class StoreUnavailable(StoreError, ConnectionError):
    """The server holding the logs could not be reached or did not answer within its timeout."""


class ReplicationTimeout(StoreError, TimeoutError):
    """An append reached the Redis primary but fewer replicas than asked confirmed it in time."""
