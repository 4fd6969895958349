"""The ``mnemolog`` command line, run as a real subprocess over a temporary data root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog

Cli = Callable[..., Any]  # conftest.cli -> Run(code, out, err, json)


def test_save_search_context_projects_tags_forget_round_trip(cli: Cli) -> None:
    saved = cli("save", "We picked Rust for the parser because of speed.", "-t", "lang,decision",
                "--importance", "8", "--json")
    assert saved.code == 0, saved.err
    assert saved.json["project_id"] == "general" and saved.json["created"] is True
    memory_id = saved.json["id"]
    assert cli("save", "We picked Rust for the parser because of speed.", "-t", "lang,decision",
               "--importance", "8", "--json").json["created"] is False

    found = cli("search", "parser speed", "--json")
    assert found.code == 0 and [r["id"] for r in found.json["results"]] == [memory_id]
    assert found.json["mode"] == "keyword" and found.json["results"][0]["tags"] == ["lang", "decision"]

    context = cli("context", "--json").json
    assert context["total"] == 1 and context["contexts"][0]["importance"] == 8
    projects = cli("projects", "--json").json["projects"]
    assert [(p["project_id"], p["memories"]) for p in projects] == [("general", 1)]
    assert cli("tags", "--json").json == {
        "project_id": "general", "tags": [{"tag": "decision", "count": 1}, {"tag": "lang", "count": 1}]
    }

    gone = cli("forget", memory_id[:8], "--json")
    assert gone.code == 0 and gone.json == {"id": memory_id, "project_id": "general", "forgotten": True}
    assert cli("search", "parser", "--json").json["results"] == []


def test_plain_output_is_for_people(cli: Cli) -> None:
    memory_id = cli("save", "Standups are at 9:30.").out.strip()
    assert len(memory_id) == 16
    assert memory_id in cli("search", "standups").out
    context = cli("context").out
    assert context.startswith("# Memory: project general") and "Standups are at 9:30." in context
    assert "general" in cli("projects").out


def test_control_characters_in_a_memory_do_not_reach_the_terminal(cli: Cli) -> None:
    content = "colour \x1b[31mred\x1b]0;a title\x07 and a\rcarriage return"
    assert cli("save", content).code == 0
    for args in (("context",), ("search", "colour")):
        shown = cli(*args)
        # (no check for a raw "\r": the text-mode pipe would turn it into "\n" anyway; the escaped
        # form below is what shows it was escaped)
        assert shown.code == 0 and "\x1b" not in shown.out and "\x07" not in shown.out
        assert "colour \\x1b[31mred\\x1b]0;a title\\x07 and a\\x0dcarriage return" in shown.out, shown.out
    assert cli("context", "--json").json["contexts"][0]["content"] == content  # the memory itself is as saved


def test_global_options_before_or_after_the_command(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert cli("--home", str(other), "--project", "acme", "save", "first", "--json").json["project_id"] == "acme"
    assert cli("save", "second", "--home", str(other), "--project", "acme", "--json").code == 0
    assert cli("--json", "--home", str(other), "context", "--project", "acme").json["total"] == 2
    assert EventLog(other).projects() == ["acme"]


def test_mnemolog_project_from_the_environment(cli: Cli) -> None:
    assert cli("save", "pinned", "--json", MNEMOLOG_PROJECT="pinned").json["project_id"] == "pinned"
    assert cli("context", "--json", MNEMOLOG_PROJECT="pinned").json["total"] == 1


def test_save_reads_content_from_stdin(cli: Cli) -> None:
    saved = cli("save", "-", "--json", input="A memory\nover two lines.\n")
    assert saved.code == 0, saved.err
    assert cli("context", "--json").json["contexts"][0]["content"] == "A memory\nover two lines.\n"


def test_search_with_time_phrases(cli: Cli) -> None:
    cli("save", "timely fact")
    assert len(cli("search", "timely", "--since", "today", "--json").json["results"]) == 1
    assert cli("search", "timely", "--until", "yesterday", "--json").json["results"] == []
    bad = cli("search", "timely", "--since", "whenever")
    assert bad.code == 1 and "yesterday" in bad.err


def test_tags_of_every_project(cli: Cli) -> None:
    cli("save", "one", "-t", "x", "--project", "a")
    cli("save", "two", "-t", "x", "--project", "b")
    assert cli("tags", "--all", "--json").json == {"project_id": None, "tags": [{"tag": "x", "count": 2}]}
    assert cli("tags", "--project", "a", "--json").json["tags"] == [{"tag": "x", "count": 1}]


def test_rebuild_and_verify(cli: Cli, home: Path) -> None:
    for n in range(5):
        assert cli("save", f"fact {n}").code == 0
    rebuilt = cli("rebuild", "--json")
    assert rebuilt.code == 0 and rebuilt.json == {"events": 5}
    verified = cli("verify", "--json")
    assert verified.code == 0 and verified.json["ok"] is True and verified.json["differences"] == []
    assert "matches" in cli("verify").out


def test_verify_exits_1_on_drift(cli: Cli, home: Path) -> None:
    saved = cli("save", "a fact the index will lose")
    assert saved.code == 0, saved.err
    import sqlite3

    try:  # drift: delete a row behind the projector's back (plain sqlite3 is enough for that)
        conn = sqlite3.connect(home / "index.db")
        conn.execute("DELETE FROM memory")
        conn.commit()
        conn.close()
    except sqlite3.Error as e:  # pragma: no cover - depends on the schema's virtual tables
        pytest.skip(f"cannot tamper with the index here: {e}")
    drift = cli("verify", "--json")
    assert drift.code == 1 and drift.json["ok"] is False and drift.json["differences"]
    assert cli("rebuild").code == 0
    assert cli("verify").code == 0


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["forget", "abc"], {}, 1, "at least 6"),
        (["forget", "ffffffffffffffff"], {}, 1, "no memory"),
        (["save", ""], {}, 1, "empty"),
        (["save", "x", "--importance", "11"], {}, 1, "1-10"),
        (["save", "x" * 101], {"MNEMOLOG_MAX_CONTENT_BYTES": "100"}, 1, "limit is 100 bytes"),
        (["save", "x", "--project", "../up"], {}, 2, "--project"),
        (["projects"], {"MNEMOLOG_PROJECT": "a/b"}, 2, "MNEMOLOG_PROJECT"),
        (["projects"], {"MNEMOLOG_EMBEDDER": "gpt"}, 2, "MNEMOLOG_EMBEDDER"),
        (["projects"], {"MNEMOLOG_HOME": "", "STORAGE_CONNECTION_STRING": "sqlite:///memory.db"}, 2,
         "STORAGE_CONNECTION_STRING"),
        (["projects"], {"MNEMOLOG_STORAGE": "redis://localhost:6379/db"}, 2, "MNEMOLOG_STORAGE"),
        (["search", "x", "--limit", "0"], {}, 1, "limit"),
        (["nonsense"], {}, 2, "invalid choice"),
        (["save"], {}, 2, "content"),
        (["search", "x", "--limit", "many"], {}, 2, "invalid int"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_codes(
    cli: Cli, log_bytes: Callable[[], dict[str, bytes]], args: list[str], env: dict[str, str], code: int,
    message: str,
) -> None:
    cli("save", "an existing memory")
    before = log_bytes()
    run = cli(*args, **env)
    assert run.code == code, run.err
    assert run.out == ""
    assert message in run.err
    if code == 1:
        assert run.err.count("\n") == 1 and run.err.startswith("mnemolog: error: ")
    assert log_bytes() == before


def test_serve_refuses_a_non_loopback_bind_without_a_token(cli: Cli) -> None:
    run = cli("serve", "--http", "--host", "0.0.0.0", "--port", "1")
    assert run.code == 2
    assert "MNEMOLOG_HTTP_TOKEN" in run.err and "0.0.0.0" in run.err


def test_every_command_has_help(cli: Cli) -> None:
    top = cli("--help")
    assert top.code == 0
    for command in ("serve", "save", "search", "forget", "context", "projects", "tags", "rebuild", "verify"):
        assert command in top.out
        sub = cli(command, "--help")
        assert sub.code == 0 and "--json" in sub.out and "--home" in sub.out


def test_progress_bar_redraws_one_line() -> None:
    import io

    from mcp_server.cli import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    for done in (0, 1, 5, 5, 10):
        bar.update(done, 10)
    bar.finish()
    frames = stream.getvalue().split("\r")[1:]
    assert frames[0] == "rebuilding [          ]   0%"
    assert frames[-1] == "rebuilding [##########] 100%\n"
    assert len(frames) == 4  # an unchanged percentage is not redrawn
