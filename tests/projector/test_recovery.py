"""Recovery: a corrupt, deleted, foreign or outdated ``index.db`` is rebuilt from the logs on
the next query; a model change re-embeds; a model that cannot run degrades to keyword search
and its vectors are filled in once it can."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _projector_support import (
    FakeEmbedder,
    all_events,
    derived_problems,
    diff_rows,
    fold_rows,
    index_rows,
    write_events,
)

import projector
import projector.db
import projector.index
from eventlog import EventLog
from projector import Index, IndexCorrupt, runner


def assert_correct(index: Index, log: EventLog, vectors: bool = False) -> None:
    """The index holds exactly the fold of the logs and answers from it."""
    index.catch_up()
    folded = fold_rows(all_events(log))
    assert diff_rows(folded, index_rows(index._connection())) == []
    assert derived_problems(index._connection(), vectors_expected=vectors) == []
    report = index.verify()
    assert report.ok, report.differences


def warnings_about(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.levelno >= logging.WARNING and all(w in r.getMessage() for w in words)
    ]


@pytest.fixture
def store(log: EventLog) -> list[str]:
    """A store of two projects; returns the ids of project acme (the last 10 forgotten)."""
    ids = write_events(log, "acme", 300)
    write_events(log, "beta", 50, "beta")
    log.append("acme", [log.build_forget("acme", mid) for mid in ids[-10:]])
    return ids


def first_hit(index: Index, text: str, project: str = "acme") -> str:
    hits = index.search(text, project=project, limit=3).hits
    return hits[0].memory.id if hits else ""


@pytest.mark.parametrize("size", [0, 100, 4096, 100_000])
def test_garbage_index_file_is_rebuilt_on_next_query(make_index, log, store, caplog, size: int):
    first = make_index()
    first.catch_up()
    first.close()
    index_path = log.root / "index.db"
    assert not Path(f"{index_path}-wal").exists()  # the last connection checkpointed it away
    index_path.write_bytes(os.urandom(size) if size else b"")
    index = make_index()
    assert first_hit(index, "memory 17: note about topic17 and item17") == store[17]
    assert index.load_context("acme")[1] == 290
    assert_correct(index, log)
    if size:  # an empty file is simply a new database, nothing to warn about
        assert warnings_about(caplog, "unusable", "rebuilding")


def test_garbage_written_over_an_index_held_open(make_index, log, store, caplog):
    index = make_index()
    assert first_hit(index, "memory 17: note about topic17 and item17") == store[17]
    size = index.path.stat().st_size
    with open(index.path, "r+b") as f:  # in place: same inode, the open connection sees it
        f.write(os.urandom(size))
    log.save("acme", "written after the index was destroyed")
    assert index.load_context("acme")[1] == 291
    assert first_hit(index, "memory 18: note about topic18 and item18") == store[18]
    assert_correct(index, log)


def test_foreign_sqlite_file_and_other_schema_version_are_rebuilt(make_index, log, store, caplog):
    index_path = log.root / "index.db"
    foreign = sqlite3.connect(index_path)
    foreign.execute("CREATE TABLE notes (x)")
    foreign.commit()
    foreign.close()
    index = make_index()
    assert first_hit(index, "memory 5: note about topic5 and item5") == store[5]
    assert warnings_about(caplog, "not a mnemolog index")
    index.close()
    caplog.clear()
    conn = sqlite3.connect(index_path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    index = make_index()
    assert first_hit(index, "memory 6: note about topic6 and item6") == store[6]
    assert warnings_about(caplog, "schema version 999")
    assert_correct(index, log)


def test_index_of_schema_2_is_rebuilt_with_binary_codes(make_index, log, store, caplog):
    """Schema 3 moved the float vectors out of vec0 beside binary codes: an index written by the
    code before (version 2, no ``memory_embedding``) is rebuilt from the logs on open."""
    first = make_index(FakeEmbedder())
    first.catch_up()
    first.close()
    conn = sqlite3.connect(log.root / "index.db")  # the stdlib cannot load vec0, nor needs to here
    conn.execute("DROP TABLE memory_embedding")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    index = make_index(FakeEmbedder())
    result = index.search("memory 7: note about topic7 and item7", project="acme", limit=3)
    assert result.mode == "hybrid" and result.hits[0].memory.id == store[7]
    assert warnings_about(caplog, "schema version 2")
    assert_correct(index, log, vectors=True)


def test_deleted_index_is_rebuilt_on_next_query(make_index, log, store):
    first = make_index()
    first.catch_up()
    first.close()
    (log.root / "index.db").unlink()
    index = make_index()
    assert index.load_context("acme")[1] == 290
    assert_correct(index, log)


@pytest.mark.parametrize("with_sidecars", [False, True])
def test_index_deleted_while_held_open(make_index, log, store, caplog, with_sidecars: bool):
    index = make_index()
    assert index.load_context("acme")[1] == 290
    for suffix in ("", "-wal", "-shm") if with_sidecars else ("",):
        Path(f"{index.path}{suffix}").unlink(missing_ok=True)
    assert not index.path.exists()
    log.save("acme", "saved while the index was gone")
    assert index.load_context("acme")[1] == 291
    assert first_hit(index, "memory 21: note about topic21 and item21") == store[21]
    assert index.path.exists()
    assert_correct(index, log)
    assert warnings_about(caplog, "index.db")


@pytest.mark.slow
@pytest.mark.parametrize("unchecked_wal", [False, True])
def test_index_deleted_while_another_process_holds_it(make_index, log, store, root, caplog, unchecked_wal: bool):
    # A user removes index.db (only) while a server runs: its -wal and -shm stay behind, in
    # use by the server, next to the new index.db the next process creates.
    import json
    import subprocess
    import sys

    from _projector_support import CHILD, child_env

    make_index().catch_up()
    server = subprocess.Popen([sys.executable, str(CHILD), "hold", str(root), "acme"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()

        def ask(line: str) -> str:
            server.stdin.write(line + "\n")
            server.stdin.flush()
            return server.stdout.readline().strip()

        if unchecked_wal:  # the server just projected a batch: frames not yet checkpointed
            write_events(log, "acme", 300, "late")
        expected = 290 + (300 if unchecked_wal else 0)
        assert ask("count") == str(expected)
        (log.root / "index.db").unlink()
        index = make_index()
        memory_id = log.save("acme", "the zebra note written after the delete")
        assert index.load_context("acme")[1] == expected + 1
        assert_correct(index, log)
        assert json.loads(ask("search zebra note written after the delete"))[0] == memory_id
        assert ask("count") == str(expected + 1)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()
        server.stderr.close()
    assert server.returncode == 0
    fresh = make_index()
    assert_correct(fresh, log)


def test_new_index_is_private(make_index, log, store):
    index = make_index()
    index.catch_up()
    assert index.path.stat().st_mode & 0o777 == 0o600


# -- embeddings -------------------------------------------------------------------------------



def stored_vector(index: Index, memory_id: str) -> np.ndarray:
    row = index._connection().execute(
        "SELECT v.vector FROM memory_embedding v JOIN memory m ON m.rowid = v.rowid WHERE m.memory_id = ?",
        (memory_id,),
    ).fetchone()
    return np.frombuffer(row[0], dtype=np.float32)


def vector_count(index: Index) -> int:
    return index._connection().execute("SELECT count(*) FROM memory_vec").fetchone()[0]


@pytest.mark.parametrize("dim", [16, 24])
def test_model_change_re_embeds_everything(make_index, log, store, dim: int):
    v1 = FakeEmbedder("fake-v1")
    index = make_index(v1)
    index.catch_up()
    content = index.get("acme", store[3]).content
    assert np.allclose(stored_vector(index, store[3]), v1.embed([content])[0])
    index.close()
    v2 = FakeEmbedder("fake-v2", dim)
    index = make_index(v2)
    result = index.search(content, project="acme", limit=1)
    assert result.mode == "hybrid" and result.hits[0].memory.id == store[3]
    assert vector_count(index) == 290 + 50
    assert np.allclose(stored_vector(index, store[3]), v2.embed([content])[0])
    meta = dict(index._connection().execute("SELECT key, value FROM meta").fetchall())
    assert meta["model_id"] == "fake-v2" and meta.get("vectors_complete") == "1"
    assert_correct(index, log, vectors=True)
    # ... and a rebuild with the new model keeps the new model's vectors
    index.rebuild()
    assert np.allclose(stored_vector(index, store[3]), v2.embed([content])[0])
    assert_correct(index, log, vectors=True)


def test_unavailable_model_degrades_to_keyword_then_backfills(make_index, log, store, caplog, monkeypatch):
    monkeypatch.setattr(projector.index, "EMBED_RETRY_SECONDS", 0.0)
    model = FakeEmbedder()
    model.fail = True
    index = make_index(model)
    result = index.search("memory 42: note about topic5 and item42", project="acme", limit=5)
    assert result.mode == "keyword"
    assert "unavailable" in result.warning and "keyword" in result.warning
    assert result.hits[0].memory.id == store[42]
    assert warnings_about(caplog, "unavailable")
    assert index._connection().execute("SELECT 1 FROM sqlite_master WHERE name = 'memory_vec'").fetchone() is None
    assert index.verify().ok  # no vectors expected while the model is down
    log.save("acme", "saved while the model was down")
    model.fail = False
    result = index.search("saved while the model was down", project="acme", limit=1)
    assert result.mode == "hybrid" and result.warning is None
    assert result.hits[0].memory.content == "saved while the model was down"
    assert vector_count(index) == 291 + 50  # every present memory got its vector
    assert_correct(index, log, vectors=True)


def test_model_failing_in_the_middle_of_a_catch_up(make_index, log, store, monkeypatch):
    monkeypatch.setattr(projector.index, "EMBED_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(runner, "BATCH_LINES", 64)
    monkeypatch.setattr(projector.index, "EMBED_AHEAD_LINES", 0)  # the model fails under the lock, mid-projection
    model = FakeEmbedder()
    embed = model.embed

    def flaky(texts):
        if model.calls == 2:
            model.calls += 1
            raise projector.EmbedderUnavailable("the endpoint went away")
        return embed(texts)

    model.embed = flaky
    index = make_index(model)
    index.catch_up()
    assert 0 < vector_count(index) < 340  # one batch went without vectors
    assert index.verify().ok  # verify catches up, and so fills the gap
    assert vector_count(index) == 340
    model.calls = 2  # the next call fails
    log.save("acme", "one more memory to project")
    index.catch_up()
    assert vector_count(index) == 340
    index.search("anything at all", project="acme")  # the next read fills the gap
    assert vector_count(index) == 341
    assert_correct(index, log, vectors=True)


def test_rebuild_uses_the_embedding_cache(make_index, log, store):
    model = FakeEmbedder()
    index = make_index(model)
    index.catch_up()
    embedded = model.texts
    assert embedded >= 340
    index.rebuild()
    assert model.texts == embedded  # every vector came from cache/embeddings.db
    assert_correct(index, log, vectors=True)


def test_corrupt_index_with_a_model_is_rebuilt_with_vectors(make_index, log, store):
    first = make_index(FakeEmbedder())
    first.catch_up()
    first.close()
    (log.root / "index.db").write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    index = make_index(FakeEmbedder())
    assert index.search("memory 8: note about topic8", project="acme", limit=1).hits[0].memory.id == store[8]
    assert_correct(index, log, vectors=True)


def test_index_corrupt_is_a_projector_error():
    assert issubclass(IndexCorrupt, projector.ProjectorError)


def test_an_index_that_cannot_be_opened_for_a_passing_reason_is_not_deleted(make_index, log, store, monkeypatch):
    """Only a damaged file is rebuilt: a busy or unreadable one must keep its rows."""
    index = make_index()
    assert index.load_context("acme")[1] == 290
    index.close()
    before = index.path.stat().st_ino
    error_class = projector.db.database_error()

    def busy(*args: object, **kwargs: object) -> object:
        raise error_class("database is locked")

    monkeypatch.setattr(projector.db, "connect", busy)
    reopened = make_index()
    with pytest.raises(projector.ProjectorError, match="locked") as raised:
        reopened.load_context("acme")
    assert not isinstance(raised.value, IndexCorrupt)
    assert index.path.exists() and index.path.stat().st_ino == before
    monkeypatch.undo()
    assert make_index().load_context("acme")[1] == 290


def test_a_lock_refused_at_once_while_opening_is_retried(make_index, log, store, monkeypatch):
    """SQLite refuses a lock at once, past any busy timeout, where waiting could deadlock (two
    processes setting up a new file together): opening retries it instead of reporting it."""
    index = make_index()
    assert index.load_context("acme")[1] == 290
    index.close()
    error_class, real_connect = projector.db.database_error(), projector.db.connect
    refusals = 2

    def refused_twice(*args: object, **kwargs: object) -> object:
        nonlocal refusals
        if refusals:
            refusals -= 1
            error = error_class("database is locked")
            error.sqlite_errorcode = 5  # SQLITE_BUSY, as the driver sets it
            raise error
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(projector.db, "connect", refused_twice)
    assert make_index().load_context("acme")[1] == 290
    assert refusals == 0
