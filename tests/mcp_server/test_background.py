"""Writes are acknowledged once the log holds them; the server indexes them in the background.

The claims: a write is answered before its embedding runs; a read right after it (a search
while the background worker is still busy, a repeated save, an update, a forget) sees it exactly
as if it had been indexed before the answer; a failing worker loses nothing and stops nothing.
An embedder that blocks until the test lets it go makes "while the worker is busy" certain.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mcp_server.indexer import BackgroundIndexer
from mcp_server.service import MemoryService
from mcp_server.settings import load_settings
from projector import Index, db
from projector.errors import EmbedderUnavailable

WAIT = 30.0  # a bound on every wait, so a bug fails the test instead of hanging it


class GatedEmbedder:
    """A deterministic toy model (one pseudo-random vector per word) that, while ``gate`` is
    closed, blocks every call until it opens; ``busy`` is set while a call is blocked."""

    model_id = "gated-v1"
    dim = 8

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.busy = threading.Event()
        self.fail = False
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self.gate.is_set():
            self.busy.set()
            assert self.gate.wait(WAIT), "the test never opened the gate"
        if self.fail:
            raise EmbedderUnavailable("the model is switched off for this test")
        self.texts.extend(texts)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)

    def _vector(self, text: str) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
            out += np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return out / max(float(np.linalg.norm(out)), 1e-12)


@pytest.fixture
def embedder() -> GatedEmbedder:
    return GatedEmbedder()


@pytest.fixture
def service(tmp_path: Path, embedder: GatedEmbedder) -> Iterator[MemoryService]:
    """A service as ``mnemolog serve`` builds it (background indexing), over the gated model."""
    settings = load_settings({"MNEMOLOG_HOME": str(tmp_path / "home"), "MNEMOLOG_EMBEDDER": "none"})
    service = MemoryService(settings, client="pytest", index_in_background=True)
    service._index = Index(service.log, embedder)  # the gated model in place of the settings' none
    service.save("An early memory opens the index.", project="acme")
    assert service.wait_indexed(WAIT)
    yield service
    embedder.gate.set()
    service.close()


def has_vector(service: MemoryService, memory_id: str) -> bool:
    conn = db.connect(service.index.path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM memory m JOIN memory_vec v ON v.rowid = m.rowid WHERE m.memory_id = ?",
            (memory_id,),
        ).fetchone()
        return bool(row[0])
    finally:
        conn.close()


def in_thread(call):  # type: ignore[no-untyped-def]
    """Run ``call`` on another thread (as the server's request thread would) and return its future."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def test_a_save_is_answered_before_its_embedding_and_a_search_then_finds_it_with_its_vector(
    service: MemoryService, embedder: GatedEmbedder
) -> None:
    embedder.gate.clear()
    saved = service.save("Deploys go out on Friday afternoons.", project="acme")
    assert saved.created
    assert embedder.busy.wait(WAIT)  # the background worker is stuck in the model, after the answer
    search = in_thread(lambda: service.search("friday deploys", project="acme"))
    with pytest.raises(TimeoutError):
        search.result(timeout=0.3)  # the search waits for the indexing of the save, not past it
    embedder.gate.set()
    found = search.result(timeout=WAIT)
    assert found.mode == "hybrid" and found.warning is None
    assert saved.id in [m.id for m, _ in found.hits]
    assert has_vector(service, saved.id)
    assert embedder.texts.count("Deploys go out on Friday afternoons.") == 1  # embedded once, not twice


def test_the_same_content_saved_back_to_back_is_created_once(service: MemoryService, embedder: GatedEmbedder) -> None:
    embedder.gate.clear()
    first = service.save("The invoices table is partitioned by month.", project="acme")
    assert embedder.busy.wait(WAIT)
    again = in_thread(lambda: service.save("The invoices table is partitioned by month.", project="acme"))
    threading.Timer(0.2, embedder.gate.set).start()
    second = again.result(timeout=WAIT)
    assert first.created and not second.created and second.id == first.id
    assert len([e for e in service.log.read("acme") if getattr(e, "memory_id", None) == first.id]) == 1


def test_update_and_forget_find_a_memory_saved_a_moment_before(service: MemoryService, embedder: GatedEmbedder) -> None:
    embedder.gate.clear()
    saved = service.save("Alice prefers dark mode.", project="acme", importance=5)
    threading.Timer(0.2, embedder.gate.set).start()
    updated = in_thread(lambda: service.update(saved.id[:8], importance=8, project="acme")).result(timeout=WAIT)
    assert updated.changed and updated.id == saved.id
    embedder.gate.clear()
    embedder.busy.clear()
    changed = service.update(saved.id, content="Alice prefers light mode.", project="acme")
    assert embedder.busy.wait(WAIT)
    threading.Timer(0.2, embedder.gate.set).start()
    gone = in_thread(lambda: service.forget(changed.id, project="acme")).result(timeout=WAIT)
    assert gone.id == changed.id
    assert [m.content for m, _ in service.search("alice mode", project="acme").hits if "Alice" in m.content] == []


def test_a_failing_model_loses_no_write_and_the_worker_keeps_going(
    service: MemoryService, embedder: GatedEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    embedder.fail = True
    with caplog.at_level(logging.WARNING):
        ids = [service.save(f"Fact number {n} while the model is down.", project="acme").id for n in range(5)]
        found = service.search("model down", project="acme", limit=10)
    assert found.mode == "keyword" and found.warning
    # the five facts hold the words; the fixture's early memory may follow through its
    # neighbour context (it sits next to fact 0), ranked below them
    assert {m.id for m, _ in found.hits[:5]} == set(ids)
    assert "embeddings unavailable" in caplog.text
    embedder.fail = False  # the model is back: later saves are embedded again
    later = service.save("A fact saved once the model is back.", project="acme")
    assert later.id in [m.id for m, _ in service.search("model is back", project="acme").hits]


def test_the_indexer_logs_a_failure_and_indexes_what_comes_after(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []
    finished = threading.Event()

    def catch_up(project: str) -> None:
        if project == "broken":
            raise RuntimeError("the index is on fire")
        done.append(project)
        finished.set()

    indexer = BackgroundIndexer(catch_up)
    with caplog.at_level(logging.WARNING, logger="mcp_server.indexer"):
        indexer.submit("broken")
        indexer.submit("fine")
        assert finished.wait(WAIT)
        assert indexer.close(WAIT)
    assert done == ["fine"]
    assert "background indexing of project 'broken' failed" in caplog.text
    assert "the index is on fire" in caplog.text


def test_the_indexer_coalesces_projects_and_drains_them_on_close() -> None:
    release = threading.Event()
    calls: list[str] = []

    def catch_up(project: str) -> None:
        calls.append(project)
        release.wait(WAIT)

    indexer = BackgroundIndexer(catch_up)
    indexer.submit("a")  # the worker takes "a" and blocks in it
    for project in ("b", "c", "b", "c", "b"):
        indexer.submit(project)  # while it is busy: queued once each
    threading.Timer(0.2, release.set).start()
    assert indexer.close(WAIT)
    assert calls[0] == "a" and sorted(calls[1:]) == ["b", "c"]
    indexer.submit("d")  # after close: ignored (the log holds the write; a reader indexes it)
    assert calls[-1] != "d"


def test_an_idle_indexer_lets_the_reply_go_first_and_a_busy_one_does_not_wait() -> None:
    headstart = 1.0  # long, so that a loaded machine cannot blur the two cases
    started: list[float] = []
    taken, release = threading.Event(), threading.Event()

    def catch_up(project: str) -> None:
        started.append(time.monotonic())
        if project == "a":
            taken.set()
            release.wait(WAIT)

    indexer = BackgroundIndexer(catch_up, headstart=headstart)
    submitted = time.monotonic()
    indexer.submit("a")
    assert taken.wait(WAIT)
    indexer.submit("b")  # while "a" is being indexed: taken as soon as "a" is done
    released = time.monotonic()
    release.set()
    assert indexer.wait_idle(WAIT) and indexer.close(WAIT)
    assert started[0] - submitted >= headstart  # from idle: the reply goes first
    assert started[1] - released < headstart  # busy: no second head start


def test_close_gives_up_on_a_stuck_worker_within_its_timeout() -> None:
    stuck = threading.Event()
    indexer = BackgroundIndexer(lambda project: stuck.wait(WAIT))
    indexer.submit("a")
    assert indexer.close(0.2) is False
    stuck.set()
