"""Choosing each subscriber's papers from their scores: a top k by maximal marginal relevance."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Maximal marginal relevance: how much a near-repeat of a chosen paper is penalised, among how many.
DIVERSITY = 0.1
MMR_POOL = 30


def scores(docs: sp.csr_matrix, profiles: sp.csr_matrix) -> np.ndarray:
    """(documents × subscribers) cosine-like scores in one sparse product."""
    if docs.shape[0] == 0 or profiles.shape[0] == 0:
        return np.zeros((docs.shape[0], profiles.shape[0]), dtype=np.float32)
    return np.asarray((docs @ profiles.T).toarray(), dtype=np.float32)


def choose(
    column: np.ndarray,
    allowed: np.ndarray,
    similarity: np.ndarray | None,
    k: int,
    *,
    threshold: float,
    diversity: float | None = None,
    pool: int | None = None,
) -> list[tuple[int, float]]:
    """`choose_block` for one subscriber."""
    return choose_block(
        column[:, None], allowed[:, None], similarity, k, threshold=threshold, diversity=diversity, pool=pool
    )[0]


def choose_block(
    block: np.ndarray,
    allowed: np.ndarray,
    similarity: np.ndarray | None,
    k: int,
    *,
    threshold: float,
    diversity: float | None = None,
    pool: int | None = None,
) -> list[list[tuple[int, float]]]:
    """For each column (subscriber), the k best allowed rows above `threshold` by maximal marginal relevance.

    `similarity` is the documents' own cosine matrix (computed once per run); an item that nearly repeats
    one already chosen loses `diversity` times that similarity, so one email does not carry three versions
    of the same paper. The greedy selection runs for all the block's subscribers at once: the cost per
    subscriber is a few vector operations, not a Python loop.
    """
    diversity = DIVERSITY if diversity is None else diversity
    pool = MMR_POOL if pool is None else pool
    n_docs, n_subscribers = block.shape
    if n_docs == 0 or n_subscribers == 0 or k <= 0:
        return [[] for _ in range(n_subscribers)]
    # Subscribers as rows, so each one's papers lie together in memory for the partial sort.
    masked = np.where((allowed & (block > threshold)).T, block.T, -np.inf).astype(np.float32, copy=False)
    take = min(pool, n_docs)
    candidates = np.argpartition(-masked, take - 1, axis=1)[:, :take]  # (subscribers, take)
    candidate_scores = np.take_along_axis(masked, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    candidates = np.take_along_axis(candidates, order, axis=1)
    candidate_scores = np.take_along_axis(candidate_scores, order, axis=1)
    eligible = np.isfinite(candidate_scores)

    if similarity is None or diversity <= 0:
        picks = np.arange(min(k, take))[None, :].repeat(n_subscribers, axis=0)
        valid = np.take_along_axis(eligible, picks, axis=1)
    else:
        pair_similarity = similarity[candidates[:, :, None], candidates[:, None, :]]  # (subs, take, take)
        redundancy = np.zeros_like(candidate_scores)
        available = eligible.copy()
        picks = np.zeros((n_subscribers, min(k, take)), dtype=np.int64)
        valid = np.zeros(picks.shape, dtype=bool)
        rows = np.arange(n_subscribers)
        for step in range(picks.shape[1]):
            gains = np.where(available, candidate_scores - diversity * redundancy, -np.inf)
            best = np.argmax(gains, axis=1)
            picks[:, step] = best
            valid[:, step] = np.isfinite(gains[rows, best])
            available[rows, best] = False
            redundancy = np.maximum(redundancy, pair_similarity[rows, best, :])
    result: list[list[tuple[int, float]]] = []
    for subscriber in range(n_subscribers):
        chosen = []
        for position, ok in zip(picks[subscriber], valid[subscriber], strict=True):
            if ok:
                chosen.append(
                    (int(candidates[subscriber, position]), float(candidate_scores[subscriber, position]))
                )
        result.append(chosen)
    return result
