"""Reading a log incrementally from a byte offset.

Each complete line becomes a ``LogLine``: an event, or a problem (reported, then skipped). A
final line without ``\\n`` is a write in progress or a crashed writer's torn tail: it is not
yielded and not counted. A version newer than this code raises ``UnsupportedEventVersion``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .codec import decode_line
from .errors import CorruptLine, UnknownEventType
from .model import Event
from .source import Mark

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class LogLine:
    """One complete line of a log (or entry of a stream): where it is, and the event or the
    problem it holds. In a stream, ``start``/``end`` count entries instead of bytes."""

    line_no: int
    start: int
    end: int  # byte offset just after the line's "\n" (stream: entries up to this one)
    raw: bytes
    event: Event | None
    problem: str | None = None
    unknown_type: bool = False
    entry_id: str = ""  # stream: the entry's id ("" in a file)

    @property
    def digest(self) -> str:
        """sha256 of the line, used to notice when a log was rewritten under a reader."""
        return hashlib.sha256(self.raw).hexdigest()

    def advance(self, mark: Mark) -> Mark:
        """The mark just past this line (its identity kept)."""
        return replace(
            mark, offset=self.end, line_no=self.line_no + 1, entry_id=self.entry_id,
            last_start=self.start, last_hash=self.digest,
        )


def make_line(line_no: int, start: int, end: int, raw: bytes, project: str | None, entry_id: str = "") -> LogLine:
    """Decode one complete line into a ``LogLine``: its event, or the problem it has.

    Raises ``UnsupportedEventVersion`` for an event newer than this code.
    """
    if raw.strip() == b"":
        return LogLine(line_no, start, end, raw, None, "blank line", entry_id=entry_id)
    event, problem, unknown = _decode(raw, project)
    return LogLine(line_no, start, end, raw, event, problem, unknown, entry_id)


def _decode(raw: bytes, project: str | None) -> tuple[Event | None, str | None, bool]:
    try:
        event = decode_line(raw)
    except UnknownEventType as e:
        return None, str(e), True
    except CorruptLine as e:
        return None, str(e), False
    if project is not None and event.project != project:
        # An event filed under another project's log must never leak into this project.
        return None, f"event of project {event.project!r} in the log of {project!r}", False
    return event, None, False


def _complete_lines(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """Yield (start offset, line with its newline) for complete lines from ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        pending, start = b"", offset
        while chunk := f.read(CHUNK_BYTES):
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()  # the part after the last newline: incomplete for now
            for line in lines:
                yield start, line + b"\n"
                start += len(line) + 1


def scan(path: Path, offset: int = 0, line_no: int = 1, project: str | None = None) -> Iterator[LogLine]:
    """Yield every complete line of ``path`` from byte ``offset`` (which starts line ``line_no``).

    With ``project`` given, events naming another project are reported, not yielded as events.
    """
    if not path.exists():
        return
    for number, (start, raw) in enumerate(_complete_lines(path, offset), start=line_no):
        yield make_line(number, start, start + len(raw), raw, project)


def read_events(path: Path, offset: int = 0) -> Iterator[tuple[Event, int]]:
    """Yield ``(event, end_offset)`` for every good line of ``path`` from ``offset``."""
    for line in scan(path, offset):
        if line.event is not None:
            yield line.event, line.end
