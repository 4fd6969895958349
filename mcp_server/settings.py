"""One frozen ``Settings`` object, built from the environment at the entry points only.

Every value is checked here, so a bad one stops the program at startup with a message naming
the variable, instead of surfacing later as a puzzling tool error.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from eventlog import InvalidProject
from eventlog.lock import DEFAULT_LOCK_TIMEOUT
from eventlog.paths import default_root
from eventlog.redis_log import DEFAULT_PREFIX, DEFAULT_TIMEOUT, check_redis_url, redact_url
from eventlog.validate import DEFAULT_MAX_CONTENT_BYTES, validate_project

DEFAULT_PROJECT = "general"
EMBEDDERS = ("minilm", "http", "none")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_CONTENT_BYTES_CEILING = 16 * 1024 * 1024
STORAGE_VARIABLES = ("MNEMOLOG_STORAGE", "STORAGE_CONNECTION_STRING")  # the first one set wins
REDIS_SCHEMES = ("redis", "rediss")


class SettingsError(ValueError):
    """An environment variable or option has a value mnemolog cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server and the command line are configured with."""

    home: Path
    project: str = DEFAULT_PROJECT
    log_level: str = "WARNING"
    embedder: str = "minilm"
    embed_url: str | None = None
    embed_model: str | None = None
    embed_api_key: str | None = None
    embed_dim: int | None = None
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    durability: str = "always"
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    http_token: str | None = None
    redis_url: str | None = None  # the event log lives in Redis (else in files under home)
    redis_prefix: str = DEFAULT_PREFIX
    redis_timeout: float = DEFAULT_TIMEOUT
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 1.0

    def __repr__(self) -> str:  # never print secrets into a log
        hidden = {"embed_api_key", "http_token"}
        fields = ", ".join(
            f"{name}={'***' if name in hidden and getattr(self, name) else getattr(self, name)!r}"
            if name != "redis_url" else f"redis_url={self.redis_url and redact_url(self.redis_url)!r}"
            for name in self.__dataclass_fields__
        )
        return f"Settings({fields})"


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    home: str | Path | None = None,
    project: str | None = None,
) -> Settings:
    """Read ``MNEMOLOG_*`` (and the extended-memory-mcp compatible) variables; options win."""
    env = os.environ if environ is None else environ
    return _check_embedder(Settings(
        home=_home(env, home),
        project=_project(env, project),
        log_level=_log_level(env),
        embedder=_choice(env, "MNEMOLOG_EMBEDDER", EMBEDDERS, "minilm"),
        embed_url=_embed_url(env),
        embed_model=_text(env, "MNEMOLOG_EMBED_MODEL"),
        embed_api_key=_text(env, "MNEMOLOG_EMBED_API_KEY"),
        embed_dim=_integer(env, "MNEMOLOG_EMBED_DIM", None, 1, 65536),
        max_content_bytes=_integer(
            env, "MNEMOLOG_MAX_CONTENT_BYTES", DEFAULT_MAX_CONTENT_BYTES, 1, MAX_CONTENT_BYTES_CEILING
        )
        or DEFAULT_MAX_CONTENT_BYTES,
        durability=_choice(env, "MNEMOLOG_DURABILITY", ("always", "never"), "always"),
        lock_timeout=_seconds(env, "MNEMOLOG_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT),
        http_token=_token(env),
        redis_url=_redis_url(env),
        redis_prefix=_redis_prefix(env),
        redis_timeout=_seconds(env, "MNEMOLOG_REDIS_TIMEOUT", DEFAULT_TIMEOUT),
        redis_wait_replicas=_integer(env, "MNEMOLOG_REDIS_WAIT_REPLICAS", 0, 0, 100) or 0,
        redis_wait_timeout=_seconds(env, "MNEMOLOG_REDIS_WAIT_TIMEOUT", 1.0),
    ))


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _home(env: Mapping[str, str], option: str | Path | None) -> Path:
    storage = _storage(env)
    # Checked even when --home or MNEMOLOG_HOME decides the root: a store mnemolog cannot use
    # must not be ignored silently.
    directory = _storage_directory(*storage) if storage and not _is_redis(storage[1]) else None
    if option is not None and str(option).strip():
        return Path(option).expanduser()
    if _text(env, "MNEMOLOG_HOME"):
        return default_root(env)
    return directory or default_root(env)


def _storage(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The storage variable in force and its value: ``MNEMOLOG_STORAGE``, else
    ``STORAGE_CONNECTION_STRING`` (extended-memory-mcp's name)."""
    for name in STORAGE_VARIABLES:
        value = _text(env, name)
        if value:
            return name, value
    return None


def _is_redis(connection: str) -> bool:
    return urlsplit(connection).scheme.lower() in REDIS_SCHEMES


def _redis_url(env: Mapping[str, str]) -> str | None:
    """A ``redis://`` or ``rediss://`` storage URL, checked (its password never shown)."""
    storage = _storage(env)
    if storage is None or not _is_redis(storage[1]):
        return None
    name, url = storage
    try:
        return check_redis_url(url)
    except ValueError as e:
        raise SettingsError(f"{name}={e}") from None


def _redis_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("MNEMOLOG_REDIS_PREFIX", DEFAULT_PREFIX)
    if not prefix or len(prefix) > 100 or any(ch.isspace() or not ch.isprintable() for ch in prefix):
        raise SettingsError(
            f"MNEMOLOG_REDIS_PREFIX={prefix!r}: use 1 to 100 printable characters without spaces, such as 'mnemolog:'"
        )
    return prefix


def _storage_directory(name: str, connection: str) -> Path:
    """A directory path or ``file://`` URL of one (the file backend's data root)."""
    scheme = urlsplit(connection).scheme.lower()
    if scheme == "file":
        parts = urlsplit(connection)
        if parts.netloc not in ("", "localhost"):
            raise SettingsError(f"{name}={connection!r}: a file:// URL must name a local directory")
        path = Path(unquote(parts.path)).expanduser()
    elif scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive ("C:\...")
        raise SettingsError(
            f"{name}={redact_url(connection)!r}: mnemolog keeps its memories as log files in a "
            f"directory or in Redis, and cannot use a {scheme}:// store; set {name} to a directory "
            "path, a file:// URL of one, or redis://[user:password@]host:port/db (rediss:// for TLS)"
        )
    else:
        path = Path(connection).expanduser()
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{name}={connection!r} is a file; it must name a directory")
    return path


def _project(env: Mapping[str, str], option: str | None) -> str:
    name, value = ("--project", option) if option is not None else ("MNEMOLOG_PROJECT", env.get("MNEMOLOG_PROJECT"))
    if value is None or not value.strip():
        if option is not None:
            raise SettingsError("--project is empty")
        return DEFAULT_PROJECT
    try:
        return validate_project(value.strip())
    except InvalidProject as e:
        raise SettingsError(f"{name}: {e}") from e


def _log_level(env: Mapping[str, str]) -> str:
    for name in ("MNEMOLOG_LOG_LEVEL", "LOG_LEVEL"):
        value = _text(env, name)
        if value:
            level = "WARNING" if value.upper() == "WARN" else value.upper()
            if level not in LOG_LEVELS:
                raise SettingsError(f"{name}={value!r}: use one of {', '.join(LOG_LEVELS)}")
            return level
    return "WARNING"


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = _text(env, name)
    if value is None:
        return default
    if value.lower() not in choices:
        raise SettingsError(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value.lower()


def _integer(env: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise SettingsError(f"{name}={number} is out of range: use {low} to {high}")
    return number


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _text(env, name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise SettingsError(f"{name}={value!r}: use a number of seconds above 0 and at most 3600")
    return seconds


def _embed_url(env: Mapping[str, str]) -> str | None:
    url = _text(env, "MNEMOLOG_EMBED_URL")
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise SettingsError(f"MNEMOLOG_EMBED_URL={url!r}: use an http:// or https:// URL")
    if url is None and _text(env, "MNEMOLOG_EMBEDDER") and env["MNEMOLOG_EMBEDDER"].strip().lower() == "http":
        raise SettingsError(
            "MNEMOLOG_EMBEDDER=http needs MNEMOLOG_EMBED_URL (an OpenAI-compatible endpoint, "
            "e.g. http://127.0.0.1:11434/v1/embeddings)"
        )
    return url


def _check_embedder(settings: Settings) -> Settings:
    if settings.embedder == "http" and not settings.embed_model:
        raise SettingsError("MNEMOLOG_EMBEDDER=http needs MNEMOLOG_EMBED_MODEL (the model name the endpoint serves)")
    if settings.embedder == "minilm" and settings.embed_dim not in (None, 384):
        raise SettingsError(f"MNEMOLOG_EMBED_DIM={settings.embed_dim}: the minilm embedder has 384 dimensions")
    return settings


def _token(env: Mapping[str, str]) -> str | None:
    token = env.get("MNEMOLOG_HTTP_TOKEN")
    if token is None or token == "":
        return None
    if token != token.strip() or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise SettingsError("MNEMOLOG_HTTP_TOKEN must not contain spaces or control characters")
    if len(token) < 16:
        raise SettingsError("MNEMOLOG_HTTP_TOKEN is too short: use at least 16 characters")
    return token


def is_loopback(host: str) -> bool:
    """Whether an address to listen on only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
