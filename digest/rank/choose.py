"""Choosing each subscriber's papers from their scores: a top k by maximal marginal relevance, then a
place for each typed topic that has a good paper but was outscored by the reader's other topics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Maximal marginal relevance: how much a near-repeat of a chosen paper is penalised, among how many.
DIVERSITY = 0.1
MMR_POOL = 30
# A paper on one of the reader's topics is a good one if its match with that topic alone reaches this
# share of the overall score of the digest's last place: summed related topics (LoRA, parameter-efficient
# fine-tuning) can double a paper's score, so one that matches a single topic as squarely scores half.
TOPIC_SHARE = 0.5


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


@dataclass(frozen=True)
class Topics:
    """A block's topics: `scores` (documents × distinct topics) is each paper's match with each topic
    alone, `floors` (distinct topics,) what most stored papers reach by chance, and `columns`
    (subscribers × topics) each subscriber's topics as indexes into both, -1 where they have fewer."""

    scores: np.ndarray
    floors: np.ndarray
    columns: np.ndarray


@dataclass
class TopicBalance:
    """Each subscriber's picks once every topic with a good paper has a place, and the topics without one.

    `quiet[s, j]` is true where subscriber s's j-th topic (`Topics.columns[s, j]`) had no good paper.
    """

    chosen: list[list[tuple[int, float]]]
    quiet: np.ndarray


def _covers(doc_topic: np.ndarray, docs: np.ndarray, column: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """Per subscriber (row of `docs`, -1 for none): whether one of the docs reaches `bar` on `column`."""
    on_topic = doc_topic[np.maximum(docs, 0), np.maximum(column, 0)[:, None]]
    covered: np.ndarray = np.any((docs >= 0) & (on_topic >= bar[:, None]), axis=1) & (column >= 0)
    return covered


def balance_topics(
    chosen: Sequence[list[tuple[int, float]]],
    block: np.ndarray,
    allowed: np.ndarray,
    topics: Topics,
    sizes: np.ndarray,
    *,
    threshold: float,
) -> TopicBalance:
    """Give each typed topic that has a good paper at least one of the subscriber's places.

    A prior sums its topics, so papers on two related topics (LoRA, parameter-efficient fine-tuning)
    outscore papers on a third (diffusion) and can fill the whole digest. A good paper on a topic is
    one whose match with that topic alone clears two bars: the subscriber's own (`TOPIC_SHARE` of the
    overall score of their digest's last place), and the topic's floor (what most stored papers reach
    by chance), so a weak day's noise is not taken for news. A topic that a pick already covers needs
    nothing; otherwise its best paper (among those the subscriber may get) takes the place of the last
    pick that no other topic relies on. A topic with no good paper is quiet. One-topic readers are left
    as they are: their picks are their topic.

    `block`/`allowed` are (documents × subscribers); `sizes` is each subscriber's number of places.
    """
    topic_scores, topic_columns = topics.scores, topics.columns
    result = list(chosen)
    quiet = np.zeros(topic_columns.shape, dtype=bool)
    if not result or topic_columns.shape[1] == 0:
        return TopicBalance(result, quiet)
    has_picks = np.array([bool(c) for c in chosen])
    quiet[~has_picks] = topic_columns[~has_picks] >= 0
    several = np.flatnonzero(has_picks & ((topic_columns >= 0).sum(axis=1) >= 2))
    if several.size == 0:
        return TopicBalance(result, quiet)
    lists = [chosen[s] for s in several.tolist()]
    picked = np.full((several.size, max(len(c) for c in lists)), -1, dtype=np.int64)
    for row, picks_of_one in enumerate(lists):
        picked[row, : len(picks_of_one)] = [doc for doc, _ in picks_of_one]
    last_place = np.array([min(score for _, score in c) for c in lists], dtype=np.float32)
    columns = topic_columns[several]
    floors = np.where(columns >= 0, topics.floors[np.maximum(columns, 0)], np.inf)
    bars = np.maximum(TOPIC_SHARE * last_place[:, None], floors)  # (subscribers × topics)
    covered = np.zeros(columns.shape, dtype=bool)
    best_doc = np.zeros(columns.shape, dtype=np.int64)
    best_score = np.full(columns.shape, -np.inf, dtype=np.float32)
    for j in range(columns.shape[1]):
        covered[:, j] = _covers(topic_scores, picked, columns[:, j], bars[:, j])
        need = np.flatnonzero((columns[:, j] >= 0) & ~covered[:, j])
        if need.size == 0:
            continue
        subscribers = several[need]
        eligible = allowed[:, subscribers] & (block[:, subscribers] > threshold)
        on_topic = np.where(eligible, topic_scores[:, columns[need, j]], -np.inf)
        best_doc[need, j] = np.argmax(on_topic, axis=0)
        best_score[need, j] = on_topic[best_doc[need, j], np.arange(need.size)]
    good = (best_score >= bars) & (best_score > 0)
    heard = covered.copy()
    for row in np.flatnonzero(np.any(good, axis=1)).tolist():
        subscriber = int(several[row])
        picks = list(chosen[subscriber])
        topic_of_row = np.maximum(columns[row], 0)
        # (picks × topics): which pick is a good paper for which topic, kept up to date as places change.
        on = (topic_scores[picked[row, : len(picks), None], topic_of_row[None, :]] >= bars[row]) & (
            columns[row] >= 0
        )
        given = np.zeros(len(picks), dtype=bool)  # places already handed to a topic
        for j in sorted(np.flatnonzero(good[row]).tolist(), key=lambda j: -best_score[row, j]):
            if on[:, j].any():
                heard[row, j] = True  # a paper placed for an earlier topic is on this one too
                continue
            doc = int(best_doc[row, j])
            doc_on = (topic_scores[doc, topic_of_row] >= bars[row]) & (columns[row] >= 0)
            if len(picks) < sizes[subscriber]:
                place = len(picks)
                picks.append((doc, 0.0))
                on, given = np.vstack([on, doc_on]), np.append(given, False)
            else:
                # The last place not handed to a topic whose paper is no topic's only good one.
                spare = np.flatnonzero(~given & ~np.any(on & (on.sum(axis=0) == 1), axis=1))
                if spare.size == 0:
                    continue
                place = int(spare[-1])
            picks[place] = (doc, float(block[doc, subscriber]))
            on[place], given[place] = doc_on, True
            heard[row, j] = True
        result[subscriber] = picks
    quiet[several] = (columns >= 0) & ~heard & ~good
    return TopicBalance(result, quiet)
