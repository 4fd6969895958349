"""Settings from the environment: defaults, every variable, and failing fast naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mcp_server
from mcp_server.settings import Settings, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"MNEMOLOG_HOME": str(tmp_path)})
    assert s == Settings(home=tmp_path)
    assert (s.project, s.log_level, s.embedder, s.durability) == ("general", "WARNING", "minilm", "always")
    assert s.max_content_bytes == 64 * 1024 and s.http_token is None


def test_every_variable(tmp_path: Path) -> None:
    s = load_settings({
        "MNEMOLOG_HOME": str(tmp_path), "MNEMOLOG_PROJECT": "Acme", "MNEMOLOG_LOG_LEVEL": "debug",
        "MNEMOLOG_EMBEDDER": "HTTP", "MNEMOLOG_EMBED_URL": "http://127.0.0.1:11434/v1/embeddings",
        "MNEMOLOG_EMBED_MODEL": "nomic-embed-text", "MNEMOLOG_EMBED_API_KEY": "sk-secret",
        "MNEMOLOG_EMBED_DIM": "768", "MNEMOLOG_MAX_CONTENT_BYTES": "1000", "MNEMOLOG_DURABILITY": "never",
        "MNEMOLOG_LOCK_TIMEOUT": "2.5", "MNEMOLOG_HTTP_TOKEN": "0123456789abcdef",
    })
    assert s.project == "acme" and s.log_level == "DEBUG" and s.embedder == "http"
    assert s.embed_url == "http://127.0.0.1:11434/v1/embeddings" and s.embed_model == "nomic-embed-text"
    assert s.embed_api_key == "sk-secret" and s.embed_dim == 768 and s.max_content_bytes == 1000
    assert s.durability == "never" and s.lock_timeout == 2.5 and s.http_token == "0123456789abcdef"
    assert "sk-secret" not in repr(s) and "0123456789abcdef" not in repr(s)


def test_options_win_over_the_environment(tmp_path: Path) -> None:
    s = load_settings({"MNEMOLOG_HOME": "/elsewhere", "MNEMOLOG_PROJECT": "b"}, home=tmp_path, project="a")
    assert (s.home, s.project) == (tmp_path, "a")


def test_log_level_falls_back_to_log_level(tmp_path: Path) -> None:
    assert load_settings({"MNEMOLOG_HOME": str(tmp_path), "LOG_LEVEL": "warn"}).log_level == "WARNING"
    both = {"MNEMOLOG_HOME": str(tmp_path), "LOG_LEVEL": "ERROR", "MNEMOLOG_LOG_LEVEL": "INFO"}
    assert load_settings(both).log_level == "INFO"


def test_home_falls_back_to_xdg_data_home(tmp_path: Path) -> None:
    assert load_settings({"XDG_DATA_HOME": str(tmp_path)}).home == tmp_path / "mnemolog"


@pytest.mark.parametrize("form", ["{d}", "file://{d}", "file://localhost{d}", "{d}/"])
def test_storage_connection_string_accepts_a_directory(tmp_path: Path, form: str) -> None:
    s = load_settings({"STORAGE_CONNECTION_STRING": form.format(d=tmp_path)})
    assert s.home == tmp_path


def test_mnemolog_home_wins_over_storage_connection_string(tmp_path: Path) -> None:
    s = load_settings({"MNEMOLOG_HOME": str(tmp_path / "a"), "STORAGE_CONNECTION_STRING": str(tmp_path / "b")})
    assert s.home == tmp_path / "a"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"STORAGE_CONNECTION_STRING": "redis://localhost:6379/x"}, "STORAGE_CONNECTION_STRING"),
        ({"MNEMOLOG_STORAGE": "redis://:pw@/0"}, "MNEMOLOG_STORAGE"),
        ({"MNEMOLOG_STORAGE": "redis://localhost:70000/0"}, "MNEMOLOG_STORAGE"),
        ({"MNEMOLOG_STORAGE": "mongodb://localhost/db"}, "MNEMOLOG_STORAGE"),
        ({"MNEMOLOG_STORAGE": "redis://localhost/0", "MNEMOLOG_REDIS_PREFIX": "has space"}, "MNEMOLOG_REDIS_PREFIX"),
        ({"MNEMOLOG_REDIS_TIMEOUT": "0"}, "MNEMOLOG_REDIS_TIMEOUT"),
        ({"MNEMOLOG_REDIS_WAIT_REPLICAS": "-1"}, "MNEMOLOG_REDIS_WAIT_REPLICAS"),
        ({"MNEMOLOG_REDIS_WAIT_TIMEOUT": "never"}, "MNEMOLOG_REDIS_WAIT_TIMEOUT"),
        ({"STORAGE_CONNECTION_STRING": "sqlite:///~/.local/share/extended-memory-mcp/memory.db"},
         "STORAGE_CONNECTION_STRING"),
        ({"STORAGE_CONNECTION_STRING": "file://otherhost/data"}, "STORAGE_CONNECTION_STRING"),
        ({"MNEMOLOG_PROJECT": "../etc"}, "MNEMOLOG_PROJECT"),
        ({"MNEMOLOG_LOG_LEVEL": "loud"}, "MNEMOLOG_LOG_LEVEL"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"MNEMOLOG_EMBEDDER": "bert"}, "MNEMOLOG_EMBEDDER"),
        ({"MNEMOLOG_EMBEDDER": "http"}, "MNEMOLOG_EMBED_URL"),
        ({"MNEMOLOG_EMBEDDER": "http", "MNEMOLOG_EMBED_URL": "http://127.0.0.1:1/v1/embeddings"},
         "MNEMOLOG_EMBED_MODEL"),
        ({"MNEMOLOG_EMBED_DIM": "768"}, "MNEMOLOG_EMBED_DIM"),
        ({"MNEMOLOG_EMBED_URL": "ftp://x"}, "MNEMOLOG_EMBED_URL"),
        ({"MNEMOLOG_EMBED_DIM": "-3"}, "MNEMOLOG_EMBED_DIM"),
        ({"MNEMOLOG_MAX_CONTENT_BYTES": "lots"}, "MNEMOLOG_MAX_CONTENT_BYTES"),
        ({"MNEMOLOG_MAX_CONTENT_BYTES": "0"}, "MNEMOLOG_MAX_CONTENT_BYTES"),
        ({"MNEMOLOG_DURABILITY": "sometimes"}, "MNEMOLOG_DURABILITY"),
        ({"MNEMOLOG_LOCK_TIMEOUT": "soon"}, "MNEMOLOG_LOCK_TIMEOUT"),
        ({"MNEMOLOG_LOCK_TIMEOUT": "-1"}, "MNEMOLOG_LOCK_TIMEOUT"),
        ({"MNEMOLOG_HTTP_TOKEN": "short"}, "MNEMOLOG_HTTP_TOKEN"),
        ({"MNEMOLOG_HTTP_TOKEN": "has a space in it, long enough"}, "MNEMOLOG_HTTP_TOKEN"),
    ],
)
def test_a_bad_value_fails_fast_naming_the_variable(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(variable)):
        load_settings({"XDG_DATA_HOME": str(tmp_path), **env})


@pytest.mark.parametrize("variable", ["STORAGE_CONNECTION_STRING", "MNEMOLOG_STORAGE"])
@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://bob:pa%40ss@cache.example:6380/2",
                                 "redis://127.0.0.1"])
def test_a_redis_url_selects_the_redis_backend_and_home_stays_local(tmp_path: Path, variable: str, url: str) -> None:
    s = load_settings({variable: url, "MNEMOLOG_HOME": str(tmp_path)})
    assert s.redis_url == url and s.home == tmp_path  # the index and caches stay on this machine
    assert (s.redis_prefix, s.redis_wait_replicas) == ("mnemolog:", 0)
    assert load_settings({variable: url, "XDG_DATA_HOME": str(tmp_path)}).home == tmp_path / "mnemolog"


def test_mnemolog_storage_wins_over_storage_connection_string(tmp_path: Path) -> None:
    s = load_settings({"MNEMOLOG_STORAGE": str(tmp_path / "dir"), "STORAGE_CONNECTION_STRING": "redis://h:1/0"})
    assert (s.home, s.redis_url) == (tmp_path / "dir", None)
    s = load_settings({"MNEMOLOG_STORAGE": "redis://h:1/0", "STORAGE_CONNECTION_STRING": str(tmp_path / "dir"),
                       "XDG_DATA_HOME": str(tmp_path)})
    assert (s.home, s.redis_url) == (tmp_path / "mnemolog", "redis://h:1/0")


def test_redis_options_are_read(tmp_path: Path) -> None:
    s = load_settings({"MNEMOLOG_HOME": str(tmp_path), "MNEMOLOG_STORAGE": "redis://h:1/0",
                       "MNEMOLOG_REDIS_PREFIX": "team-a:", "MNEMOLOG_REDIS_TIMEOUT": "2.5",
                       "MNEMOLOG_REDIS_WAIT_REPLICAS": "1", "MNEMOLOG_REDIS_WAIT_TIMEOUT": "0.5"})
    assert (s.redis_prefix, s.redis_timeout, s.redis_wait_replicas, s.redis_wait_timeout) == ("team-a:", 2.5, 1, 0.5)


@pytest.mark.parametrize("url", ["redis://bob:hunter2secret@localhost:6379/0", "redis://:hunter2secret@localhost/x",
                                 "rediss://bob:hunter2secret@localhost:99999/0", "sqlite://bob:hunter2secret@h/x"])
def test_the_redis_password_never_shows(tmp_path: Path, url: str) -> None:
    env = {"MNEMOLOG_HOME": str(tmp_path), "MNEMOLOG_STORAGE": url}
    try:
        settings = load_settings(env)
    except SettingsError as e:
        assert "hunter2secret" not in str(e) and "MNEMOLOG_STORAGE" in str(e)
    else:
        assert "hunter2secret" not in repr(settings) and "hunter2secret" not in str(settings)
        assert "bob:***@localhost" in repr(settings)


def test_storage_connection_string_to_a_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    db.write_bytes(b"")
    with pytest.raises(SettingsError, match="STORAGE_CONNECTION_STRING.*directory"):
        load_settings({"STORAGE_CONNECTION_STRING": str(db)})


def test_an_invalid_project_option_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--project"):
        load_settings({"MNEMOLOG_HOME": str(tmp_path)}, project="a/b")


def test_the_package_version_is_the_project_version() -> None:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert declared and mcp_server.__version__ == declared.group(1)
