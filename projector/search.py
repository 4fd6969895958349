"""Pure search helpers: keyword query building and reciprocal rank fusion. No I/O."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

RRF_K = 60
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
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


@dataclass(frozen=True, slots=True)
class Fused:
    """A candidate after fusion: its row id and fused score."""

    rowid: int
    score: float


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[Fused]:
    """Fuse ranked lists of row ids: score = sum of weight / (k + rank), best first."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, rowid in enumerate(ranking, start=1):
            scores[rowid] = scores.get(rowid, 0.0) + weight / (k + rank)
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [Fused(rowid, score) for rowid, score in ordered]
