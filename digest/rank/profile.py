"""Subscribers' weight vectors: the keyword prior, Rocchio moves from votes, and a learned model.

A profile is always one sparse row in the feature space, so scoring a block of subscribers against the
day's papers is a single product, however each profile was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from digest.rank.features import N_FEATURES, FeatureSpace, centroid, unit_rows, weighted_sum

KEYWORD_WEIGHT = 1.0
LIKED_WEIGHT = 0.75
DISLIKED_WEIGHT = 0.25
PSEUDO_FEEDBACK_DOCS = 5
PSEUDO_FEEDBACK_WEIGHT = 0.3
# A paper is a good one for a topic only if it matches the topic better than this share of stored papers.
TOPIC_FLOOR_PERCENTILE = 90.0
# Votes needed before a learned model joins the keyword prior, and how fast it takes over.
MIN_VOTES_TO_LEARN = 4
MIN_LIKES_TO_LEARN = 2
LEARNED_HALF_WEIGHT_VOTES = 8
MAX_LEARNED_SHARE = 0.8
LEARNED_FEATURES_KEPT = 4000
WEAK_NEGATIVES = 200
WEAK_NEGATIVE_WEIGHT = 0.2


@dataclass
class Votes:
    """A subscriber's votes as document rows in the feature space."""

    liked: sp.csr_matrix
    disliked: sp.csr_matrix

    @property
    def count(self) -> int:
        return int(self.liked.shape[0] + self.disliked.shape[0])


def pseudo_feedback(space: FeatureSpace, keyword: sp.csr_matrix, corpus: sp.csr_matrix) -> sp.csr_matrix:
    """Cold start: lean the keywords toward the corpus papers they match best (the top few, weighted)."""
    if keyword.nnz == 0 or corpus.shape[0] == 0:
        return keyword
    scores = np.asarray((corpus @ keyword.T).todense()).ravel()
    top = np.argsort(-scores)[:PSEUDO_FEEDBACK_DOCS]
    top = top[scores[top] > 0]
    if len(top) == 0:
        return keyword
    leaning = centroid(corpus[top])
    return unit_rows(weighted_sum([(1.0, keyword), (PSEUDO_FEEDBACK_WEIGHT, leaning)]))


class KeywordProfiles:
    """Subscribers' keyword priors, built for a whole block of subscribers in one sparse product.

    Each distinct topic is vectorised and sharpened by pseudo-relevance feedback once per run (there are
    far fewer topics than subscribers); a subscriber's prior is the normalised sum of their topics' rows.
    """

    def __init__(self, space: FeatureSpace, corpus: sp.csr_matrix) -> None:
        self.space = space
        self.corpus = corpus
        self._row_of: dict[str, int] = {}
        self._rows: list[sp.csr_matrix] = []
        self._stacked: sp.csr_matrix | None = None
        self._products: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        self._floors = np.zeros(0, dtype=np.float32)

    def _topic_row(self, topic: str) -> int:
        key = topic.casefold().strip()
        row = self._row_of.get(key)
        if row is None:
            row = len(self._rows)
            self._rows.append(pseudo_feedback(self.space, self.space.topic_vector(topic), self.corpus))
            self._row_of[key] = row
            self._stacked = None
        return row

    def vector(self, topics: Sequence[str]) -> sp.csr_matrix:
        """One subscriber's prior, summed from the stored values (no million-column product)."""
        rows = [self._topic_row(topic) for topic in topics]
        return unit_rows(weighted_sum([(1.0, self._rows[row]) for row in rows]))

    def distinct(self, topics: Sequence[str]) -> list[str]:
        """The subscriber's topics as typed, one per topic row: a topic typed twice is heard once."""
        seen: set[int] = set()
        out = []
        for topic in topics:
            row = self._topic_row(topic)
            if row not in seen:
                seen.add(row)
                out.append(topic)
        return out

    def topic_columns(self, topic_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """(subscribers × most topics) columns of `topic_scores`, in each one's `distinct` order, -1 after."""
        rows = [[self._topic_row(t) for t in self.distinct(topics)] for topics in topic_lists]
        columns = np.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=np.int64)
        for subscriber, subscriber_rows in enumerate(rows):
            columns[subscriber, : len(subscriber_rows)] = subscriber_rows
        return columns

    def topic_scores(self, docs: sp.csr_matrix) -> np.ndarray:
        """(documents × distinct topics): how well each paper matches each topic on its own."""
        return self._product(docs)[0]

    def topic_floors(self) -> np.ndarray:
        """(distinct topics,): the score that most stored papers stay under, per topic: what matching a
        topic by chance (a shared common word, the feedback's leaning) reaches, computed once per topic."""
        if len(self._floors) < len(self._rows):
            new = sp.vstack(self._rows[len(self._floors) :], format="csr")
            if self.corpus.shape[0] == 0:
                floors = np.zeros(new.shape[0], dtype=np.float32)
            else:
                chance = np.asarray((self.corpus @ new.T).toarray(), dtype=np.float32)
                floors = np.percentile(chance, TOPIC_FLOOR_PERCENTILE, axis=0).astype(np.float32)
            self._floors = np.concatenate([self._floors, floors])
        return self._floors

    def _product(self, docs: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        key = (id(docs), len(self._rows))
        if self._products is None or self._products[0] != key:
            # Once per run, plus once more for each block that brings topics no earlier block had.
            if self._stacked is None:
                self._stacked = (
                    sp.vstack(self._rows, format="csr") if self._rows else sp.csr_matrix((0, N_FEATURES))
                )
            doc_topic = np.asarray((docs @ self._stacked.T).toarray(), dtype=np.float32)
            gram = np.asarray((self._stacked @ self._stacked.T).toarray(), dtype=np.float32)
            self._products = (key, doc_topic, gram)
        return self._products[1], self._products[2]

    def scores(self, docs: sp.csr_matrix, topic_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """What scoring `docs` against each subscriber's `vector` gives, without a row per subscriber.

        A prior is a normalised sum of topic rows T, so docs·prior = (docs·Tᵀ)·a / ‖a·T‖ for the
        subscriber's topic indicator a: one small dense product per block instead of a sparse one
        whose size grows with every subscriber's terms.
        """
        indices = [[self._topic_row(t) for t in topics] for topics in topic_lists]
        membership = np.zeros((len(topic_lists), len(self._rows)), dtype=np.float32)
        for subscriber, rows in enumerate(indices):
            membership[subscriber, rows] = 1.0
        doc_topic, gram = self._product(docs)
        norms = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", membership, gram, membership), 0))
        norms[norms == 0] = 1.0
        result: np.ndarray = (doc_topic @ membership.T) / norms[None, :]
        return result


def rocchio(keyword: sp.csr_matrix, votes: Votes) -> sp.csr_matrix:
    parts = [(KEYWORD_WEIGHT, keyword)]
    if votes.liked.shape[0]:
        parts.append((LIKED_WEIGHT / votes.liked.shape[0], votes.liked))
    if votes.disliked.shape[0]:
        parts.append((-DISLIKED_WEIGHT / votes.disliked.shape[0], votes.disliked))
    return unit_rows(weighted_sum(parts))


def can_learn(votes: Votes) -> bool:
    return votes.count >= MIN_VOTES_TO_LEARN and votes.liked.shape[0] >= MIN_LIKES_TO_LEARN


def train_learned(votes: Votes, background: sp.csr_matrix, seed: int = 0) -> sp.csr_matrix | None:
    """A per-subscriber linear classifier: liked vs disliked, with other papers as weak negatives.

    Its cost depends on the subscriber's votes and the fixed background sample, not on the corpus size.
    Only the strongest weights are kept, so the learned row stays sparse and cheap to score.
    """
    if not can_learn(votes):
        return None
    rng = np.random.default_rng(seed)
    sample = background[
        rng.choice(background.shape[0], min(WEAK_NEGATIVES, background.shape[0]), replace=False)
    ]
    features = sp.vstack([votes.liked, votes.disliked, sample], format="csr")
    labels = np.r_[np.ones(votes.liked.shape[0]), np.zeros(votes.disliked.shape[0] + sample.shape[0])]
    weights = np.r_[np.ones(votes.count), np.full(sample.shape[0], WEAK_NEGATIVE_WEIGHT)]
    # Fit on the columns the training papers use, not all 2^20: the solver's cost grows with the width.
    features.sum_duplicates()
    used = np.unique(features.indices)
    narrow = sp.csr_matrix(
        (features.data, np.searchsorted(used, features.indices), features.indptr),
        shape=(features.shape[0], len(used)),
    )
    model = LogisticRegression(C=4.0, class_weight="balanced", solver="liblinear", max_iter=200)
    model.fit(narrow, labels, sample_weight=weights)
    coef = model.coef_.ravel().astype(np.float32)
    keep = np.argsort(-np.abs(coef))[:LEARNED_FEATURES_KEPT]
    keep = keep[coef[keep] != 0]
    learned = sp.csr_matrix(
        (coef[keep], (np.zeros(len(keep), dtype=np.int64), used[keep])), shape=(1, N_FEATURES)
    )
    return unit_rows(learned)


def learned_share(votes: Votes) -> float:
    """How much of the profile the learned model gets: more votes, more trust, never all of it."""
    return min(MAX_LEARNED_SHARE, votes.count / (votes.count + LEARNED_HALF_WEIGHT_VOTES))


def profile(keyword: sp.csr_matrix, votes: Votes, learned: sp.csr_matrix | None) -> sp.csr_matrix:
    moved = rocchio(keyword, votes)
    if learned is None or learned.nnz == 0:
        return moved
    share = learned_share(votes)
    return unit_rows(weighted_sum([(1 - share, moved), (share, learned)]))
