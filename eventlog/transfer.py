"""Moving events between stores: export as JSON lines, import idempotently by event id.

Export writes the good events of each project in log order, each as the line the log holds
(the codec's bytes), so a store can move from files to Redis and back. Import skips events
whose id the target already holds (and repeats within the input), so running it twice, or
after a partial run, adds nothing twice. It appends in batches without per-append durability,
then makes each project durable once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from .codec import decode_line
from .errors import CorruptLine, UnsupportedEventVersion
from .model import Event
from .source import EventStore
from .validate import validate_project

IMPORT_BATCH = 500


@dataclass(slots=True)
class ImportReport:
    """What an import did: events added, already present, and input lines that were refused."""

    added: int = 0
    present: int = 0
    projects: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def export_lines(store: EventStore, projects: Sequence[str] | None = None) -> Iterator[bytes]:
    """Every good event of ``projects`` (default: all), project by project, as ``\\n``-ended
    lines. A project holding an event newer than this code raises ``UnsupportedEventVersion``:
    an export never drops events silently."""
    for project in projects if projects is not None else store.projects():
        for line in store.scan(validate_project(project)):
            if line.event is not None:
                yield line.raw if line.raw.endswith(b"\n") else line.raw + b"\n"


def write_export(store: EventStore, out: BinaryIO, projects: Sequence[str] | None = None) -> int:
    """Write ``export_lines`` to ``out``; return the number of events written."""
    count = 0
    for line in export_lines(store, projects):
        out.write(line)
        count += 1
    return count


def parse_lines(lines: Iterable[bytes], report: ImportReport) -> dict[str, list[Event]]:
    """The events of the input, by project, in input order; refused lines go to ``report``."""
    by_project: dict[str, list[Event]] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            event = decode_line(raw)
            if validate_project(event.project) != event.project:
                raise CorruptLine(f"project id {event.project!r} is not in its stored form")
        except UnsupportedEventVersion:
            raise
        except (CorruptLine, ValueError) as e:
            report.problems.append(f"line {number}: {e}")
            continue
        by_project.setdefault(event.project, []).append(event)
    return by_project


def import_events(store: EventStore, by_project: dict[str, list[Event]], report: ImportReport,
                  batch: int = IMPORT_BATCH) -> ImportReport:
    """Append the events the store does not hold yet (by event id), in batches."""
    for project, events in by_project.items():
        known = {e.event_id for e in store.read(project)}
        fresh: list[Event] = []
        for event in events:
            if event.event_id in known:
                report.present += 1
                continue
            known.add(event.event_id)
            fresh.append(event)
        for start in range(0, len(fresh), batch):
            store.append(project, fresh[start : start + batch], durable=False)
        if fresh:
            store.sync(project)
            report.projects.add(project)
        report.added += len(fresh)
    return report


def import_lines(store: EventStore, lines: Iterable[bytes], batch: int = IMPORT_BATCH) -> ImportReport:
    """Parse JSON lines and import their events into ``store``; see the module docstring."""
    report = ImportReport()
    return import_events(store, parse_lines(lines, report), report, batch)
