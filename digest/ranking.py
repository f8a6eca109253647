"""Relevance: one TF-IDF space per run, one profile vector per subscriber, cosine scores.

The vectorizer is fitted once per run over every stored listing (cost per run), while the work per
subscriber is a sparse profile and one column of a sparse matrix product (cost per subscriber), so
subscribers are scored in blocks against the candidate rows at once.

A profile is Rocchio's: the subscriber's keywords, plus the centroid of papers they asked for more of,
minus a smaller share of the centroid of papers they asked for less of.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from digest.models import Vote

KEYWORD_WEIGHT = 1.0
LIKED_WEIGHT = 0.75
DISLIKED_WEIGHT = 0.25
REASON_TERMS = 3
# A topic is named as typed when the paper carries at least this share of its (idf-weighted) terms.
TOPIC_MATCH_SHARE = 0.5


def listing_text(title: str, abstract: str) -> str:
    return f"{title}. {abstract}"


@dataclass
class Profile:
    """A subscriber's interests as one L2-normalised row in the corpus feature space."""

    vector: sp.csr_matrix
    keyword_vector: sp.csr_matrix
    topics: Sequence[str] = ()

    @property
    def is_empty(self) -> bool:
        return bool(self.vector.nnz == 0)


@dataclass
class Corpus:
    """The listings of one run, vectorised; row i belongs to listing_ids[i]."""

    vectorizer: TfidfVectorizer
    listing_ids: np.ndarray
    matrix: sp.csr_matrix
    feature_names: np.ndarray
    _row_of: dict[int, int] = field(default_factory=dict)
    _topic_cache: dict[str, sp.csr_matrix] = field(default_factory=dict)

    @classmethod
    def fit(cls, listing_ids: Sequence[int], texts: Iterable[str]) -> Corpus:
        ids = np.asarray(listing_ids, dtype=np.int64)
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            stop_words="english",
            strip_accents="unicode",
            max_df=0.9 if len(ids) >= 50 else 1.0,
            dtype=np.float32,
        )
        matrix = sp.csr_matrix(vectorizer.fit_transform(texts), dtype=np.float32)
        corpus = cls(vectorizer, ids, matrix, vectorizer.get_feature_names_out())
        corpus._row_of = {int(listing_id): row for row, listing_id in enumerate(ids)}
        return corpus

    def row_of(self, listing_id: int) -> int | None:
        return self._row_of.get(listing_id)

    def rows_of(self, listing_ids: Iterable[int]) -> np.ndarray:
        rows = [self._row_of[i] for i in listing_ids if i in self._row_of]
        return np.asarray(rows, dtype=np.int64)

    def _topic_vector(self, topic: str) -> sp.csr_matrix:
        """Subscribers share topics, so each distinct topic is vectorised once per run."""
        key = topic.casefold()
        cached = self._topic_cache.get(key)
        if cached is None:
            cached = _unit(sp.csr_matrix(self.vectorizer.transform([topic])))
            self._topic_cache[key] = cached
        return cached

    def profile(self, topics: Sequence[str], votes: Mapping[int, Vote]) -> Profile:
        width = self.matrix.shape[1]
        keyword_vector = sp.csr_matrix((1, width), dtype=np.float32)
        for topic in topics:
            keyword_vector = keyword_vector + self._topic_vector(topic)
        keyword_vector = _unit(keyword_vector)

        vector = KEYWORD_WEIGHT * keyword_vector
        liked = self.rows_of(i for i, v in votes.items() if v == Vote.MORE)
        disliked = self.rows_of(i for i, v in votes.items() if v == Vote.LESS)
        if len(liked):
            vector = vector + LIKED_WEIGHT * sp.csr_matrix(self.matrix[liked].mean(axis=0))
        if len(disliked):
            vector = vector - DISLIKED_WEIGHT * sp.csr_matrix(self.matrix[disliked].mean(axis=0))
        vector = _unit(sp.csr_matrix(vector, dtype=np.float32))
        vector.eliminate_zeros()
        return Profile(vector=vector, keyword_vector=sp.csr_matrix(keyword_vector), topics=tuple(topics))

    def scores(self, rows: np.ndarray, profiles: Sequence[Profile]) -> np.ndarray:
        """Cosine scores, shape (len(rows), len(profiles)): one sparse product for a block of subscribers."""
        if len(rows) == 0 or not profiles:
            return np.zeros((len(rows), len(profiles)), dtype=np.float32)
        stacked = sp.vstack([p.vector for p in profiles], format="csr")
        product = self.matrix[rows] @ stacked.T
        return np.asarray(product.toarray(), dtype=np.float32)

    def reason(self, row: int, profile: Profile) -> str:
        """Name what pulled this paper in: the topics as the subscriber typed them, then terms from votes."""
        doc = self.matrix
        start, end = doc.indptr[row], doc.indptr[row + 1]
        weights_in_doc = dict(zip(doc.indices[start:end].tolist(), doc.data[start:end].tolist(), strict=True))

        matched_topics: list[tuple[float, str]] = []
        loose_terms: list[tuple[float, str]] = []
        for topic in profile.topics:
            vector = self._topic_vector(topic)
            topic_weights = dict(zip(vector.indices.tolist(), vector.data.tolist(), strict=True))
            hit = {f: w for f, w in topic_weights.items() if f in weights_in_doc}
            if not hit:
                continue
            if sum(hit.values()) >= TOPIC_MATCH_SHARE * sum(topic_weights.values()):
                matched_topics.append((sum(weights_in_doc[f] * w for f, w in hit.items()), topic))
            else:
                loose_terms.extend(
                    (weights_in_doc[f] * w, str(self.feature_names[f])) for f, w in hit.items()
                )
        keyword_terms = [t for _, t in sorted(matched_topics, reverse=True)]
        for _, term in sorted(loose_terms, reverse=True):
            if not _overlaps(term, keyword_terms):
                keyword_terms.append(term)
        keyword_terms = keyword_terms[:REASON_TERMS]

        keyword_features = set(profile.keyword_vector.indices.tolist())
        learned = [
            (weights_in_doc[f] * w, str(self.feature_names[f]))
            for f, w in zip(profile.vector.indices.tolist(), profile.vector.data.tolist(), strict=True)
            if w > 0 and f in weights_in_doc and f not in keyword_features
        ]
        # On equal weight the phrase says more than its words, so it goes first.
        learned.sort(key=lambda pair: (-round(pair[0], 6), -pair[1].count(" ")))
        learned_terms: list[str] = []
        for _, term in learned:
            if not _overlaps(term, keyword_terms + learned_terms):
                learned_terms.append(term)
            if len(learned_terms) >= REASON_TERMS:
                break

        parts = []
        if keyword_terms:
            parts.append("matches your topics: " + ", ".join(keyword_terms))
        if learned_terms:
            parts.append("like papers you asked for more of: " + ", ".join(learned_terms))
        text = "; ".join(parts) or "related to your interests"
        return text[0].upper() + text[1:]


def _unit(row: sp.csr_matrix) -> sp.csr_matrix:
    """L2-normalise one sparse row (sklearn's normalize costs more in argument checks than in maths here)."""
    norm = float(np.sqrt(row.data @ row.data)) if row.nnz else 0.0
    return row * (1.0 / norm) if norm > 0 else row


def _overlaps(term: str, chosen: Sequence[str]) -> bool:
    """'fine tuning' and 'tuning' say the same thing; keep the first (stronger) one."""
    words = set(term.split())
    return any(words <= set(other.split()) or set(other.split()) <= words for other in chosen)


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Positions of the k best allowed scores above zero, best first."""
    masked = np.where(allowed, scores, -np.inf)
    positive = int(np.count_nonzero(masked > 0))
    k = min(k, positive)
    if k == 0:
        return []
    part = np.argpartition(-masked, k - 1)[:k]
    best = part[np.argsort(-masked[part], kind="stable")]
    return [(int(i), float(masked[i])) for i in best]
