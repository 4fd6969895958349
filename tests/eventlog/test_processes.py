"""Claims about OS processes, tested with OS processes: concurrent writers and kill -9."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventlog import EventLog, MemorySaved, encode_event

Spawn = Callable[..., "subprocess.Popen[str]"]

WRITERS = 8
SAVES_EACH = 500


@pytest.mark.slow
def test_eight_processes_saving_at_once_lose_nothing(root: Path, tmp_path: Path, spawn_writer: Spawn) -> None:
    go = tmp_path / "go"
    procs = [spawn_writer("burst", str(root), "shared", str(SAVES_EACH), str(go), f"w{n}") for n in range(WRITERS)]
    for proc in procs:  # every writer is up and waiting: then they all start at once
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr
    go.touch()
    returned: dict[str, list[str]] = {}
    for n, proc in enumerate(procs):
        out, err = finish(proc)
        assert proc.returncode == 0, err
        *ids, done = out.splitlines()
        assert done == "done" and len(ids) == SAVES_EACH
        returned[f"w{n}"] = ids

    log = EventLog(root)
    assert log.problems("shared") == []  # every complete line parses
    raw = log.log_path("shared").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == WRITERS * SAVES_EACH  # one event per line
    for line in raw.splitlines():
        assert orjson.loads(line)["type"] == "memory.saved"  # no line holds two half-events
    events = list(log.read("shared"))
    assert len(events) == WRITERS * SAVES_EACH == len({e.event_id for e in events})
    for name, ids in returned.items():
        mine = [e for e in events if e.actor.client == name]
        # Each writer's saves are all there, in the order its save() calls returned.
        assert [e.memory_id for e in mine] == ids
        assert [e.content for e in mine] == [  # type: ignore[union-attr]
            f"{name} memory {i} " + "x" * (i * 37 % 300) for i in range(SAVES_EACH)
        ]


ROUNDS = 25
WRITERS_PER_ROUND = 3  # 75 kills


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The rest of a writer's stdout and its stderr, once it has ended.

    Not ``communicate()``: that reads the raw pipes and would skip whatever an earlier
    ``readline()`` had already buffered.
    """
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()  # EOF once the writer has exited or been killed
    err = proc.stderr.read()  # small: a writer prints to stderr only when it fails
    proc.wait(timeout=30)
    return out, err


def read_reported(proc: subprocess.Popen[str]) -> list[str]:
    """Every id the killed writer printed (a flushed line means save() had returned)."""
    out, _ = finish(proc)
    lines = out.split("\n")
    complete = lines[:-1]  # a kill can cut the last print short: that save is not claimed
    assert all(len(line) == 16 for line in complete), complete[-3:]
    return complete


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_returned_save(root: Path, spawn_writer: Spawn) -> None:
    rng = random.Random(20261122)
    log = EventLog(root)
    path = log.log_path("crash")
    reported: list[str] = []
    injected: dict[int, bytes] = {}  # file offset -> torn tail written there on purpose
    natural_tails = 0
    kills = 0
    for round_no in range(ROUNDS):
        data = path.read_bytes() if path.exists() else b""
        if data and not data.endswith(b"\n"):
            natural_tails += 1  # a kill cut a write short: the next writer must repair it
        elif data and round_no % 3 == 1:
            # Also a torn tail made on purpose, since a kill lands inside a write() only now
            # and then: a prefix of a real event line, no newline.
            partial = encode_event(log.build_save("crash", f"torn on purpose {round_no}"))[: rng.randrange(5, 120)]
            with open(path, "ab") as f:
                f.write(partial)
            injected[len(data)] = partial
        procs = [spawn_writer("loop", str(root), "crash", str(rng.randrange(10**9))) for _ in range(WRITERS_PER_ROUND)]
        for proc in procs:
            assert proc.stdout is not None
            first = proc.stdout.readline().rstrip("\n")  # the writer is in its loop now
            assert len(first) == 16, proc.stderr.read() if proc.stderr else ""
            reported.append(first)
        for proc in procs:
            time.sleep(rng.uniform(0, 0.03))
            proc.send_signal(signal.SIGKILL)
            kills += 1
        for proc in procs:
            reported.extend(read_reported(proc))
            assert proc.returncode == -signal.SIGKILL
    assert kills >= 50

    # Every save that returned before its writer died is in the log.
    events = list(log.read("crash"))
    saved_ids = {e.memory_id for e in events if isinstance(e, MemorySaved)}
    missing = set(reported) - saved_ids
    assert not missing, f"{len(missing)} returned saves lost"
    assert len(reported) > kills  # the writers did get work done between kills

    # Apart from torn lines, the log reads cleanly: every problem is a cut-short event line.
    ends_torn = not path.read_bytes().endswith(b"\n")
    last_id = log.save("crash", "after all the kills")  # an append after a possibly torn tail
    lines = list(log.scan("crash"))
    assert lines[-1].event is not None and lines[-1].event.memory_id == last_id
    problems = [line for line in lines if line.event is None]
    by_start = {p.start: p for p in problems}
    for offset, partial in injected.items():  # each injected tail became one bad line of its own
        assert by_start[offset].raw == partial + b"\n"
    head = b'{"v":1,"type":"memory.saved",'
    for problem in problems:
        cut = problem.raw[:-1]  # the start of a save line, cut short...
        assert cut[: len(head)] == head[: len(cut)], problem
        assert cut.find(b'{"v":', 1) == -1, problem  # ...never glued to the next event
        assert "not valid JSON" in (problem.problem or "")
    # Every torn tail found between rounds became a bad line (some may have been cut short
    # inside a batch, after complete lines, so more problems than tails are possible).
    assert len(problems) >= len(injected) + natural_tails
    assert len(problems) <= len(injected) + kills
    assert len(lines) == len(events) + 1 + len(problems)
    if ends_torn:
        assert problems and problems[-1].line_no == len(lines) - 1
