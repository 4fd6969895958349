"""A projector process for the real-process tests (run as a script, not collected by pytest).

    _child.py catchup ROOT [--fake]     print "ready", catch the index up, print "done N"
    _child.py rebuild ROOT [--fake] [--announce-swap]
                                        print "ready", rebuild the index, print "done N"
                                        (and "swapping" when the fresh index is swapped in)
    _child.py race ROOT GO_FILE         print "ready", wait for GO_FILE, catch up, print "done N"
    _child.py hold ROOT PROJECT         open an index, catch up, print "ready", then answer
                                        stdin lines "search TEXT" with the JSON list of hit ids
                                        and "count" with the present memories of PROJECT
    _child.py save ROOT PROJECT TEXT    save through EventLog, catch the index up, print the id

``--fake`` uses the deterministic fake embedder of ``_projector_support``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from _projector_support import FakeEmbedder

from eventlog import EventLog
from projector import Index


def say(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def open_index(root: str, fake: bool) -> Index:
    return Index(EventLog(root, durability="never", client=f"child-{os.getpid()}"), FakeEmbedder() if fake else None)


def announce_swap() -> None:
    from projector import rebuild

    swap_in = rebuild.swap_in

    def announced(*args: object) -> None:
        say("swapping")
        swap_in(*args)  # type: ignore[arg-type]

    rebuild.swap_in = announced


def main(argv: list[str]) -> None:
    fake = "--fake" in argv
    if "--announce-swap" in argv:
        announce_swap()
    args = [a for a in argv if not a.startswith("--")]
    mode, root = args[0], args[1]
    if mode in ("catchup", "rebuild"):
        index = open_index(root, fake)
        say("ready")
        n = index.catch_up() if mode == "catchup" else index.rebuild()
        say("done", n)
    elif mode == "race":
        index = open_index(root, fake)
        index._connection()  # opened before the race: both start from the same state
        say("ready")
        while not os.path.exists(args[2]):
            time.sleep(0.001)
        say("done", index.catch_up())
        say("verify", json.dumps(index.verify().differences))
    elif mode == "hold":
        index = open_index(root, fake)
        project = args[2]
        index.catch_up()
        say("ready")
        for line in sys.stdin:
            command, _, text = line.rstrip("\n").partition(" ")
            if command == "search":
                say(json.dumps([h.memory.id for h in index.search(text, project=project, limit=100).hits]))
            elif command == "count":
                say(index.load_context(project)[1])
            else:
                break
    elif mode == "save":
        index = open_index(root, fake)
        memory_id = index.log.save(args[2], args[3])
        index.catch_up(args[2])
        say(memory_id)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    index.close()


if __name__ == "__main__":
    main(sys.argv[1:])
