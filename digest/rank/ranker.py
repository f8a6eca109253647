"""The ranker of a run: what every block of subscribers shares (the window's papers as vectors, their
similarities, keyword priors, trending), and each block's picks with their reasons.

`digest.deliver.planning` claims the digests and writes the picks; this module decides them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.db import transaction
from digest.models import DigestItem, Listing
from digest.rank.adjust import MUTE, Adjustments, adjusted
from digest.rank.choose import Topics, balance_topics, choose_block, scores
from digest.rank.explain import Explainer
from digest.rank.features import listing_text
from digest.rank.learned import background_sample, current_space, learned_vectors, load_votes, store_learned
from digest.rank.profile import KeywordProfiles, can_learn, profile, train_learned
from digest.services import Services

# A paper is sent only if it scores above this: it shares something with what the reader asked for.
# A higher floor (0.05 was tried) sends short digests and costs more than it spares; see the README.
MIN_SCORE = 0.0
TRENDING_SIZE = 3
# Up to this many new listings, their pairwise similarity is kept for diversity (16 MB at 2,000).
MMR_MAX_DOCS = 2000

Pick = tuple[int, float, str, str]  # listing id, score, reason, section


class Ranking(dict[int, list[Pick]]):
    """A block's picks by subscriber id, and `quiet`: for each subscriber of the block, the topics (as
    typed) that had no good paper today, which planning stores on the digest (`Digest.quiet_topics`)."""

    def __init__(self, picks: dict[int, list[Pick]] | None = None, quiet: dict[int, list[str]] | None = None):
        super().__init__(picks or {})
        self.quiet: dict[int, list[str]] = quiet or {}


@dataclass(frozen=True)
class Candidate:
    digest_id: int
    subscriber_id: int
    topics: list[str]
    size: int
    since: datetime
    show_trending: bool = True
    # Terms muted or boosted on the preferences page (`digest.rank.adjust`); None for most readers.
    adjustments: Adjustments | None = None


class Ranker:
    """What every block of a run shares: the window's vectors, the similarity between them, trending."""

    def __init__(
        self,
        services: Services,
        session: Session,
        window_start: datetime,
        now: datetime,
        *,
        balance_topics: bool = True,
        refit_space: bool = True,
    ) -> None:
        """`refit_space=False` ranks in the saved space however old, for a page that must not refit."""
        self.services = services
        # False ranks without each topic's place (what tools/topic_coverage.py compares against).
        self.balance_topics = balance_topics
        self.space = current_space(services, refit=refit_space)
        self.window_start = window_start
        self.window = session.execute(
            select(Listing.id, Listing.first_seen_at, Listing.title, Listing.abstract, Listing.upvotes)
            .where(Listing.first_seen_at > window_start, Listing.first_seen_at <= now)
            .order_by(Listing.id)
        ).all()
        self.texts = {pos: listing_text(r.title, r.abstract) for pos, r in enumerate(self.window)}
        self.docs = self.space.transform(self.texts[pos] for pos in range(len(self.window)))
        self.similarity = (self.docs @ self.docs.T).toarray() if len(self.window) <= MMR_MAX_DOCS else None
        self.window_ids = np.array([r.id for r in self.window], dtype=np.int64)
        self.window_seen = np.array([r.first_seen_at.timestamp() for r in self.window])
        self.position_of = {int(listing_id): pos for pos, listing_id in enumerate(self.window_ids)}
        self.trending = [
            pos for pos, r in sorted(enumerate(self.window), key=lambda p: -(p[1].upvotes or 0)) if r.upvotes
        ]
        self.background = background_sample(session, self.space)
        self.keyword_profiles = KeywordProfiles(self.space, self.background)
        self.explainer = Explainer(self.space, self.texts, self.docs)

    def _already_sent(self, session: Session, subscriber_ids: list[int]) -> dict[int, list[int]]:
        sent: dict[int, list[int]] = defaultdict(list)
        for subscriber_id, listing_id in session.execute(
            select(DigestItem.subscriber_id, DigestItem.listing_id)
            .join(Listing, Listing.id == DigestItem.listing_id)
            .where(Listing.first_seen_at > self.window_start, DigestItem.subscriber_id.in_(subscriber_ids))
        ):
            if listing_id in self.position_of:
                sent[subscriber_id].append(self.position_of[listing_id])
        return sent

    def _learned(self, session: Session, subscriber_ids: list[int]) -> tuple[dict[int, Any], dict[int, Any]]:
        votes = load_votes(session, self.space, subscriber_ids)
        learned = learned_vectors(session, {sid: v.key for sid, v in votes.items()})
        for subscriber_id in [sid for sid, v in votes.items() if can_learn(v.votes) and sid not in learned]:
            # Normally the vote's own task has retrained already; this only catches up on missed ones.
            vector = train_learned(votes[subscriber_id].votes, self.background, seed=subscriber_id)
            if vector is not None:
                learned[subscriber_id] = vector
                with transaction(self.services.sessions) as write:
                    store_learned(write, subscriber_id, votes[subscriber_id].key, vector)
        return votes, learned

    def rank(self, session: Session, block: Sequence[Candidate]) -> Ranking:
        if not self.window:
            return Ranking()
        ids = [c.subscriber_id for c in block]
        already_sent = self._already_sent(session, ids)
        votes, learned = self._learned(session, ids)
        docs = self.docs
        block_scores = self.keyword_profiles.scores(docs, [c.topics for c in block])
        moved = {
            column: profile(
                self.keyword_profiles.vector(c.topics),
                votes[c.subscriber_id].votes,
                learned.get(c.subscriber_id),
            )
            for column, c in enumerate(block)
            if c.subscriber_id in votes
        }
        for column, c in enumerate(block):
            if c.adjustments:
                base = moved.get(column)
                moved[column] = adjusted(
                    base if base is not None else self.keyword_profiles.vector(c.topics), c.adjustments
                )
        if moved:
            columns = sorted(moved)
            block_scores[:, columns] = scores(docs, sp.vstack([moved[c] for c in columns], format="csr"))
        allowed_block = self.window_seen[:, None] > np.array([c.since.timestamp() for c in block])[None, :]
        for column, c in enumerate(block):
            allowed_block[already_sent.get(c.subscriber_id, []), column] = False
        chosen_of, quiet = self._choose(block, block_scores, allowed_block)
        liked = self._liked_similarity(block, votes)
        picks = Ranking(quiet=quiet)
        for column, candidate in enumerate(block):
            best = chosen_of[column]
            if not best:
                continue
            weights = None
            if column in moved:
                weights = dict(zip(moved[column].indices.tolist(), moved[column].data.tolist(), strict=True))
            titles, similarity = liked.get(candidate.subscriber_id, ([], None))
            chosen: list[Pick] = [
                (
                    int(self.window_ids[pos]),
                    score,
                    self.explainer.reason(
                        pos,
                        candidate.topics,
                        weights,
                        list(zip(titles, similarity[pos].tolist(), strict=True))
                        if similarity is not None
                        else (),
                    ),
                    "picks",
                )
                for pos, score in best
            ]
            if candidate.show_trending:
                chosen.extend(self._trending(block_scores, allowed_block, column, {pos for pos, _ in best}))
            picks[candidate.subscriber_id] = chosen
        return picks

    def _choose(
        self, block: Sequence[Candidate], block_scores: Any, allowed_block: Any
    ) -> tuple[list[list[tuple[int, float]]], dict[int, list[str]]]:
        """Each subscriber's papers, choosing for all subscribers of one digest size at once, then a place
        for each of their topics that has a good paper (`choose.balance_topics`); and the quiet topics."""
        chosen: list[list[tuple[int, float]]] = [[] for _ in block]
        columns_of: dict[int, list[int]] = defaultdict(list)
        for column, candidate in enumerate(block):
            columns_of[candidate.size].append(column)
        for size, columns in columns_of.items():
            every = len(columns) == len(block)
            result = choose_block(
                block_scores if every else block_scores[:, columns],
                allowed_block if every else allowed_block[:, columns],
                self.similarity,
                size,
                threshold=MIN_SCORE,
            )
            for column, best in zip(columns, result, strict=True):
                chosen[column] = best
        if not self.balance_topics:
            return chosen, {}
        # A typed topic the reader muted gets no guaranteed place, and is not reported as quiet.
        topics = [
            self.keyword_profiles.distinct([t for t in c.topics if not _muted(t, c.adjustments)])
            for c in block
        ]
        balanced = balance_topics(
            chosen,
            block_scores,
            allowed_block,
            Topics(
                self.keyword_profiles.topic_scores(self.docs),
                self.keyword_profiles.topic_floors(),
                self.keyword_profiles.topic_columns(topics),
            ),
            np.array([c.size for c in block]),
            threshold=MIN_SCORE,
        )
        quiet = {
            block[column].subscriber_id: [topics[column][j] for j in np.flatnonzero(silent)]
            for column, silent in enumerate(balanced.quiet)
            if silent.any()
        }
        return balanced.chosen, quiet

    def _liked_similarity(
        self, block: Sequence[Candidate], votes: dict[int, Any]
    ) -> dict[int, tuple[list[str], np.ndarray]]:
        """For each voter, their liked papers' titles and similarity to every paper of the run: one
        product for the whole block, for the reasons that name a liked paper."""
        voters = [
            c.subscriber_id for c in block if c.subscriber_id in votes and votes[c.subscriber_id].liked_titles
        ]
        if not voters:
            return {}
        stacked = sp.vstack([row for sid in voters for _, row in votes[sid].liked_titles], format="csr")
        similarity = self.explainer.liked_similarity(stacked)
        out: dict[int, tuple[list[str], np.ndarray]] = {}
        start = 0
        for sid in voters:
            titles = [title for title, _ in votes[sid].liked_titles]
            out[sid] = (titles, similarity[:, start : start + len(titles)])
            start += len(titles)
        return out

    def _trending(
        self, block_scores: Any, allowed_block: Any, column: int, taken: set[int]
    ) -> Iterator[Pick]:
        allowed = allowed_block[:, column]
        for pos in [p for p in self.trending if p not in taken and allowed[p]][:TRENDING_SIZE]:
            yield (
                int(self.window_ids[pos]),
                float(block_scores[pos, column]),
                f"{self.window[pos].upvotes} upvotes today",
                "trending",
            )


def _muted(topic: str, adjustments: Adjustments | None) -> bool:
    entry = (adjustments or {}).get(topic.strip())
    return entry is not None and entry.get("action") == MUTE
