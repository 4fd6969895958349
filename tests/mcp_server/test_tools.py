"""Tool logic through the SDK's in-memory client: results, errors, isolation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog, compute_memory_id

Session = Any  # conftest.Session (conftest modules are not importable by name)

TOOLS = {
    "save_context", "load_contexts", "search_contexts", "update_context", "forget_context",
    "list_all_projects", "get_popular_tags",
}
MEMORY_KEYS = {"id", "project_id", "content", "tags", "importance", "kind", "created_at", "updated_at"}


# -- the tool list --------------------------------------------------------------------------


def test_tools_are_listed_with_schemas_and_honest_annotations(mcp: Session) -> None:
    tools = {t.name: t for t in mcp.list_tools().tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema and tool.annotations
        assert tool.annotations.open_world_hint is False
    read_only = {"load_contexts", "search_contexts", "list_all_projects", "get_popular_tags"}
    for name in read_only:
        assert tools[name].annotations.read_only_hint is True
    for name in TOOLS - read_only:
        assert tools[name].annotations.read_only_hint is False
    assert tools["save_context"].annotations.destructive_hint is False
    assert tools["save_context"].annotations.idempotent_hint is True
    assert tools["forget_context"].annotations.destructive_hint is True
    assert tools["update_context"].annotations.destructive_hint is True
    save = tools["save_context"].input_schema
    assert save["required"] == ["content"]
    assert set(save["properties"]) == {"content", "importance_level", "tags", "project_id"}
    assert save["properties"]["importance_level"]["default"] == 5
    search = tools["search_contexts"].input_schema["properties"]
    assert set(search) == {"query", "project_id", "limit", "tags_filter", "since", "until", "min_importance"}
    load = tools["load_contexts"].input_schema["properties"]
    assert set(load) == {"project_id", "importance_level", "limit", "tags_filter"}
    assert load["importance_level"]["default"] is None and load["limit"]["default"] == 30


def test_instructions_say_when_to_load_and_what_to_save(mcp: Session) -> None:
    text = mcp.client.instructions or ""
    assert "load_contexts" in text and "start" in text
    assert "decisions" in text and "preferences" in text and "state of the work" in text


# -- save and load --------------------------------------------------------------------------


def test_default_save_is_returned_by_default_load(mcp: Session) -> None:
    saved = mcp.ok("save_context", content="The team prefers tabs over spaces.")
    assert saved["project_id"] == "general" and saved["created"] is True and len(saved["id"]) == 16
    loaded = mcp.ok("load_contexts")
    assert loaded["project_id"] == "general" and loaded["total"] == 1
    [memory] = loaded["contexts"]
    assert set(memory) == MEMORY_KEYS
    assert memory["id"] == saved["id"] and memory["content"] == "The team prefers tabs over spaces."
    assert memory["importance"] == 5 and memory["tags"] == [] and memory["kind"] is None
    assert memory["created_at"].endswith("Z")


def test_a_result_carries_a_readable_text_as_well(mcp: Session) -> None:
    saved = mcp.ok("save_context", content="Releases happen on Tuesdays.", tags=["process"])
    result = mcp.call("load_contexts")
    text = result.content[0].text
    assert "Releases happen on Tuesdays." in text and saved["id"][:8] in text and "#process" in text


def test_saving_the_same_content_again_is_idempotent(mcp: Session, log_bytes: Callable[[], dict[str, bytes]]) -> None:
    first = mcp.ok("save_context", content="Use PostgreSQL 16.", tags=["db"], importance_level=7)
    before = log_bytes()
    again = mcp.ok("save_context", content="Use PostgreSQL 16.", tags=["db"], importance_level=7)
    assert again == {**first, "created": False}
    assert log_bytes() == before  # a retried save writes nothing
    changed = mcp.ok("save_context", content="Use PostgreSQL 16.", tags=["db", "infra"], importance_level=7)
    assert changed["id"] == first["id"] and changed["created"] is False
    [memory] = mcp.ok("load_contexts")["contexts"]
    assert memory["tags"] == ["db", "infra"]


def test_saving_again_with_default_arguments_keeps_the_tags_and_importance(
    mcp: Session, log_bytes: Callable[[], dict[str, bytes]],
) -> None:
    first = mcp.ok("save_context", content="Backups run at 02:00 UTC.", tags=["ops", "backup"], importance_level=8)
    before = log_bytes()
    again = mcp.ok("save_context", content="Backups run at 02:00 UTC.")
    assert again == {**first, "created": False}
    assert log_bytes() == before  # nothing the memory lacks: nothing to write
    more = mcp.ok("save_context", content="Backups run at  02:00 UTC.", tags=["OPS", "cron"], importance_level=3)
    assert more == {**first, "created": False}
    [memory] = mcp.ok("load_contexts")["contexts"]
    assert memory["tags"] == ["ops", "backup", "cron"] and memory["importance"] == 8
    mcp.ok("update_context", context_id=first["id"], tags=["cron"], importance_level=2)  # the way to take away
    [memory] = mcp.ok("load_contexts")["contexts"]
    assert memory["tags"] == ["cron"] and memory["importance"] == 2


def test_updating_to_another_memorys_content_leaves_both_as_they_were(mcp: Session) -> None:
    kept = mcp.ok("save_context", content="Beta fact.", tags=["b"], importance_level=9)
    other = mcp.ok("save_context", content="Alpha fact.", tags=["a"], importance_level=3)
    message = mcp.error("update_context", context_id=other["id"], content="Beta fact.")
    assert kept["id"] in message and other["id"] in message
    memories = {m["id"]: m for m in mcp.ok("load_contexts")["contexts"]}
    assert (memories[kept["id"]]["tags"], memories[kept["id"]]["importance"]) == (["b"], 9)
    assert (memories[other["id"]]["tags"], memories[other["id"]]["importance"]) == (["a"], 3)


def test_a_date_before_the_year_1000_is_a_bound_like_any_other(mcp: Session) -> None:
    saved = mcp.ok("save_context", content="Dates before 1000 still sort.")
    assert [r["id"] for r in mcp.ok("search_contexts", query="dates sort", since="0999-01-01")["results"]] == [saved["id"]]
    assert mcp.ok("search_contexts", query="dates sort", until="0999-01-01")["results"] == []


def test_tags_may_be_a_comma_separated_string(mcp: Session) -> None:
    mcp.ok("save_context", content="Deploys go through ArgoCD.", tags="ops, deploy")
    [memory] = mcp.ok("load_contexts")["contexts"]
    assert memory["tags"] == ["ops", "deploy"]


def test_load_orders_by_importance_then_recency_and_filters(mcp: Session) -> None:
    for n, importance in enumerate([3, 9, 5, 9]):
        mcp.ok("save_context", content=f"fact number {n}", importance_level=importance, tags=["odd" if n % 2 else "even"])
    loaded = mcp.ok("load_contexts")
    assert [m["content"] for m in loaded["contexts"]] == ["fact number 3", "fact number 1", "fact number 2",
                                                          "fact number 0"]
    assert loaded["total"] == 4
    important = mcp.ok("load_contexts", importance_level=6)
    assert [m["importance"] for m in important["contexts"]] == [9, 9] and important["total"] == 2
    assert len(mcp.ok("load_contexts", limit=1)["contexts"]) == 1
    tagged = mcp.ok("load_contexts", tags_filter=["even"])
    assert {m["content"] for m in tagged["contexts"]} == {"fact number 0", "fact number 2"}


def test_mnemolog_project_pins_the_default_project(connect: Callable[..., Session]) -> None:
    pinned = connect(MNEMOLOG_PROJECT="acme")
    saved = pinned.ok("save_context", content="Acme ships on Mondays.")
    assert saved["project_id"] == "acme"
    assert pinned.ok("load_contexts")["project_id"] == "acme"
    assert pinned.ok("load_contexts", project_id="general")["total"] == 0


def test_project_ids_are_lower_cased_not_refused(mcp: Session) -> None:
    saved = mcp.ok("save_context", content="Mixed case project.", project_id="Acme")
    assert saved["project_id"] == "acme"
    assert mcp.ok("load_contexts", project_id="ACME")["total"] == 1


# -- search ---------------------------------------------------------------------------------


def test_search_finds_by_words_and_returns_scores(mcp: Session) -> None:
    target = mcp.ok("save_context", content="The payment service retries webhooks three times.")
    mcp.ok("save_context", content="Lunch is at noon.")
    found = mcp.ok("search_contexts", query="webhooks retries")
    assert found["mode"] == "keyword" and "warning" in found  # MNEMOLOG_EMBEDDER=none
    # The memory holding the words comes first; its neighbour may follow, found through the
    # neighbour context of the keyword index (projector/context.py), with a lower score.
    first, *rest = found["results"]
    assert first["id"] == target["id"] and all(r["score"] < first["score"] for r in rest)
    assert set(first) == MEMORY_KEYS | {"score"}


def test_search_filters_by_tags_importance_and_time(mcp: Session, home: Path) -> None:
    a = mcp.ok("save_context", content="alpha deploy checklist", tags=["ops"], importance_level=8)
    b = mcp.ok("save_context", content="alpha design notes", tags=["design"], importance_level=3)

    def ids(**filters: Any) -> set[str]:
        return {r["id"] for r in mcp.ok("search_contexts", query="alpha", **filters)["results"]}

    assert ids() == {a["id"], b["id"]}
    assert ids(tags_filter=["ops"]) == {a["id"]}
    assert ids(min_importance=5) == {a["id"]}
    assert ids(since="today") == {a["id"], b["id"]}
    assert ids(since="1 hour ago", until="now") == {a["id"], b["id"]}
    assert ids(until="yesterday") == set()
    assert ids(since="2000-01-01", until="2000-12-31") == set()
    assert ids(since="last week") == {a["id"], b["id"]}


def test_search_limit(mcp: Session) -> None:
    for n in range(5):
        mcp.ok("save_context", content=f"kiwi fact {n}")
    assert len(mcp.ok("search_contexts", query="kiwi", limit=2)["results"]) == 2


# -- update and forget ----------------------------------------------------------------------


def test_update_content_gives_a_new_id_and_forgets_the_old(mcp: Session) -> None:
    old = mcp.ok("save_context", content="The API is v1.", tags=["api"], importance_level=6)
    updated = mcp.ok("update_context", context_id=old["id"][:6], content="The API is v2.")
    assert updated["previous_id"] == old["id"] and updated["id"] != old["id"] and updated["changed"] is True
    [memory] = mcp.ok("load_contexts")["contexts"]
    assert memory["id"] == updated["id"] and memory["content"] == "The API is v2."
    assert memory["tags"] == ["api"] and memory["importance"] == 6  # kept
    assert mcp.ok("search_contexts", query="API")["results"][0]["id"] == updated["id"]
    assert "no memory" in mcp.error("forget_context", context_id=old["id"])


def test_update_of_tags_or_importance_keeps_the_id(mcp: Session) -> None:
    old = mcp.ok("save_context", content="Staging is on Fly.io.")
    updated = mcp.ok("update_context", context_id=old["id"], tags=["infra"], importance_level=9)
    assert updated["id"] == old["id"] and updated["changed"] is True
    [memory] = mcp.ok("load_contexts")["contexts"]
    assert memory["tags"] == ["infra"] and memory["importance"] == 9
    same = mcp.ok("update_context", context_id=old["id"], importance_level=9)
    assert same["changed"] is False


def test_forget_removes_the_memory_everywhere(mcp: Session) -> None:
    keep = mcp.ok("save_context", content="Keep this zebra fact.", tags=["zoo"])
    drop = mcp.ok("save_context", content="Drop this zebra fact.", tags=["tmp"])
    gone = mcp.ok("forget_context", context_id=drop["id"][:7])
    assert gone == {"id": drop["id"], "project_id": "general", "forgotten": True}
    assert [m["id"] for m in mcp.ok("load_contexts")["contexts"]] == [keep["id"]]
    assert [r["id"] for r in mcp.ok("search_contexts", query="zebra")["results"]] == [keep["id"]]
    assert [t["tag"] for t in mcp.ok("get_popular_tags")["tags"]] == ["zoo"]
    assert "no memory" in mcp.error("forget_context", context_id=drop["id"])


def test_a_forgotten_memory_saved_again_comes_back(mcp: Session) -> None:
    saved = mcp.ok("save_context", content="Phoenix fact.")
    mcp.ok("forget_context", context_id=saved["id"])
    again = mcp.ok("save_context", content="Phoenix fact.")
    assert again == {**saved, "created": True}
    assert mcp.ok("load_contexts")["total"] == 1


def test_an_ambiguous_prefix_is_refused_and_a_longer_one_works(mcp: Session) -> None:
    seen: dict[str, str] = {}
    for n in range(1_000_000):  # two contents whose ids share their first 6 hex digits
        content = f"collision candidate {n}"
        memory_id = compute_memory_id("prefix", content)
        if memory_id[:6] in seen:
            break
        seen[memory_id[:6]] = content
    first = mcp.ok("save_context", content=seen[memory_id[:6]], project_id="prefix")
    second = mcp.ok("save_context", content=content, project_id="prefix")
    assert first["id"][:6] == second["id"][:6] == memory_id[:6]
    message = mcp.error("forget_context", context_id=memory_id[:6], project_id="prefix")
    assert "several" in message and "more characters" in message
    distinct = next(i for i in range(7, 17) if first["id"][:i] != second["id"][:i])
    assert mcp.ok("forget_context", context_id=second["id"][:distinct], project_id="prefix")["id"] == second["id"]
    assert [m["id"] for m in mcp.ok("load_contexts", project_id="prefix")["contexts"]] == [first["id"]]


# -- projects and tags ----------------------------------------------------------------------


def test_list_all_projects_counts_memories_and_last_activity(mcp: Session) -> None:
    assert mcp.ok("list_all_projects") == {"projects": []}
    mcp.ok("save_context", content="one", project_id="alpha")
    mcp.ok("save_context", content="two", project_id="alpha")
    last = mcp.ok("save_context", content="three", project_id="beta")
    projects = {p["project_id"]: p for p in mcp.ok("list_all_projects")["projects"]}
    assert {k: v["memories"] for k, v in projects.items()} == {"alpha": 2, "beta": 1}
    [beta] = mcp.ok("load_contexts", project_id="beta")["contexts"]
    assert projects["beta"]["last_activity"] == beta["updated_at"] and last["created"]


def test_popular_tags_by_use(mcp: Session) -> None:
    mcp.ok("save_context", content="a", tags=["x", "y"])
    mcp.ok("save_context", content="b", tags=["x"])
    mcp.ok("save_context", content="c", tags=["x", "z"])
    tags = mcp.ok("get_popular_tags")
    assert tags["project_id"] == "general"
    assert tags["tags"][0] == {"tag": "x", "count": 3}
    assert {t["tag"] for t in mcp.ok("get_popular_tags", min_usage=2)["tags"]} == {"x"}
    assert len(mcp.ok("get_popular_tags", limit=1)["tags"]) == 1


# -- isolation ------------------------------------------------------------------------------


def test_nothing_of_project_a_is_returned_for_project_b(mcp: Session, log_bytes: Callable[[], dict[str, bytes]]) -> None:
    a = mcp.ok("save_context", content="secret apple roadmap", tags=["roadmap"], importance_level=9,
               project_id="a")
    mcp.ok("save_context", content="banana plan", tags=["plan"], project_id="b")
    assert mcp.ok("search_contexts", query="apple roadmap", project_id="b")["results"] == []
    assert [m["content"] for m in mcp.ok("load_contexts", project_id="b")["contexts"]] == ["banana plan"]
    assert mcp.ok("load_contexts", project_id="b")["total"] == 1
    assert [t["tag"] for t in mcp.ok("get_popular_tags", project_id="b")["tags"]] == ["plan"]
    assert mcp.ok("search_contexts", query="apple")["results"] == []  # nor for the default project
    before = log_bytes()
    for prefix in (a["id"], a["id"][:6]):
        assert "no memory" in mcp.error("forget_context", context_id=prefix, project_id="b")
        assert "no memory" in mcp.error("update_context", context_id=prefix, content="x", project_id="b")
    assert log_bytes() == before
    assert mcp.ok("load_contexts", project_id="a")["total"] == 1


# -- bad input: a tool error saying what to fix, and nothing written -----------------------

BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("save_context", {}, "content"),
    ("save_context", {"content": 123}, "string"),
    ("save_context", {"content": ""}, "empty"),
    ("save_context", {"content": "   \n"}, "empty"),
    ("save_context", {"content": "x", "importance_level": 11}, "10"),
    ("save_context", {"content": "x", "importance_level": 0}, "1"),
    ("save_context", {"content": "x", "importance_level": "high"}, "integer"),
    ("save_context", {"content": "x", "tags": 5}, "tags"),
    ("save_context", {"content": "x", "tags": ["a" * 65]}, "64"),
    ("save_context", {"content": "x", "tags": [f"t{i}" for i in range(33)]}, "32"),
    ("save_context", {"content": "x", "project_id": "../x"}, ".."),
    ("save_context", {"content": "x", "project_id": "a/b"}, "separator"),
    ("save_context", {"content": "x", "project_id": "con"}, "reserved"),
    ("save_context", {"content": "x", "project_id": "-x"}, "[a-z0-9]"),
    ("save_context", {"content": "x", "project_id": 7}, "string"),
    ("save_context", {"content": "x" * 2001}, "limit is 2000 bytes"),
    ("save_context", {"content": "bad\x00byte"}, "NUL"),
    ("load_contexts", {"project_id": "../etc"}, ".."),
    ("load_contexts", {"limit": 0}, "1"),
    ("load_contexts", {"limit": "many"}, "integer"),
    ("load_contexts", {"importance_level": 12}, "10"),
    ("search_contexts", {}, "query"),
    ("search_contexts", {"query": ""}, "empty"),
    ("search_contexts", {"query": "x", "limit": 0}, "1"),
    ("search_contexts", {"query": "x", "limit": 1000}, "100"),
    ("search_contexts", {"query": "x", "since": "the day after never"}, "yesterday"),
    ("search_contexts", {"query": "x", "until": "soonish"}, "last week"),
    ("search_contexts", {"query": "x", "since": "today", "until": "yesterday"}, "not before"),
    ("search_contexts", {"query": "x", "project_id": ".."}, ".."),
    ("search_contexts", {"query": "x", "min_importance": 0}, "1"),
    ("forget_context", {}, "context_id"),
    ("forget_context", {"context_id": "abc"}, "at least 6"),
    ("forget_context", {"context_id": "not-hex!"}, "at least 6"),
    ("forget_context", {"context_id": "0123456789abcdef0"}, "16"),
    ("forget_context", {"context_id": "ffffffffffffffff"}, "no memory"),
    ("forget_context", {"context_id": "ffffff"}, "no memory"),
    ("forget_context", {"context_id": 123456}, "string"),
    ("update_context", {"context_id": "ffffffffffffffff", "content": "x"}, "no memory"),
    ("update_context", {"context_id": "SAVED"}, "nothing to update"),
    ("update_context", {"context_id": "SAVED", "content": ""}, "empty"),
    ("update_context", {"context_id": "SAVED", "importance_level": 99}, "10"),
    ("update_context", {"context_id": "SAVED", "tags": [""]}, "tag"),
    ("update_context", {"context_id": "SAVED", "content": "y" * 2001}, "limit"),
    ("get_popular_tags", {"limit": 0}, "1"),
    ("get_popular_tags", {"min_usage": 0}, "1"),
    ("get_popular_tags", {"project_id": "a b"}, "invalid"),
    # true and false are not numbers here (pydantic alone would read them as 1 and 0)
    ("save_context", {"content": "x", "importance_level": True}, "true or false"),
    ("update_context", {"context_id": "SAVED", "importance_level": True}, "true or false"),
    ("load_contexts", {"limit": True}, "true or false"),
    ("search_contexts", {"query": "x", "limit": False}, "true or false"),
    ("search_contexts", {"query": "x", "min_importance": True}, "true or false"),
    ("get_popular_tags", {"min_usage": True}, "true or false"),
    # new content that another memory already holds
    ("update_context", {"context_id": "SAVED", "content": "Another existing memory."}, "already has that content"),
]


@pytest.mark.parametrize(("tool", "arguments", "hint"), BAD_CALLS, ids=[f"{t}-{i}" for i, (t, *_) in
                                                                           enumerate(BAD_CALLS)])
def test_bad_input_is_a_tool_error_that_says_what_to_fix_and_writes_nothing(
    connect: Callable[..., Session], log_bytes: Callable[[], dict[str, bytes]], tool: str,
    arguments: dict[str, Any], hint: str,
) -> None:
    mcp = connect(MNEMOLOG_MAX_CONTENT_BYTES="2000")
    saved = mcp.ok("save_context", content="An existing memory.")
    mcp.ok("save_context", content="Another existing memory.")
    arguments = {k: saved["id"] if v == "SAVED" else v for k, v in arguments.items()}
    before = log_bytes()
    message = mcp.error(tool, **arguments)
    assert message.startswith(f"Error executing tool {tool}: ")
    assert hint.lower() in message.lower(), message
    assert log_bytes() == before
    assert mcp.ok("load_contexts")["total"] == 2  # the server is still fine


def test_bad_input_never_creates_a_project_log(mcp: Session, home: Path) -> None:
    mcp.error("save_context", content="", project_id="fresh")
    mcp.error("save_context", content="x", project_id="../../escape")
    assert not (home / "logs" / "fresh.jsonl").exists()
    assert not (home.parent / "escape.jsonl").exists()


def test_the_log_records_the_client_name(mcp: Session, home: Path) -> None:
    mcp.ok("save_context", content="Who wrote me?")
    [event] = list(EventLog(home).read("general"))
    assert event.actor.client  # the in-memory client's name, or the service default
    assert event.actor.pid is not None


def test_a_store_that_cannot_be_written_is_a_tool_error_that_names_the_cause(
    connect: Callable[..., Session], tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    mcp = connect(MNEMOLOG_HOME=str(blocker / "store"))
    message = mcp.error("save_context", content="Where does this go?")
    assert "could not be read or written" in message and "a-file" in message, message
    assert blocker.read_text() == "not a directory"
