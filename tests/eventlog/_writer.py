"""A writer process for the real-process tests (run as a script, not collected by pytest).

    _writer.py burst ROOT PROJECT COUNT GO_FILE NAME
        print "ready", wait until GO_FILE exists, then save COUNT memories, printing each
        memory id (flushed) as soon as its save has returned; finally print "done".
    _writer.py loop ROOT PROJECT SEED
        save forever (single saves of random sizes, now and then a batch of three in one
        append), printing each memory id (flushed) after the append that wrote it returned.
        Meant to be killed with SIGKILL at a random moment.
"""

from __future__ import annotations

import os
import random
import sys
import time

from eventlog import EventLog


def report(memory_id: str) -> None:
    sys.stdout.write(memory_id + "\n")
    sys.stdout.flush()


def burst(root: str, project: str, count: int, go_file: str, name: str) -> None:
    log = EventLog(root, client=name)
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    for i in range(count):
        # Lines of varied length, so an interleaved write could not go unnoticed.
        report(log.save(project, f"{name} memory {i} " + "x" * (i * 37 % 300), tags=[name]))
    print("done", flush=True)


def loop(root: str, project: str, seed: int) -> None:
    rng = random.Random(seed)
    log = EventLog(root, client=f"killme-{seed}")
    i = 0
    while True:
        i += 1
        # Mostly small lines, sometimes large ones: a longer write() is a wider target.
        size = rng.choice([10, 100, 1000, 20_000, 60_000])
        content = f"{seed} {os.getpid()} {i} " + "k" * rng.randrange(size)
        if rng.random() < 0.2:
            events = [log.build_save(project, f"{content} part {j}") for j in range(3)]
            log.append(project, events)
            for event in events:
                report(event.memory_id)
        else:
            report(log.save(project, content, tags=["kill"], importance=rng.randint(1, 10)))


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "burst":
        burst(args[0], args[1], int(args[2]), args[3], args[4])
    elif mode == "loop":
        loop(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
