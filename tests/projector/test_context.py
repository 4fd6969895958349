"""Neighbour context (projector/context.py): the words a memory borrows from the memories
saved around it, kept equal to a replay whatever arrives or goes later."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from _projector_support import derived_problems

from eventlog import EventLog
from projector import Index
from projector.context import contexts_in_order, join_context, refresh_fulltext, span_contexts, windows
from projector.query import Filters, keyword_sql


def context_of(index: Index, project: str, memory_id: str) -> str:
    conn = index._connection()
    row = conn.execute(
        "SELECT f.context FROM memory_fts f JOIN memory m ON m.rowid = f.rowid"
        " WHERE m.project = ? AND m.memory_id = ?",
        (project, memory_id),
    ).fetchone()
    assert row is not None, "no full-text row"
    return str(row[0])


def save_all(log: EventLog, index: Index, contents: list[str], project: str = "acme") -> list[str]:
    ids = []
    for content in contents:
        ids.append(log.save(project, content))
        index.catch_up(project)  # one at a time, as the save path does
    return ids


# -- the pure rule ---------------------------------------------------------------------------


def test_contexts_in_order_take_up_to_radius_neighbours_on_each_side():
    assert contexts_in_order(["a", "b", "c", "d"], radius=1) == ["b", "a\nc", "b\nd", "c"]
    assert contexts_in_order(["a", "b", "c", "d"], radius=2) == ["b\nc", "a\nc\nd", "a\nb\nd", "b\nc"]
    assert contexts_in_order(["alone"]) == [""]
    assert contexts_in_order([]) == []


# -- the index keeps it ----------------------------------------------------------------------


def test_a_later_memory_rewrites_the_context_of_the_ones_before(log: EventLog, index: Index):
    first, second, third = save_all(log, index, ["one", "two", "three"])
    assert context_of(index, "acme", first) == join_context(["two", "three"])
    assert context_of(index, "acme", second) == join_context(["one", "three"])
    (fourth,) = save_all(log, index, ["four"])
    assert context_of(index, "acme", second) == join_context(["one", "three", "four"])
    assert context_of(index, "acme", fourth) == join_context(["two", "three"])
    assert derived_problems(index._connection(), vectors_expected=False) == []


def test_a_forget_closes_the_gap_and_a_save_after_it_reopens_it(log: EventLog, index: Index):
    ids = save_all(log, index, ["one", "two", "three", "four", "five"])
    log.forget("acme", ids[2])
    index.catch_up("acme")
    assert context_of(index, "acme", ids[1]) == join_context(["one", "four", "five"])
    assert context_of(index, "acme", ids[3]) == join_context(["one", "two", "five"])
    log.save("acme", "three")  # the same memory again: it keeps its place in the log
    index.catch_up("acme")
    assert context_of(index, "acme", ids[1]) == join_context(["one", "three", "four"])
    assert derived_problems(index._connection(), vectors_expected=False) == []


def test_projects_do_not_lend_each_other_context(log: EventLog, index: Index):
    (a,) = save_all(log, index, ["alpha note"], project="one")
    save_all(log, index, ["beta note"], project="two")
    assert context_of(index, "one", a) == ""


def test_incremental_saves_give_the_context_of_a_rebuild(log: EventLog, make_index: Any):
    live = make_index()
    ids = save_all(log, live, [f"note {i}" for i in range(9)])
    for memory_id in (ids[0], ids[4], ids[5]):
        log.forget("acme", memory_id)
        live.catch_up("acme")
    contexts = {m: context_of(live, "acme", m) for m in ids if m not in (ids[0], ids[4], ids[5])}
    live.rebuild()
    assert {m: context_of(live, "acme", m) for m in contexts} == contexts
    assert live.verify().ok


def test_verify_reports_a_stale_context(log: EventLog, index: Index):
    ids = save_all(log, index, ["one", "two"])
    conn = index._connection()
    conn.execute(
        "UPDATE memory_fts SET context = 'wrong' WHERE rowid = (SELECT rowid FROM memory WHERE memory_id = ?)",
        (ids[0],),
    )
    report = index.verify()
    assert not report.ok
    assert any("stale neighbour context" in d for d in report.differences)
    refresh_fulltext(conn, "acme", [ids[1]])  # the rewrite a neighbour's change would do
    assert index.verify().ok


# -- search uses it ----------------------------------------------------------------------------


def test_a_memory_is_found_by_its_neighbours_words_below_the_one_that_says_them(log: EventLog, index: Index):
    ids = save_all(log, index, ["we moved the billing service to Frankfurt", "yes, that one was slow", "lunch"])
    hits = [h.memory.id for h in index.search("billing Frankfurt", project="acme").hits]
    assert hits[:2] == ids[:2]


def test_a_word_of_its_own_ranks_the_memory_that_says_it_above_its_neighbours(log: EventLog, index: Index):
    """Also at the ends of the log, where a neighbour's row is shorter (fewer neighbours of its
    own) and bm25's length normalisation favours it. A context weight of 0.7 failed this."""
    ids = save_all(log, index, [f"Fact {n} from writer w{n % 3}: token t{n} was recorded." for n in range(8)])
    for n, memory_id in enumerate(ids):
        assert [h.memory.id for h in index.search(f"t{n}", project="acme", limit=1).hits] == [memory_id]


def test_context_weight_zero_leaves_the_context_out_of_matching(log: EventLog, index: Index):
    ids = save_all(log, index, ["we moved the billing service to Frankfurt", "yes, that one was slow"])
    index.tuning = replace(index.tuning, context_weight=0.0)
    assert [h.memory.id for h in index.search("billing Frankfurt", project="acme").hits] == ids[:1]


def test_a_word_over_the_budget_with_the_context_is_matched_in_the_memories_own_words(log: EventLog, index: Index):
    ids = save_all(log, index, ["billing moved to Frankfurt", "yes, that one was slow", "lunch", "billing is monthly"])
    everywhere = {h.memory.id for h in index.search("billing", project="acme").hits}
    assert everywhere == set(ids)  # two say it, the two between them have it in their context
    index.tuning = replace(index.tuning, keyword_budget=3)  # 4 rows with the context, 2 without
    assert {h.memory.id for h in index.search("billing", project="acme").hits} == {ids[0], ids[3]}
    index.tuning = replace(index.tuning, keyword_budget=1)  # over the budget either way: still own words
    assert {h.memory.id for h in index.search("billing", project="acme").hits} == {ids[0], ids[3]}


def test_an_index_within_the_budget_matches_every_word_without_counting(log: EventLog, index: Index, monkeypatch):
    ids = save_all(log, index, ["billing moved to Frankfurt", "yes, that one was slow", "lunch", "billing is monthly"])
    # With the context (the neighbours' words), billing is in all 4 rows and Frankfurt in the
    # first 3. Under a budget of 3 rows only the rarer word fits; the index's 4 rows are over it.
    index.tuning = replace(index.tuning, keyword_budget=3)
    assert {h.memory.id for h in index.search("billing Frankfurt", project="acme").hits} == set(ids[:3])
    # Within a budget of 4 the words' counts (7 together) are not asked: both are matched.
    index.tuning = replace(index.tuning, keyword_budget=4)
    from projector import hybrid

    def no_counting(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an index of 4 rows counted words against a budget of 4")

    monkeypatch.setattr(hybrid, "_within_budget", no_counting)
    assert {h.memory.id for h in index.search("billing Frankfurt", project="acme").hits} == set(ids)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_keyword_sql_weights_the_context_column(weight: float):
    sql, params = keyword_sql('"x"', Filters("p"), 10, context_weight=weight)
    assert f"rank MATCH 'bm25(1.0, 0.5, {weight!r})'" in sql
    assert params[0] == ('{content tags} : ("x")' if weight == 0 else '"x"')


# -- scores do not depend on what else this process has indexed ------------------------------


def test_search_scores_do_not_depend_on_which_projects_were_caught_up(log: EventLog, make_index: Any) -> None:
    # FTS5 keeps bm25 statistics over the whole table: if a search caught up only its own
    # project, its scores would change once another project's memories arrived in the index.
    for i in range(12):
        log.save("acme", f"database choice {i} is postgres" if i % 3 else f"coffee machine note {i}")
        log.save("beta", f"database budget review {i}")
    fresh = make_index()  # nothing indexed: the search catches up
    first = [(h.memory.id, h.score) for h in fresh.search("database choice", project="acme").hits]
    everything = make_index()
    everything.catch_up()  # both projects indexed before the search
    second = [(h.memory.id, h.score) for h in everything.search("database choice", project="acme").hits]
    assert first and first == second


# -- spans: what a batch rewrites equals what a replay computes ------------------------------


@given(
    contents=st.lists(st.text(alphabet="abc", max_size=3), max_size=30),
    bounds=st.tuples(st.integers(0, 29), st.integers(0, 29)),
    radius=st.integers(1, 3),
)
def test_a_span_with_twice_the_radius_around_it_gives_the_replays_contexts(contents, bounds, radius):
    rows = list(enumerate(contents))
    first, last = sorted(b % max(1, len(rows)) for b in bounds)
    before = rows[max(0, first - 2 * radius) : first]
    inside, after = rows[first : last + 1], rows[last + 1 : last + 1 + 2 * radius]
    replay = contexts_in_order(contents, radius)
    got = span_contexts(before, inside, after, radius)
    affected = range(max(0, first - radius), min(len(rows), last + 1 + radius))
    assert set(got) == (set(affected) if inside else set(got))
    assert all(got[i] == replay[i] for i in got)


def test_windows_split_changes_far_apart():
    assert windows([]) == []
    assert windows([3, 5, 9], gap=4) == [(3, 9)]
    assert windows([3, 5, 100, 101], gap=4) == [(3, 5), (100, 101)]
