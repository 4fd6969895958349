"""Search: the pure helpers (fusion, FTS quoting, query builders) with literals, then the
behaviour of ``Index`` reads on a real store (keyword and hybrid modes)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _projector_support import FakeEmbedder, all_events, diff_rows, fold_rows, index_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import EventLog, MemorySaved, compute_memory_id, encode_event
from projector import AmbiguousId, Index, InvalidQuery, MemoryNotFound, db
from projector.query import (
    Filters,
    coarse_vector_sql,
    context_sql,
    any_forgotten_sql,
    count_sql,
    empty_gaps_sql,
    epoch_ms,
    filter_sql,
    keyword_sql,
    prefix_sql,
    present_bound_sql,
    ranking_fields_sql,
    rescore_sql,
)
from projector.schema import TABLES, vector_table_sql
from projector.search import (
    CODE_DISTANCE_RUNGS,
    CODES_WITHIN_RUNG,
    affordable_terms,
    boost_tagged,
    code_distance_caps,
    first_cap_step,
    fts_match_expression,
    fuse_scores,
    keyword_terms,
    min_max,
    rank,
    smooth_with_neighbours,
    gaps_to_check,
    next_neighbours,
    MAX_EDIT_RUN,
)

# -- score fusion, neighbours, tags ---------------------------------------------------------


def test_min_max_scales_to_unit_range_and_single_candidates_to_one():
    assert min_max({1: 2.0, 2: 4.0, 3: 3.0}) == {1: 0.0, 2: 1.0, 3: 0.5}
    assert min_max({7: -3.0}) == {7: 1.0}
    assert min_max({}) == {}


def test_fuse_scores_is_a_convex_combination_of_scaled_sides():
    fused = fuse_scores({1: 10.0, 2: 0.0}, {2: 0.9, 3: 0.1}, keyword_weight=0.25)
    assert fused == {1: 0.25, 2: 0.75, 3: 0.0}


def test_fuse_scores_without_vectors_is_the_scaled_keyword_side():
    assert fuse_scores({1: 5.0, 2: 1.0}, None, keyword_weight=0.5) == {1: 1.0, 2: 0.0}


def test_neighbours_lend_part_of_their_score():
    scores = {10: 1.0, 11: 0.5, 20: 0.2}
    next_of = next_neighbours({10: 4, 11: 5, 20: 9}, empty_gaps=set())
    assert next_of == {10: 11}
    smoothed = smooth_with_neighbours(scores, next_of, weight=0.5)
    assert smoothed == {10: 1.0 + 0.25, 11: 0.5 + 0.5, 20: 0.2}
    assert smooth_with_neighbours(scores, next_of, weight=0) == scores


def test_memories_with_only_edits_between_them_are_neighbours():
    seq = {10: 4, 11: 5, 20: 9, 30: 60}
    assert gaps_to_check(seq) == [(5, 9)]  # 9 -> 60: more lines between than edits can explain
    assert next_neighbours(seq, empty_gaps={(5, 9)}) == {10: 11, 11: 20}
    assert next_neighbours(seq, empty_gaps=set()) == {10: 11}


@given(st.dictionaries(st.integers(1, 50), st.integers(1, 200), max_size=30))
def test_each_memory_has_at_most_one_neighbour_on_each_side(seq: dict[int, int]):
    seq = {rowid: position for rowid, position in seq.items() if list(seq.values()).count(position) == 1}
    next_of = next_neighbours(seq, set(gaps_to_check(seq)))
    assert len(set(next_of.values())) == len(next_of)
    assert all(seq[a] < seq[b] <= seq[a] + MAX_EDIT_RUN + 1 for a, b in next_of.items())
    assert all(not (seq[a] < position < seq[b]) for a, b in next_of.items() for position in seq.values())


def test_tagged_memories_are_boosted():
    assert boost_tagged({1: 0.1, 2: 0.3}, {1, 7}, 0.5) == {1: 0.6, 2: 0.3}


def test_rank_orders_by_score_then_rowid_and_cuts_at_limit():
    assert rank({5: 0.5, 3: 0.5, 9: 0.9, 1: 0.1}, 3) == [(9, 0.9), (3, 0.5), (5, 0.5)]


# -- keyword terms and FTS5 match expressions ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", '"hello" OR "world"'),
        ("what is the sqlite version", '"sqlite" OR "version"'),
        ("the of", '"the" OR "of"'),  # only stopwords: keep them rather than match nothing
        ("sqlite SQLite sqlite", '"sqlite"'),
        ('say "hi" NEAR(x b)', '"say" OR "hi" OR "near" OR "x" OR "b"'),
        ("col:value -minus star* ^caret", '"col" OR "value" OR "minus" OR "star" OR "caret"'),
        ("café naïve", '"café" OR "naïve"'),
        ("", None),
        ("  ?!* -- \"' ", None),
    ],
)
def test_fts_match_expression(text: str, expected: str | None):
    assert fts_match_expression(text) == expected


def test_keyword_terms_lower_case_in_first_seen_order():
    assert keyword_terms("Zeta alpha ZETA beta") == ["zeta", "alpha", "beta"]


def test_keyword_terms_leave_out_what_contractions_and_possessives_leave_behind():
    assert keyword_terms("Caroline's sister didn't like it, she'd said") == ["caroline", "sister", "like", "said"]
    assert keyword_terms("Don won the cup") == ["don", "won", "cup"]  # a name and a word, kept


@pytest.fixture(scope="module")
def fts_conn():
    conn = db.connect(":memory:", wal=False)
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(content, tags, tokenize = 'porter unicode61 remove_diacritics 2')")
    conn.execute("INSERT INTO t VALUES ('the quick brown fox near the river', 'animals')")
    yield conn
    conn.close()


NASTY = [
    'a"b', '"', '""', "'", "NEAR(quick fox)", "quick NEAR fox", "fox*", "*", "-fox", "content:fox",
    "tags:animals", "AND", "OR NOT", "NOT fox", "^quick", "(((", ")", "{content tags}: fox",
    "a + b", "fox AND", "\\", "quick\x00fox", "🦊 fox", "fox OR", "NEAR", "near/2",
]


@pytest.mark.parametrize("text", NASTY)
def test_no_fts_syntax_injection(fts_conn, text: str):
    match = fts_match_expression(text)
    if match is not None:
        fts_conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()


def test_quoted_terms_still_find_words(fts_conn):
    rows = fts_conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (fts_match_expression('"fox" -NEAR*'),)).fetchall()
    assert rows == [(1,)]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_a_valid_match_expression(fts_conn, text: str):
    match = fts_match_expression(text)
    if match is not None:
        fts_conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()


# -- query builders ------------------------------------------------------------------------


def test_filter_sql_project_only():
    assert filter_sql(Filters("acme")) == ("m.project = ?", ["acme"])


def test_filter_sql_every_filter_lower_cases_tags():
    sql, params = filter_sql(Filters("acme", ("Arch", "DB"), 7, "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"), "x")
    assert sql == (
        "x.project = ? AND x.importance >= ? AND x.created_at >= ? AND x.created_at < ? AND "
        "x.rowid IN (SELECT memory_rowid FROM memory_tag WHERE project = ? AND tag IN (?, ?))"
    )
    assert params == ["acme", 7, "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z", "acme", "arch", "db"]


def test_keyword_sql_filters_inside_the_candidate_query():
    sql, params = keyword_sql('"fox"', Filters("acme", ("t",), 3), 50)
    assert "memory_fts MATCH ?" in sql and "m.present = 1" in sql and "m.importance >= ?" in sql
    assert "tag IN (?)" in sql and sql.endswith("LIMIT ?")
    assert params == ['"fox"', "acme", 3, "acme", "t", 50]


def test_coarse_vector_sql_filters_inside_the_knn():
    sql, params = coarse_vector_sql(b"v", Filters("acme", ("T",), 3, "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.5Z"), 400, 140)
    assert "code MATCH vec_quantize_binary(vec_f32(?)) AND k = ?" in sql
    assert "project = ?" in sql and "importance >= ?" in sql
    assert "created_ms >= ?" in sql and "created_ms < ?" in sql and sql.endswith("distance <= ?")
    assert "rowid IN (SELECT memory_rowid FROM memory_tag WHERE project = ? AND tag IN (?))" in sql
    assert params == [b"v", 400, "acme", 3, 1000, 2500, "acme", "t", 140]
    sql, params = coarse_vector_sql(b"v", Filters("acme"), 400, None)
    assert "distance" not in sql and params == [b"v", 400, "acme"]


def test_rescore_sql_takes_the_candidates_as_one_json_list():
    sql, params = rescore_sql(b"v", [3, 1, 2], 2)
    assert "vec_distance_cosine(vector, ?)" in sql and "json_each(?)" in sql
    assert params == [b"v", "[3,1,2]", 2]


def test_epoch_ms_orders_as_the_iso_texts_do():
    assert epoch_ms("1970-01-01T00:00:00.000Z") == 0
    assert epoch_ms("2026-11-22T03:15:47.410Z") == 1795317347410
    assert epoch_ms("2026-11-22T04:15:47.410+01:00") == 1795317347410
    assert epoch_ms("1970-01-01T00:00:00.000100Z") == 1  # rounded up: x >= 0.1 ms iff x >= 1


UTC_TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(UTC_TIMES, UTC_TIMES)
def test_epoch_ms_keeps_the_time_filters_meaning(stored, bound):
    """A stored ``created_at`` (whole milliseconds, ``Z``) passes ``>= since`` and ``< until``
    in integers exactly when its moment is at or after (before) the bound's, which may carry
    microseconds."""
    stored = stored.replace(microsecond=stored.microsecond // 1000 * 1000)
    created = stored.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stored.microsecond // 1000:03d}Z"
    since = bound.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert (epoch_ms(created) >= epoch_ms(since)) == (stored >= bound)
    assert (epoch_ms(created) < epoch_ms(since)) == (stored < bound)


def test_affordable_terms_keep_the_rarest_within_the_budget_in_query_order():
    counts = {"service": 30_000, "terraform": 900, "billing": 1500, "choose": 5000}
    assert affordable_terms(counts, 3000) == ["terraform", "billing"]
    assert affordable_terms(counts, 100_000) == list(counts)
    assert affordable_terms(counts, 10) == ["terraform"]  # the rarest one even over the budget
    assert affordable_terms({"nothing": 0, "seen": 4}, 1) == ["seen"]
    assert affordable_terms({"nothing": 0}, 100) == []


@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 50), max_size=6), st.integers(0, 120))
def test_affordable_terms_invariants(counts, budget):
    kept = affordable_terms(counts, budget)
    matching = [t for t, n in counts.items() if n > 0]
    assert kept == [t for t in matching if t in kept]  # query order, only terms that match
    assert bool(kept) == bool(matching)
    if len(kept) > 1:
        assert sum(counts[t] for t in kept) <= budget
    dropped = set(matching) - set(kept)
    assert all(counts[d] >= max(counts[k] for k in kept) for d in dropped)  # commonest go first


@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 50), max_size=6), st.integers(0, 120))
def test_counts_capped_just_over_the_budget_keep_the_same_terms_when_those_fit(counts, budget):
    kept = affordable_terms(counts, budget)
    capped = {t: min(n, budget + 1) for t, n in counts.items()}
    if sum(counts[t] for t in kept) <= budget:
        assert affordable_terms(capped, budget) == kept
    else:  # even the rarest is over the budget: the capped counts say so too
        assert sum(capped[t] for t in affordable_terms(capped, budget)) > budget


def test_code_distance_caps_tighten_first_and_end_uncapped():
    caps = code_distance_caps(384)
    assert caps[-1] is None and caps[:-1] == sorted(caps[:-1]) and caps[0] == 128
    # a share of codes measured for every cap, each cap letting more through than the one before
    assert len(CODES_WITHIN_RUNG) == len(CODE_DISTANCE_RUNGS)
    assert list(CODES_WITHIN_RUNG) == sorted(set(CODES_WITHIN_RUNG))


def test_the_ladder_starts_at_the_tightest_cap_expected_to_be_enough():
    uncapped = len(code_distance_caps(384)) - 1
    assert first_cap_step(0, 100) == uncapped  # nothing known: scan every code
    assert first_cap_step(1_000, 100) == 4  # 16.7% of 1k lets 167 through; 4.7% only 47
    assert first_cap_step(10_000, 100) == 2
    assert first_cap_step(100_000, 100) == 0


@given(codes=st.integers(0, 10**8), more=st.integers(0, 10**8), need=st.integers(1, 5000))
def test_a_larger_bound_never_starts_at_a_looser_cap(codes: int, more: int, need: int):
    step = first_cap_step(codes, need)
    assert 0 <= step < len(code_distance_caps(384))
    assert first_cap_step(codes + more, need) <= step


def test_prefix_context_and_count_builders():
    assert prefix_sql("acme", "abcdef")[1] == ["acme", "abcdef", "abcdefg"]
    sql, params = context_sql(Filters("acme", min_importance=5), 30)
    assert "ORDER BY m.importance DESC, m.updated_at DESC" in sql and params == ["acme", 5, 30]
    sql, params = count_sql(Filters("acme"))
    assert sql.startswith("SELECT count(*)") and "m.present = 1" in sql and params == ["acme"]


def test_every_builder_is_valid_sql_on_the_schema():
    conn = db.connect(":memory:", wal=False)
    for statement in filter(str.strip, TABLES.split(";")):
        conn.execute(statement)
    conn.execute(vector_table_sql(8))
    full = Filters("acme", ("a", "b"), 3, "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z")
    vector = bytes(32)
    for sql, params in [
        keyword_sql('"fox"', full, 10),
        coarse_vector_sql(vector, full, 10, 2),
        coarse_vector_sql(vector, replace(full, tags=()), 10, None),
        rescore_sql(vector, [1, 2], 10),
        ranking_fields_sql([1, 2], ["a", "b"]),
        ranking_fields_sql([1, 2], []),
        context_sql(full, 10),
        count_sql(full),
        prefix_sql("acme", "abcdef"),
        present_bound_sql("acme"),
        empty_gaps_sql("acme", [(1, 3), (4, 9)]),
        any_forgotten_sql("acme"),
    ]:
        conn.execute(sql, params).fetchall()
    conn.close()


# -- behaviour on a store ------------------------------------------------------------------

MODES = ["keyword", "hybrid"]


@pytest.fixture(params=MODES)
def mode_index(request, make_index: Callable[..., Index]) -> Index:
    """An index in keyword mode (no embedder) and in hybrid mode (the fake embedder)."""
    if request.param == "hybrid":
        return make_index(FakeEmbedder())
    return make_index()


def save_at(log: EventLog, project: str, content: str, ts: str | None = None, **kw) -> MemorySaved:
    event = log.build_save(project, content, **kw)
    if ts is not None:
        event = replace(event, ts=ts)
    log.append(project, [event])
    return event


def hit_ids(result) -> list[str]:
    return [h.memory.id for h in result.hits]


def test_search_mode_and_warning(mode_index: Index, log: EventLog):
    save_at(log, "acme", "the deploy uses blue green switching")
    result = mode_index.search("deploy", project="acme")
    assert len(result.hits) == 1 and result.hits[0].score > 0
    if mode_index._inner_embedder is None:
        assert result.mode == "keyword" and "keyword search only" in result.warning
    else:
        assert result.mode == "hybrid" and result.warning is None


def test_forgotten_memories_never_appear(mode_index: Index, log: EventLog):
    saved = [save_at(log, "acme", f"postgres tuning note {i}", tags=["db"]) for i in range(12)]
    gone = saved[::3]
    for e in gone:
        log.forget("acme", e.memory_id)
    gone_ids = {e.memory_id for e in gone}
    queries = ["postgres tuning note", "note 0", "note 3", *(e.content for e in gone)]
    for text, tags in itertools.product(queries, [None, ["db"], ["DB", "other"]]):
        ids = hit_ids(mode_index.search(text, project="acme", tags=tags, limit=100))
        assert not gone_ids & set(ids), (text, tags)
        assert ids, (text, tags)  # the survivors are still found
    memories, total = mode_index.load_context("acme", limit=100)
    assert total == 8 and not gone_ids & {m.id for m in memories}
    assert [(t.tag, t.count) for t in mode_index.tags("acme")] == [("db", 8)]
    for e in gone:
        with pytest.raises(MemoryNotFound):
            mode_index.get("acme", e.memory_id)


def test_forget_then_save_again_brings_it_back(mode_index: Index, log: EventLog):
    e = save_at(log, "acme", "kafka retention is seven days")
    log.forget("acme", e.memory_id)
    assert hit_ids(mode_index.search("kafka retention", project="acme")) == []
    save_at(log, "acme", "kafka retention is seven days")
    assert hit_ids(mode_index.search("kafka retention", project="acme")) == [e.memory_id]


def test_projects_are_isolated(mode_index: Index, log: EventLog):
    a = [save_at(log, "alpha", f"shared words about caching layer {i}", tags=["cache", "a-only"]) for i in range(5)]
    b = [save_at(log, "beta", f"shared words about caching layer {i}", tags=["cache"]) for i in range(3)]
    a_ids, b_ids = {e.memory_id for e in a}, {e.memory_id for e in b}
    assert not a_ids & b_ids  # the project is part of the content address
    for tags in (None, ["cache"]):
        assert set(hit_ids(mode_index.search("caching layer", project="beta", tags=tags, limit=100))) == b_ids
        assert set(hit_ids(mode_index.search("caching layer", project="alpha", tags=tags, limit=100))) == a_ids
    assert hit_ids(mode_index.search("anything", project="gamma")) == []
    memories, total = mode_index.load_context("beta")
    assert total == 3 and {m.id for m in memories} == b_ids and {m.project for m in memories} == {"beta"}
    assert [(t.tag, t.count) for t in mode_index.tags("beta")] == [("cache", 3)]
    assert {(t.tag, t.count) for t in mode_index.tags()} == {("cache", 8), ("a-only", 5)}
    with pytest.raises(MemoryNotFound):
        mode_index.get("beta", a[0].memory_id)
    assert mode_index.get("alpha", a[0].memory_id).project == "alpha"
    assert [(p.name, p.memories) for p in mode_index.projects()] == [("alpha", 5), ("beta", 3)]


def test_tag_filter_is_any_of_and_case_insensitive(mode_index: Index, log: EventLog):
    x = save_at(log, "acme", "release checklist item one", tags=["Release"])
    y = save_at(log, "acme", "release checklist item two", tags=["ops"])
    save_at(log, "acme", "release checklist item three", tags=["misc"])
    assert hit_ids(mode_index.search("release checklist", project="acme", tags=["release"])) == [x.memory_id]
    assert hit_ids(mode_index.search("release checklist", project="acme", tags=["RELEASE"])) == [x.memory_id]
    both = mode_index.search("release checklist", project="acme", tags=["release", "OPS"])
    assert set(hit_ids(both)) == {x.memory_id, y.memory_id}
    assert hit_ids(mode_index.search("release checklist", project="acme", tags=["nothing"])) == []


def test_a_tag_the_query_names_lifts_that_memory_case_insensitively(mode_index: Index, log: EventLog):
    tagged = save_at(log, "acme", "gallery visit notes, first", tags=["Caroline"])
    other = save_at(log, "acme", "gallery visit notes, second", tags=["work"])
    boosted = {h.memory.id: h.score for h in mode_index.search("caroline gallery", project="acme").hits}
    mode_index.tuning = replace(mode_index.tuning, tag_boost=0.0)
    plain = {h.memory.id: h.score for h in mode_index.search("caroline gallery", project="acme").hits}
    assert boosted[tagged.memory_id] == pytest.approx(plain[tagged.memory_id] + 0.2)
    assert boosted[other.memory_id] == pytest.approx(plain[other.memory_id])


DECOY = "alpha beta gamma delta epsilon zeta eta theta"


def decoys(log: EventLog, n: int = 200, **kw) -> None:
    # Each decoy repeats the query words: they outrank the wanted memory on both sides.
    events = [log.build_save("acme", f"{DECOY} {DECOY} decoy {i}", **kw) for i in range(n)]
    log.append("acme", events)


def test_tag_filter_applies_inside_candidate_generation(mode_index: Index, log: EventLog):
    decoys(log, tags=["other"])
    wanted = save_at(log, "acme", "alpha and something unrelated", tags=["Needle"])
    result = mode_index.search(DECOY, project="acme", tags=["needle"], limit=1)
    assert hit_ids(result) == [wanted.memory_id]
    assert hit_ids(mode_index.search(DECOY, project="acme", limit=1)) != [wanted.memory_id]


def test_importance_filter_applies_inside_candidate_generation(mode_index: Index, log: EventLog):
    decoys(log, importance=3)
    wanted = save_at(log, "acme", "alpha and something unrelated", importance=9)
    assert hit_ids(mode_index.search(DECOY, project="acme", min_importance=8, limit=1)) == [wanted.memory_id]
    assert hit_ids(mode_index.search(DECOY, project="acme", min_importance=10, limit=5)) == []


def test_time_filters_apply_to_created_at_inside_candidate_generation(mode_index: Index, log: EventLog):
    old = [replace(log.build_save("acme", f"{DECOY} {DECOY} decoy {i}"), ts="2026-01-01T00:00:00.000Z") for i in range(200)]
    log.append("acme", old)
    wanted = save_at(log, "acme", "alpha and something unrelated", ts="2026-03-15T12:00:00.000Z")
    later = save_at(log, "acme", "alpha in april", ts="2026-04-02T00:00:00.000Z")
    march = {"since": "2026-03-01T00:00:00.000Z", "until": "2026-04-01T00:00:00.000Z"}
    assert hit_ids(mode_index.search(DECOY, project="acme", limit=1, **march)) == [wanted.memory_id]
    assert set(hit_ids(mode_index.search("alpha", project="acme", since="2026-03-01T00:00:00.000Z", limit=10))) == {
        wanted.memory_id, later.memory_id}
    # until is exclusive, since inclusive
    assert hit_ids(mode_index.search("alpha", project="acme", since=wanted.ts, until=later.ts, limit=10)) == [wanted.memory_id]


def test_time_filter_uses_the_first_save_not_the_latest(mode_index: Index, log: EventLog):
    first = save_at(log, "acme", "budget approved for q3", ts="2026-01-10T00:00:00.000Z")
    save_at(log, "acme", "budget approved for q3", ts="2026-05-10T00:00:00.000Z")  # saved again
    jan = {"since": "2026-01-01T00:00:00.000Z", "until": "2026-02-01T00:00:00.000Z"}
    assert hit_ids(mode_index.search("budget", project="acme", **jan)) == [first.memory_id]
    assert mode_index.get("acme", first.memory_id).created_at == first.ts
    assert mode_index.get("acme", first.memory_id).updated_at == "2026-05-10T00:00:00.000Z"


def _colliding_contents(project: str) -> tuple[str, str]:
    """Two contents whose memory ids share their first six hex digits (a birthday search)."""
    seen: dict[str, str] = {}
    for i in itertools.count():
        content = f"collision candidate {i}"
        prefix = compute_memory_id(project, content)[:6]
        if prefix in seen:
            return seen[prefix], content
        seen[prefix] = content
    raise AssertionError("unreachable")


def test_get_by_id_and_prefix(index: Index, log: EventLog):
    one, two = _colliding_contents("acme")
    a, b = save_at(log, "acme", one), save_at(log, "acme", two)
    shared = a.memory_id[:6]
    assert b.memory_id.startswith(shared)
    with pytest.raises(AmbiguousId):
        index.get("acme", shared)
    assert index.get("acme", a.memory_id).content == one
    assert index.get("acme", a.memory_id.upper()).id == a.memory_id
    distinct = next(n for n in range(7, 17) if a.memory_id[:n] != b.memory_id[:n])
    assert index.get("acme", b.memory_id[:distinct]).content == two
    with pytest.raises(MemoryNotFound):
        index.get("acme", "ffffffffffffffff" if not a.memory_id.startswith("ffff") else "0000000000000000")
    for bad in ("abcde", "", "xyzxyzxyz", "0123456789abcdef0", "abc def", 12345678):
        with pytest.raises(InvalidQuery):
            index.get("acme", bad)


def test_load_context_orders_by_importance_then_recency_within_budget(index: Index, log: EventLog):
    low = save_at(log, "acme", "low importance", importance=2, ts="2026-01-05T00:00:00.000Z")
    old_high = save_at(log, "acme", "old but important", importance=9, ts="2026-01-01T00:00:00.000Z")
    new_high = save_at(log, "acme", "new and important", importance=9, ts="2026-01-03T00:00:00.000Z")
    mid = save_at(log, "acme", "x" * 100, importance=5, ts="2026-01-04T00:00:00.000Z")
    memories, total = index.load_context("acme")
    assert [m.id for m in memories] == [new_high.memory_id, old_high.memory_id, mid.memory_id, low.memory_id]
    assert total == 4
    # The budget stops before the memory that would exceed it; the first is always given.
    budget = len(new_high.content) + len(old_high.content) + 50
    memories, total = index.load_context("acme", budget_chars=budget)
    assert [m.id for m in memories] == [new_high.memory_id, old_high.memory_id] and total == 4
    memories, _ = index.load_context("acme", budget_chars=1)
    assert [m.id for m in memories] == [new_high.memory_id]
    memories, total = index.load_context("acme", limit=1)
    assert len(memories) == 1 and total == 4
    memories, total = index.load_context("acme", min_importance=5)
    assert [m.id for m in memories] == [new_high.memory_id, old_high.memory_id, mid.memory_id] and total == 3


def test_bad_arguments_are_refused(index: Index, log: EventLog):
    save_at(log, "acme", "something")
    for kwargs in ({"limit": 0}, {"limit": 101}, {"limit": True}, {"min_importance": 11}):
        with pytest.raises(ValueError):
            index.search("something", project="acme", **kwargs)
    for text in ("", "   ", None):
        with pytest.raises(InvalidQuery):
            index.search(text, project="acme")
    with pytest.raises(ValueError):
        index.search("x", project="../etc")


def test_newer_schema_version_stops_that_log_only(mode_index: Index, log: EventLog, caplog):
    before = save_at(log, "acme", "written before the upgrade")
    other = save_at(log, "beta", "another project is fine")
    with open(log.log_path("acme"), "ab") as f:
        f.write(b'{"v":99,"type":"memory.saved","event_id":"01J00000000000000000000000","project":"acme"}\n')
    after = save_at(log, "acme", "written after the upgrade")
    result = mode_index.search("written upgrade", project="acme")
    assert hit_ids(result) == [before.memory_id]  # stopped at the line it cannot read
    assert "version 99" in result.warning and "upgrade mnemolog" in result.warning
    assert any("version 99" in r.getMessage() for r in caplog.records)
    beta = mode_index.search("another project", project="beta")
    assert hit_ids(beta) == [other.memory_id]
    assert beta.warning is None or "version" not in beta.warning
    save_at(log, "beta", "beta keeps projecting")
    assert len(mode_index.search("beta keeps projecting", project="beta").hits) == 2
    report = mode_index.verify()
    assert any("acme" in p and "version 99" in p for p in report.problems)
    assert not any(p.startswith("beta") for p in report.problems)
    with pytest.raises(MemoryNotFound):
        mode_index.get("acme", after.memory_id)


def test_unknown_event_type_and_garbage_lines_are_skipped(index: Index, log: EventLog):
    a = save_at(log, "acme", "before the odd lines")
    with open(log.log_path("acme"), "ab") as f:
        f.write(b'{"v":1,"type":"memory.pinned","event_id":"x","project":"acme"}\n')
        f.write(b"this is not json\n")
    b = save_at(log, "acme", "after the odd lines")
    assert set(hit_ids(index.search("odd lines", project="acme"))) == {a.memory_id, b.memory_id}
    report = index.verify()
    assert report.ok and len(report.problems) == 2
    assert index._connection().execute("SELECT bad_lines FROM tracking").fetchone()[0] == 2


def assert_index_is_fold(index: Index, log: EventLog) -> None:
    index.catch_up()
    assert diff_rows(fold_rows(all_events(log)), index_rows(index._connection())) == []
    assert index.verify().ok


def test_truncated_log_is_rescanned(index: Index, log: EventLog):
    events = [save_at(log, "acme", f"fact number {i}") for i in range(10)]
    path = log.log_path("acme")
    index.catch_up()
    keep = b"".join(encode_event(e) for e in events[:4])
    with open(path, "r+b") as f:  # truncated in place, as a reset to an older commit could
        f.truncate(len(keep))
    assert_index_is_fold(index, log)
    assert {m.id for m in index.load_context("acme")[0]} == {e.memory_id for e in events[:4]}
    # ... then grows past the old end with other lines: the last applied line no longer matches
    extra = [save_at(log, "acme", f"other fact after the reset {i}") for i in range(10)]
    assert_index_is_fold(index, log)
    assert index.load_context("acme")[1] == 14 and extra


def test_log_replaced_by_a_merged_file_is_rescanned(index: Index, log: EventLog, tmp_path: Path):
    mine = [save_at(log, "acme", f"my fact {i}") for i in range(5)]
    index.catch_up()
    theirs = [log.build_save("acme", f"their fact {i}") for i in range(5)]
    forget_mine = log.build_forget("acme", mine[0].memory_id)
    # git's union merge writes a new file: both sides' lines, interleaved, and renames it in
    merged = [theirs[0], mine[0], theirs[1], mine[1], forget_mine, theirs[2], mine[2], mine[3], theirs[3], mine[4], theirs[4]]
    temp = tmp_path / "merge.tmp"
    temp.write_bytes(b"".join(encode_event(e) for e in merged))
    os.replace(temp, log.log_path("acme"))
    assert_index_is_fold(index, log)
    assert index.load_context("acme")[1] == 9


def test_log_deleted_removes_its_memories(index: Index, log: EventLog):
    save_at(log, "acme", "will vanish")
    keep = save_at(log, "beta", "stays")
    index.catch_up()
    os.unlink(log.log_path("acme"))
    assert_index_is_fold(index, log)
    assert index.load_context("acme")[1] == 0
    assert hit_ids(index.search("stays", project="beta")) == [keep.memory_id]


def test_sqlite_driver_loads_vec_and_index_is_wal(index: Index, log: EventLog):
    import sqlite3

    module = db.driver()
    conn = module.connect(":memory:")
    conn.enable_load_extension(True)
    import sqlite_vec

    sqlite_vec.load(conn)
    assert conn.execute("SELECT vec_version()").fetchone()[0]
    conn.close()
    if not hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
        assert module.__name__ == "sqlean"  # this machine's stdlib cannot load extensions
    save_at(log, "acme", "anything")
    index.catch_up()
    assert index._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    probe = sqlite3.connect(index.path)  # another connection sees WAL in the file itself
    assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    probe.close()
    assert index._connection().execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    index.rebuild()
    assert index._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert oct(os.stat(index.path).st_mode & 0o777) == "0o600"


def test_a_query_is_embedded_by_the_searching_thread_and_kept_out_of_the_cache(
    make_index: Callable[..., Index], log: EventLog, monkeypatch: pytest.MonkeyPatch
):
    import threading

    from projector import hybrid
    from projector.embed_cache import EmbeddingCache

    keyword_threads: list[str] = []
    keyword_candidates = hybrid._keyword_candidates

    def recorded(*args, **kwargs):
        keyword_threads.append(threading.current_thread().name)
        return keyword_candidates(*args, **kwargs)

    monkeypatch.setattr(hybrid, "_keyword_candidates", recorded)

    class ThreadRecorder(FakeEmbedder):
        def embed(self, texts):
            threads.update({text: threading.current_thread().name for text in texts})
            return super().embed(texts)

    threads: dict[str, str] = {}
    embedder = ThreadRecorder()
    index = make_index(embedder)
    saved = save_at(log, "acme", "the lighthouse keeper logs the tides")
    result = index.search("lighthouse tides", project="acme")
    assert result.mode == "hybrid" and hit_ids(result) == [saved.memory_id]
    assert threads["lighthouse tides"] == threading.current_thread().name
    assert keyword_threads == ["mnemolog-search-helper_0"]  # the keyword side ran beside it
    cache = EmbeddingCache(index._cache_path)
    try:
        assert list(cache.get_many(embedder.model_id, ["lighthouse tides"])) == []  # the query: not cached
        assert list(cache.get_many(embedder.model_id, ["the lighthouse keeper logs the tides"])) == [0]
    finally:
        cache.close()
    index.close()
    assert index._helper is None  # the helper thread is stopped with the index


def test_a_query_the_model_fails_on_is_answered_by_keywords(make_index: Callable[..., Index], log: EventLog):
    embedder = FakeEmbedder()
    index = make_index(embedder)
    saved = save_at(log, "acme", "the lighthouse keeper logs the tides")
    index.catch_up()
    embedder.fail = True
    result = index.search("lighthouse", project="acme")
    assert result.mode == "keyword" and hit_ids(result) == [saved.memory_id]
    assert "embedding model unavailable" in (result.warning or "")


def test_memories_with_only_forgets_between_them_stay_neighbours(index: Index, log: EventLog):
    from projector.hybrid import _next_neighbours

    a = save_at(log, "acme", "the deploy runs on fridays")
    gone = save_at(log, "acme", "an unrelated note")
    b = save_at(log, "acme", "yes, that one, after the freeze")
    log.forget("acme", gone.memory_id)  # a line of its own, after b
    c = save_at(log, "acme", "a note saved after the forget")
    d = save_at(log, "other", "another project's note")  # another project's log: its own lines
    index.catch_up()
    conn = index._connection()
    rowid = {m: r for m, r in conn.execute("SELECT memory_id, rowid FROM memory WHERE project = 'acme'")}
    seq = {r: s for r, s in conn.execute("SELECT rowid, seq FROM memory WHERE project = 'acme' AND present = 1")}
    assert d.memory_id not in rowid
    assert _next_neighbours(conn, "acme", seq) == {rowid[a.memory_id]: rowid[b.memory_id],
                                                   rowid[b.memory_id]: rowid[c.memory_id]}
    # a present memory between two candidates keeps them apart: leave b out of the candidates
    del seq[rowid[b.memory_id]]
    assert _next_neighbours(conn, "acme", seq) == {}
