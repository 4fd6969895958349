"""Several real processes on one index: catching up at once, reading each other's writes,
and a rebuild under a process that holds the index open."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _projector_support import (
    CHILD,
    FakeEmbedder,
    all_events,
    child_env,
    derived_problems,
    diff_rows,
    fold_rows,
    index_rows,
    write_events,
)

from eventlog import EventLog
from projector import Index

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def spawn() -> Iterator:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=child_env(),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:  # never leave a child behind, whatever the test did
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_two_processes_catching_up_at_once(log: EventLog, root: Path, spawn):
    write_events(log, "alpha", 2500)
    write_events(log, "beta", 1500, "beta")
    previous_total = 0
    for round_no in range(3):
        if round_no:
            ids = write_events(log, "alpha", 1500, f"round {round_no}")
            log.append("alpha", [log.build_forget("alpha", mid) for mid in ids[::4]])
        go = root / f"go-{round_no}"
        procs = [spawn("race", str(root), str(go), "--fake") for _ in range(2)]
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "Traceback" not in err and "locked" not in err, err
            outputs.append(out.splitlines())
        applied = [int(lines[0].split()[1]) for lines in outputs]
        assert sum(applied) == len(all_events(log)) - previous_total, applied  # every event applied once, by one of them
        assert [lines[1] for lines in outputs] == ["verify []", "verify []"]
        previous_total = len(all_events(log))
    index = Index(log, FakeEmbedder())
    try:
        assert index.catch_up() == 0
        assert index.verify().ok
        assert diff_rows(fold_rows(all_events(log)), index_rows(index._connection())) == []
        assert derived_problems(index._connection(), vectors_expected=True) == []
    finally:
        index.close()


def ask(proc: subprocess.Popen[str], line: str) -> str:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_read_your_writes_across_processes(log: EventLog, root: Path, spawn, make_index):
    write_events(log, "acme", 300)
    reader = spawn("hold", str(root), "acme", "--fake")
    assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
    writer = make_index(FakeEmbedder())
    for i in range(15):
        content = f"decision {i}: the zebra{i} service moves to region{i}"
        memory_id = log.save("acme", content)
        if i % 2 == 0:
            writer.catch_up("acme")  # a save returns after its own catch-up...
        # ... and either way the other process's next search finds it
        assert memory_id in json.loads(ask(reader, f"search zebra{i} region{i}"))
    log.forget("acme", memory_id)
    assert memory_id not in json.loads(ask(reader, f"search zebra{i} region{i}"))
    assert ask(reader, "count") == str(300 + 14)


def test_save_in_one_process_is_found_by_a_process_already_open(log: EventLog, root: Path, spawn):
    write_events(log, "acme", 50)
    reader = spawn("hold", str(root), "acme")
    assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
    saver = spawn("save", str(root), "acme", "the quokka migration finished on friday")
    out, err = saver.communicate(timeout=60)
    assert saver.returncode == 0, err
    # First, not alone: the memories saved next to it match its words through their context.
    assert json.loads(ask(reader, "search quokka migration"))[0] == out.strip()


def test_rebuild_under_a_process_holding_the_index_open(log: EventLog, root: Path, spawn, make_index):
    ids = write_events(log, "acme", 800)
    reader = spawn("hold", str(root), "acme", "--fake")
    assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
    assert ask(reader, "count") == "800"
    index = make_index(FakeEmbedder())
    for round_no in range(3):
        more = write_events(log, "acme", 100, f"after rebuild {round_no}")
        index.rebuild()
        assert index.verify().ok
        assert ask(reader, "count") == str(800 + 100 * (round_no + 1))
        hits = json.loads(ask(reader, f"search after rebuild {round_no} 7 topic7 item7"))
        assert more[7] in hits
    assert ids[0] in json.loads(ask(reader, "search memory 0 topic0 item0"))
    assert reader.poll() is None
