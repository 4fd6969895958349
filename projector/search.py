"""Pure search helpers: keyword query building and score fusion. No I/O."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no topic: matching them only adds noise to bm25.
STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be because been before being
    between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves
    out over own same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves""".split()
    # What \w+ leaves of contractions and possessives ("Caroline's" -> caroline s, "didn't" ->
    # didn t): "s" alone matched 43% of the LoCoMo dev turns. Not "don" or "won", which are
    # also a name and a word.
    + """s t d ll m re ve didn doesn isn wasn aren weren hasn haven hadn couldn wouldn shouldn
    mustn needn""".split()
)


def keyword_terms(query: str) -> list[str]:
    """Lower-cased words of ``query`` without stopwords (all words if only stopwords)."""
    words = [w.lower() for w in _WORD.findall(query)]
    kept = [w for w in words if w not in STOPWORDS]
    return list(dict.fromkeys(kept or words))


def fts_match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's words, each quoted (no syntax injection)."""
    terms = keyword_terms(query)
    return fts_any_of(terms) if terms else None


def fts_any_of(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression for any of ``terms``, each quoted (no syntax injection)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def affordable_terms(document_counts: Mapping[str, int], budget: int) -> list[str]:
    """The rarest terms whose matches together stay within ``budget`` rows (at least the rarest
    one that matches anything), in their query order; terms matching nothing are left out.

    FTS5 computes bm25 for every row that matches before it can sort, ~1.5 us a row: an OR of a
    word found in a third of the notebook costs more than everything else in a search. Such a
    word has the lowest idf, so it adds least to the ranking it makes so costly."""
    present = [t for t, n in document_counts.items() if n > 0]
    by_rarity = sorted(present, key=lambda t: document_counts[t])  # stable: query order on ties
    kept, total = set[str](), 0
    for term in by_rarity:
        if kept and total + document_counts[term] > budget:
            break
        kept.add(term)
        total += document_counts[term]
    return [t for t in present if t in kept]


# Caps on the hamming distance between binary codes, as shares of the code's bits, tried in turn
# until one lets enough candidates through (None: no cap). Measured on 100k MiniLM memories: the
# 100th nearest code lies at ~0.34 of the bits, the 400th at ~0.36, the 1000th at ~0.38; a
# small store reaches the later rungs, where a scan costs next to nothing.
CODE_DISTANCE_RUNGS = (0.333, 0.36, 0.385, 0.41, 0.437)
# The share of a project's codes each rung lets through, medians over 60 queries, measured on
# synthetic MiniLM stores of 1k and 10k memories (which agreed within 10%; from one query to
# the next it varies ~10x either way, hence the ladder).
CODES_WITHIN_RUNG = (0.002, 0.0066, 0.017, 0.047, 0.167)


def code_distance_caps(bits: int) -> list[int | None]:
    """The hamming-distance caps for codes of ``bits`` bits, tightest first, then no cap."""
    caps: list[int | None] = [round(share * bits) for share in CODE_DISTANCE_RUNGS]
    return [*caps, None]


def first_cap_step(codes_at_most: int, need: int) -> int:
    """Where on ``code_distance_caps`` to start for ``need`` candidates among at most
    ``codes_at_most`` codes: the tightest cap expected to let that many through.

    A cap that lets few through still costs a query (~0.2 ms): at 1k memories the first three
    rungs let 2, 7 and 17 codes through and were asked for nothing. Starting at or past them
    only adds codes a tighter cap would have left out, so the candidates re-scored are a
    superset; and a bound above the true count only starts tighter, as the ladder always did."""
    for step, share in enumerate(CODES_WITHIN_RUNG):
        if codes_at_most * share >= need:
            return step
    return len(CODES_WITHIN_RUNG)  # the uncapped scan


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scale scores to [0, 1] over the candidates; equal scores (one candidate) all become 1."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return {rowid: 1.0 for rowid in scores}
    return {rowid: (s - lo) / (hi - lo) for rowid, s in scores.items()}


def fuse_scores(keyword: Mapping[int, float], vector: Mapping[int, float] | None, keyword_weight: float) -> dict[int, float]:
    """Convex combination of min-max scaled keyword (bm25) and vector (cosine) scores.
    Measured on LoCoMo dev: better than reciprocal rank fusion, which throws the scores'
    margins away (BENCHMARKS.md)."""
    kw = min_max(keyword)
    if vector is None:
        return kw
    vec = min_max(vector)
    return {
        rowid: keyword_weight * kw.get(rowid, 0.0) + (1.0 - keyword_weight) * vec.get(rowid, 0.0)
        for rowid in kw.keys() | vec.keys()
    }


# Lines that may lie between two memories, each an edit of another memory (an update, a forget,
# which take a line of the log of their own), with the two still neighbours. Checking a gap
# costs an index probe; gaps wider than this are taken for other memories between them.
MAX_EDIT_RUN = 32


def gaps_to_check(seq: Mapping[int, int]) -> list[tuple[int, int]]:
    """Positions of candidates next to each other in log order but more than a line apart
    (and at most ``MAX_EDIT_RUN`` lines between): neighbours if no present memory lies between."""
    positions = sorted(seq.values())
    return [(a, b) for a, b in zip(positions, positions[1:]) if 1 < b - a <= MAX_EDIT_RUN + 1]


def next_neighbours(seq: Mapping[int, int], empty_gaps: Collection[tuple[int, int]]) -> dict[int, int]:
    """Each candidate's next one in log order (row id to row id) if they are neighbours among
    the project's present memories: on the next line, or with only edits of others (the
    ``empty_gaps``, pairs of positions) between them."""
    ordered = sorted(seq, key=seq.__getitem__)
    return {
        a: b for a, b in zip(ordered, ordered[1:])
        if seq[b] - seq[a] == 1 or (seq[a], seq[b]) in empty_gaps
    }


def smooth_with_neighbours(scores: Mapping[int, float], next_of: Mapping[int, int], weight: float) -> dict[int, float]:
    """Add ``weight`` x the scores of the memories saved just before and after each one
    (``next_of``: see ``next_neighbours``).

    Memories saved one after another usually come from one conversation, and a short
    note is often only understood with its neighbours ("yes, that one, from Paris")."""
    if weight == 0:
        return dict(scores)
    previous_of = {b: a for a, b in next_of.items()}
    out = {}
    for rowid, score in scores.items():
        around = sum(scores.get(n, 0.0) for n in (previous_of.get(rowid), next_of.get(rowid)) if n is not None)
        out[rowid] = score + weight * around
    return out


def boost_tagged(scores: Mapping[int, float], tagged: Collection[int], boost: float) -> dict[int, float]:
    """Add ``boost`` to the memories in ``tagged``: those carrying a tag that the query names
    (``postgres``, a person's name). A tag is the user's own statement of what a memory is about."""
    return {rowid: score + (boost if rowid in tagged else 0.0) for rowid, score in scores.items()}


def rank(scores: Mapping[int, float], limit: int) -> list[tuple[int, float]]:
    """The ``limit`` best (rowid, score) pairs, ties broken by row id for stable results."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
