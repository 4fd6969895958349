"""Pure search helpers: keyword query building and score fusion. No I/O."""

from __future__ import annotations

import math
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


def code_distance_caps(bits: int) -> list[int | None]:
    """The hamming-distance caps for codes of ``bits`` bits, tightest first, then no cap."""
    caps: list[int | None] = [round(share * bits) for share in CODE_DISTANCE_RUNGS]
    return [*caps, None]


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


def smooth_with_neighbours(
    scores: Mapping[int, float], seq: Mapping[int, int], weight: float, radius: int = 1, decay: float = 0.5,
    before: float = 0.5, pool: str = "sum",
) -> dict[int, float]:
    """Add ``weight`` x the scores of the memories saved just before and after each one
    (and, up to ``radius`` places away, ``decay`` times less for each place further).

    Memories saved one after another usually come from one conversation, and a short
    note is often only understood with its neighbours ("yes, that one, from Paris")."""
    if weight == 0:
        return dict(scores)
    by_seq = {seq[rowid]: rowid for rowid in scores if rowid in seq}
    out = {}
    for rowid, score in scores.items():
        position = seq.get(rowid)
        around = 0.0
        if position is not None:
            lent = []
            for distance in range(1, radius + 1):
                share = decay ** (distance - 1)
                for side, neighbour in ((2 * before, by_seq.get(position - distance)), (2 * (1 - before), by_seq.get(position + distance))):
                    lent.append(side * share * scores[neighbour] if neighbour is not None else 0.0)
            around = sum(lent) if pool == "sum" else 2 * max(lent)
        out[rowid] = score + weight * around
    return out


def spread_out(
    scores: Mapping[int, float], seq: Mapping[int, int], limit: int, radius: int, discount: float
) -> list[tuple[int, float]]:
    """The ``limit`` best (rowid, score) pairs, chosen one at a time, each candidate's score
    multiplied by ``1 - discount`` for every result already chosen within ``radius`` places of
    it in the log. Smoothing and the neighbours' context give a passage's turns nearly the
    same score, so without this one passage can fill the results."""
    if discount == 0 or radius == 0:
        return rank(scores, limit)
    left = dict(scores)
    chosen: list[tuple[int, float]] = []
    taken: list[int] = []
    while left and len(chosen) < limit:
        def adjusted(rowid: int) -> float:
            position = seq.get(rowid)
            near = 0 if position is None else sum(1 for p in taken if abs(p - position) <= radius)
            return left[rowid] * (1.0 - discount) ** near
        best = min(left, key=lambda r: (-adjusted(r), r))
        chosen.append((best, left.pop(best)))
        if best in seq:
            taken.append(seq[best])
    return chosen


def feedback_terms(
    texts: Sequence[tuple[str, float]], document_counts: Mapping[str, int], total: int, known: Collection[str], n: int
) -> list[str]:
    """Up to ``n`` words to add to a query (relevance model, RM3-like): each word of the
    feedback ``texts`` weighted by its share of each text times that text's weight, times its
    idf over ``total`` rows; words of the query itself (``known``) and words no row holds left out."""
    weight: dict[str, float] = {}
    for text, w in texts:
        words = [t.lower() for t in _WORD.findall(text) if t.lower() not in STOPWORDS and not t.isdigit()]
        for word in words:
            weight[word] = weight.get(word, 0.0) + w / len(words)
    ranked = []
    for word, value in weight.items():
        count = document_counts.get(word, 0)
        if word in known or count == 0:
            continue
        ranked.append((-value * math.log(1 + total / count), word))
    return [word for _, word in sorted(ranked)[:n]]


def boost_tagged(scores: Mapping[int, float], tagged: Collection[int], boost: float) -> dict[int, float]:
    """Add ``boost`` to the memories in ``tagged``: those carrying a tag that the query names
    (``postgres``, a person's name). A tag is the user's own statement of what a memory is about."""
    return {rowid: score + (boost if rowid in tagged else 0.0) for rowid, score in scores.items()}


def rank(scores: Mapping[int, float], limit: int) -> list[tuple[int, float]]:
    """The ``limit`` best (rowid, score) pairs, ties broken by row id for stable results."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
