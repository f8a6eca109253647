"""Why a paper is in a digest, in words: the topics it covers as typed, or the liked paper it is most like."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from digest.rank.features import FeatureSpace, term_hasher, terms

REASON_TERMS = 3
# A topic is named as typed when the paper carries at least this share of its (idf-weighted) terms.
TOPIC_MATCH_SHARE = 0.5


class Explainer:
    """Names what pulled a paper in. Hashing forgets words, so the day's papers are re-read once per run
    to map their columns back to terms; each reason is then a few dictionary lookups."""

    def __init__(self, space: FeatureSpace, texts: Mapping[int, str], docs: sp.csr_matrix) -> None:
        self.space = space
        self._texts = texts
        self._docs = docs
        self._terms: dict[int, dict[int, str]] = {}
        self._weights: dict[int, dict[int, float]] = {}
        self._topics: dict[str, tuple[dict[int, float], float]] = {}
        self._matches: dict[tuple[int, str], tuple[float | None, dict[int, float]]] = {}
        self._reasons: dict[tuple[int, tuple[str, ...]], str] = {}

    def _present(self, row: int) -> dict[int, float]:
        known = self._weights.get(row)
        if known is None:
            start, end = self._docs.indptr[row], self._docs.indptr[row + 1]
            known = dict(
                zip(self._docs.indices[start:end].tolist(), self._docs.data[start:end].tolist(), strict=True)
            )
            self._weights[row] = known
        return known

    def _columns(self, row: int) -> dict[int, str]:
        known = self._terms.get(row)
        if known is None:
            names = sorted(set(terms(self._texts[row])))
            hashed = term_hasher().transform([[name] for name in names]) if names else None
            known = {}
            if hashed is not None:
                for position, name in enumerate(names):
                    start, end = hashed.indptr[position], hashed.indptr[position + 1]
                    if end > start:
                        known[int(hashed.indices[start])] = name
            self._terms[row] = known
        return known

    def _topic(self, topic: str) -> tuple[dict[int, float], float]:
        known = self._topics.get(topic)
        if known is None:
            vector = self.space.topic_vector(topic)
            weights = dict(zip(vector.indices.tolist(), vector.data.tolist(), strict=True))
            known = (weights, sum(weights.values()))
            self._topics[topic] = known
        return known

    def reason(
        self,
        row: int,
        topics: Sequence[str],
        profile: Mapping[int, float] | None = None,
        liked: Sequence[tuple[str, float]] = (),
    ) -> str:
        """The topics as typed that the paper covers, the liked paper it is most like, or failing both
        the subscriber's terms it contains (weighted by `profile`, column → weight, when given).

        `liked` holds each liked paper's title and its similarity to this paper (see `liked_similarity`).
        """
        if profile is None and not liked:
            # Most readers have not voted: their reason depends on the paper and the topics alone, and
            # the same topics come back for many readers of a run.
            key = (row, tuple(sorted(topics)))
            known = self._reasons.get(key)
            if known is None:
                known = self._reason(row, topics, None, ())
                self._reasons[key] = known
            return known
        return self._reason(row, topics, profile, liked)

    def liked_similarity(self, liked: sp.csr_matrix) -> np.ndarray:
        """(papers × liked papers) cosines for the run's papers, in one product for a whole block."""
        if liked.shape[0] == 0:
            return np.zeros((self._docs.shape[0], 0), dtype=np.float32)
        return np.asarray((self._docs @ liked.T).toarray(), dtype=np.float32)

    def _match(self, row: int, topic: str) -> tuple[float | None, dict[int, float]]:
        """How strongly the paper covers a topic as typed (None when it does not), else its loose hits."""
        key = (row, topic)
        known = self._matches.get(key)
        if known is None:
            present = self._present(row)
            weights, total = self._topic(topic)
            hit = {f: w for f, w in weights.items() if f in present}
            if hit and sum(hit.values()) >= TOPIC_MATCH_SHARE * total:
                known = (sum(present[f] * w for f, w in hit.items()), {})
            else:
                known = (None, hit)
            self._matches[key] = known
        return known

    def _reason(
        self,
        row: int,
        topics: Sequence[str],
        profile: Mapping[int, float] | None,
        liked: Sequence[tuple[str, float]],
    ) -> str:
        present = self._present(row)
        matched: list[tuple[float, str]] = []
        loose: dict[int, float] = {}
        for topic in topics:
            strength, hit = self._match(row, topic)
            if strength is not None:
                matched.append((strength, topic))
            else:
                loose.update(hit)
        parts = []
        if matched:
            parts.append(
                "matches your topics: "
                + ", ".join(t for _, t in sorted(matched, reverse=True)[:REASON_TERMS])
            )
        if liked:
            title, similarity = max(liked, key=lambda pair: pair[1])
            if similarity > 0.1:
                parts.append(f"like “{title}”, which you asked for more of")
        if not parts:
            weights = loose if profile is None else profile
            names = self._columns(row)
            contributions = sorted(
                (
                    (value * weights[f], names[f])
                    for f, value in present.items()
                    if f in names and weights.get(f, 0.0) > 0
                ),
                key=lambda pair: (-round(pair[0], 6), -pair[1].count(" ")),
            )
            chosen: list[str] = []
            for _, term in contributions:
                if not any(
                    set(term.split()) <= set(c.split()) or set(c.split()) <= set(term.split()) for c in chosen
                ):
                    chosen.append(term)
                if len(chosen) >= REASON_TERMS:
                    break
            if chosen:
                parts.append("matches: " + ", ".join(chosen))
        text = "; ".join(parts) or "related to your interests"
        return text[0].upper() + text[1:]
