"""A writer process for the contract tests, on either backend (run as a script, not collected).

    _store_writer.py SPEC PROJECT COUNT GO_FILE NAME
        SPEC is ``file:ROOT`` or ``redis:URL|PREFIX|ROOT``. Print "ready", wait until GO_FILE
        exists, then write COUNT times -- a save, every fourth time an update instead (the new
        save and the forget of the previous memory in one append) -- printing each new memory id
        (flushed) once its append has returned; finally print "done".
"""

from __future__ import annotations

import os
import sys
import time

from eventlog import EventLog
from eventlog.redis_log import RedisEventLog
from eventlog.source import EventStore


def open_store(spec: str, client: str) -> EventStore:
    """The store a SPEC names."""
    kind, _, rest = spec.partition(":")
    if kind == "file":
        return EventLog(rest, client=client)
    url, prefix, root = rest.split("|")
    return RedisEventLog(url, prefix=prefix, root=root, client=client)


def main(spec: str, project: str, count: int, go_file: str, name: str) -> None:
    store = open_store(spec, name)
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    previous = None
    for i in range(count):
        new = store.build_save(project, f"{name} memory {i} " + "x" * (i * 37 % 300), tags=[name])
        if previous is not None and i % 4 == 3:
            store.replace(project, previous, new)
        else:
            store.append(project, [new])
        previous = new.memory_id
        sys.stdout.write(new.memory_id + "\n")
        sys.stdout.flush()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
