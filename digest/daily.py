"""One day's digests: choose each subscriber's papers, then render and send each email.

Planning writes a `Digest` row (with its chosen items) per subscriber before anything is sent, and
commits; only then are the ids handed to the dispatcher. Sending claims a row with a compare-and-set
on its status, so a digest queued twice, or a run repeated for the same date, is sent once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from digest.db import transaction
from digest.delivery import DeliveryError, MailConnection, build_message
from digest.health import source_health
from digest.models import (
    Digest,
    DigestItem,
    DigestStatus,
    Listing,
    Subscriber,
    SubscriberStatus,
    Vote,
    utcnow,
)
from digest.profiles import background_sample, current_space, learned_vectors, load_votes, store_learned
from digest.ranking import (
    Explainer,
    KeywordProfiles,
    can_learn,
    choose_block,
    listing_text,
    profile,
    scores,
    train_learned,
)
from digest.rendering import trim_abstract
from digest.services import Dispatcher, Services

SCORING_BLOCK = 5000
# Below this cosine a paper is a weak match, not worth a reader's time.
MIN_SCORE = 0.05
TRENDING_SIZE = 3
# Up to this many new listings, their pairwise similarity is kept for diversity (16 MB at 2,000).
MMR_MAX_DOCS = 2000


@dataclass
class DayPlan:
    digest_date: date
    subscribers: int = 0
    to_send: list[int] = field(default_factory=list)
    nothing_new: int = 0
    # Listings stored inside the widest candidate window; zero means no subscriber could get anything.
    new_listings: int = 0
    window_start: datetime | None = None
    already_sent: int = 0


@dataclass
class RunSummary:
    digest_date: date
    subscribers: int
    sent: int
    nothing_new: int
    already_sent: int
    failed: int
    not_yet_sent: int
    failures: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class _Candidate:
    subscriber_id: int
    topics: list[str]
    size: int
    since: datetime
    show_trending: bool = True


def plan_day(services: Services, digest_date: date, *, now: datetime | None = None) -> DayPlan:
    """Rank each active subscriber's new listings and store the chosen papers as pending digests."""
    now = now or utcnow()
    settings = services.settings
    plan = DayPlan(digest_date)
    first_window_start = now - timedelta(days=settings.first_digest_lookback_days)

    with services.sessions() as session:
        subscribers = session.execute(
            select(Subscriber.id, Subscriber.topics, Subscriber.digest_size, Subscriber.show_trending)
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
            .order_by(Subscriber.id)
        ).all()
        plan.subscribers = len(subscribers)
        todays = dict(
            session.execute(
                select(Digest.subscriber_id, Digest.status).where(Digest.digest_date == digest_date)
            ).all()
        )
        previous_until = dict(
            session.execute(
                select(Digest.subscriber_id, func.max(Digest.candidates_until)).group_by(Digest.subscriber_id)
            ).all()
        )

        to_rank: list[_Candidate] = []
        for subscriber_id, topics, size, show_trending in subscribers:
            status = todays.get(subscriber_id)
            if status in (DigestStatus.SENT, DigestStatus.SENDING):
                plan.already_sent += 1
                continue
            if status is not None:
                continue  # pending or failed: re-queued below with the papers already chosen
            since = previous_until.get(subscriber_id) or first_window_start
            size = size or settings.digest_size
            to_rank.append(_Candidate(subscriber_id, list(topics), size, since, bool(show_trending)))

        plan.to_send.extend(
            session.scalars(
                select(Digest.id).where(
                    Digest.digest_date == digest_date,
                    Digest.status.in_([DigestStatus.PENDING, DigestStatus.FAILED]),
                )
            ).all()
        )
        if not to_rank:
            return plan
        plan.window_start = min(c.since for c in to_rank)
        plan.new_listings = _count_new(session, plan.window_start, now)
        picks = _rank(services, session, to_rank, now) if plan.new_listings else {}

    chosen_for = {c.subscriber_id: picks[c.subscriber_id] for c in to_rank if picks.get(c.subscriber_id)}
    plan.nothing_new = len(to_rank) - len(chosen_for)
    if not chosen_for:
        return plan
    with transaction(services.sessions) as session:
        digest_rows = session.execute(
            _insert_new(session, Digest, ["subscriber_id", "digest_date"]).returning(
                Digest.id, Digest.subscriber_id
            ),
            [
                {
                    "subscriber_id": subscriber_id,
                    "digest_date": digest_date,
                    "status": DigestStatus.PENDING,
                    "candidates_until": now,
                    "created_at": now,
                }
                for subscriber_id in chosen_for
            ],
        ).all()
        items = [
            {
                "digest_id": digest_id,
                "subscriber_id": subscriber_id,
                "listing_id": listing_id,
                "rank": rank,
                "score": score,
                "reason": reason,
                "section": section,
            }
            for digest_id, subscriber_id in digest_rows
            for rank, (listing_id, score, reason, section) in enumerate(chosen_for[subscriber_id], start=1)
        ]
        if items:
            session.execute(_insert_new(session, DigestItem, ["subscriber_id", "listing_id"]), items)
        plan.to_send.extend(digest_id for digest_id, _ in digest_rows)
        plan.already_sent += len(chosen_for) - len(digest_rows)
    return plan


def _insert_new(session: Session, model: type[Digest | DigestItem], unique: list[str]) -> Any:
    """An INSERT that skips rows a concurrent run already wrote, so two runs for one date plan once."""
    dialect = session.get_bind().dialect.name
    statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(model)
    return statement.on_conflict_do_nothing(index_elements=unique)


def _count_new(session: Session, since: datetime, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Listing)
            .where(Listing.first_seen_at > since, Listing.first_seen_at <= now)
        )
        or 0
    )


def _why_nothing_new(services: Services, since: datetime, now: datetime) -> str:
    """A day without listings is normal on a weekend and alarming on a Tuesday; say which this is."""
    with services.sessions() as session:
        report = source_health(session, now, services.settings.extra_holidays)
    head = f"no new listings since {since:%Y-%m-%d %H:%M} UTC"
    if not report:
        return f"{head}, and no sources are configured (`digest sources add`, or `digest ingest FILES`)"
    troubled = [h for h in report if h.state in ("stale", "failing", "never fetched")]
    if troubled:
        return f"{head}: " + "; ".join(f"{h.name} is {h.state} ({h.detail})" for h in troubled)
    return f"{head}; every source is healthy, just quiet: " + "; ".join(
        f"{h.name} {h.detail}" for h in report
    )


Pick = tuple[int, float, str, str]  # listing id, score, reason, section


def _rank(
    services: Services, session: Session, candidates: Sequence[_Candidate], now: datetime
) -> dict[int, list[Pick]]:
    """Score every candidate subscriber against the new listings, a block of subscribers per product."""
    space = current_space(services)
    window_start = min(c.since for c in candidates)
    window = session.execute(
        select(Listing.id, Listing.first_seen_at, Listing.title, Listing.abstract, Listing.upvotes)
        .where(Listing.first_seen_at > window_start, Listing.first_seen_at <= now)
        .order_by(Listing.id)
    ).all()
    if not window:
        return {}
    texts = {pos: listing_text(r.title, r.abstract) for pos, r in enumerate(window)}
    docs = space.transform(texts[pos] for pos in range(len(window)))
    similarity = (docs @ docs.T).toarray() if len(window) <= MMR_MAX_DOCS else None
    window_ids = np.array([r.id for r in window], dtype=np.int64)
    window_seen = np.array([r.first_seen_at.timestamp() for r in window])
    position_of = {int(listing_id): pos for pos, listing_id in enumerate(window_ids)}
    trending = [pos for pos, r in sorted(enumerate(window), key=lambda p: -(p[1].upvotes or 0)) if r.upvotes]

    already_sent: dict[int, list[int]] = defaultdict(list)
    for subscriber_id, listing_id in session.execute(
        select(DigestItem.subscriber_id, DigestItem.listing_id)
        .join(Listing, Listing.id == DigestItem.listing_id)
        .where(Listing.first_seen_at > window_start)
    ):
        if listing_id in position_of:
            already_sent[subscriber_id].append(position_of[listing_id])

    votes = load_votes(session, space, [c.subscriber_id for c in candidates])
    learned = learned_vectors(session, {sid: v.key for sid, v in votes.items()})
    background = background_sample(session, space)
    stale = [sid for sid, v in votes.items() if can_learn(v.votes) and sid not in learned]
    for subscriber_id in stale:
        # Normally the vote's own task has retrained already; this only catches up on missed ones.
        vector = train_learned(votes[subscriber_id].votes, background, seed=subscriber_id)
        if vector is not None:
            learned[subscriber_id] = vector
            with transaction(services.sessions) as write:
                store_learned(write, subscriber_id, votes[subscriber_id].key, vector)

    keyword_profiles = KeywordProfiles(space, background)
    explainer = Explainer(space, texts, docs)
    picks: dict[int, list[Pick]] = {}
    for start in range(0, len(candidates), SCORING_BLOCK):
        block = candidates[start : start + SCORING_BLOCK]
        block_scores = keyword_profiles.scores(docs, [c.topics for c in block])
        moved = {
            column: profile(
                keyword_profiles.vector(c.topics), votes[c.subscriber_id].votes, learned.get(c.subscriber_id)
            )
            for column, c in enumerate(block)
            if c.subscriber_id in votes
        }
        if moved:
            columns = sorted(moved)
            block_scores[:, columns] = scores(docs, sp.vstack([moved[c] for c in columns], format="csr"))
        allowed_block = window_seen[:, None] > np.array([c.since.timestamp() for c in block])[None, :]
        for column, c in enumerate(block):
            allowed_block[already_sent.get(c.subscriber_id, []), column] = False
        chosen_by_size = {
            size: choose_block(block_scores, allowed_block, similarity, size, threshold=MIN_SCORE)
            for size in {c.size for c in block}
        }
        for column, candidate in enumerate(block):
            best = chosen_by_size[candidate.size][column]
            if not best:
                continue
            vector = moved.get(column)
            allowed = allowed_block[:, column]
            mine = votes.get(candidate.subscriber_id)
            liked = mine.liked_titles if mine else []
            chosen: list[Pick] = [
                (
                    int(window_ids[pos]),
                    score,
                    explainer.reason(pos, candidate.topics, vector, liked),
                    "picks",
                )
                for pos, score in best
            ]
            if candidate.show_trending:
                taken = {pos for pos, _ in best}
                for pos in [p for p in trending if p not in taken and allowed[p]][:TRENDING_SIZE]:
                    upvotes = window[pos].upvotes
                    chosen.append(
                        (
                            int(window_ids[pos]),
                            float(block_scores[pos, column]),
                            f"{upvotes} upvotes today",
                            "trending",
                        )
                    )
            picks[candidate.subscriber_id] = chosen
    return picks


class SendResult(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


def _claim(services: Services, digest_id: int) -> bool:
    """Take a digest for sending; False when another worker (or an earlier run) already has it."""
    with transaction(services.sessions) as session:
        claimed = session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status.in_([DigestStatus.PENDING, DigestStatus.FAILED]))
            .values(status=DigestStatus.SENDING, error=None)
            .execution_options(synchronize_session=False)
        )
        return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def _finish(
    services: Services, digest_id: int, *, message_id: str | None = None, error: str | None = None
) -> None:
    with transaction(services.sessions) as session:
        values: dict[str, object]
        if error is None:
            values = {"status": DigestStatus.SENT, "sent_at": utcnow(), "message_id": message_id}
        else:
            values = {"status": DigestStatus.FAILED, "error": error[:2000]}
        session.execute(update(Digest).where(Digest.id == digest_id).values(**values))


def digest_context(services: Services, row: Digest) -> dict[str, object]:
    links = services.links
    subscriber = row.subscriber

    def entries(section: str) -> list[dict[str, object]]:
        return [
            {
                "rank": rank,
                "title": item.listing.title,
                "url": item.listing.url,
                "abstract": trim_abstract(item.listing.abstract),
                "reason": item.reason,
                "authors": list(item.listing.authors or []),
                "more_url": links.feedback_url(subscriber.public_id, item.listing_id, Vote.MORE),
                "less_url": links.feedback_url(subscriber.public_id, item.listing_id, Vote.LESS),
            }
            for rank, item in enumerate((i for i in row.items if i.section == section), start=1)
        ]

    return {
        "subscriber_email": subscriber.email,
        "topics": list(subscriber.topics),
        "digest_date": row.digest_date,
        "items": entries("picks"),
        "trending": entries("trending"),
        "unsubscribe_url": links.unsubscribe_url(subscriber.public_id),
        "preferences_url": links.preferences_url(subscriber.public_id),
    }


def send_digests(services: Services, digest_ids: Sequence[int]) -> dict[int, SendResult]:
    """Send a batch over one mail connection, opened only once there is something to send."""
    results: dict[int, SendResult] = {}
    with ExitStack() as stack:
        connection: MailConnection | None = None
        for digest_id in digest_ids:
            if not _claim(services, digest_id):
                results[digest_id] = SendResult.SKIPPED
                continue
            with services.sessions() as session:
                row = session.scalars(
                    select(Digest)
                    .where(Digest.id == digest_id)
                    .options(
                        selectinload(Digest.subscriber),
                        selectinload(Digest.items).selectinload(DigestItem.listing),
                    )
                ).one()
                subscriber = row.subscriber
                if subscriber.status != SubscriberStatus.ACTIVE:
                    _finish(services, digest_id, error=f"not sent: subscriber is {subscriber.status.value}")
                    results[digest_id] = SendResult.FAILED
                    continue
                context = digest_context(services, row)
                message = build_message(
                    services.settings,
                    to=subscriber.email,
                    rendered=services.renderer.render("digest", context),
                    unsubscribe_url=str(context["unsubscribe_url"]),
                )
            try:
                if connection is None:
                    connection = stack.enter_context(services.mailer.open())
                connection.send(message)
            except DeliveryError as exc:
                kind = "permanent" if exc.permanent else "temporary"
                _finish(services, digest_id, error=f"{kind} delivery failure: {exc}")
                results[digest_id] = SendResult.FAILED
                if connection is None or not exc.permanent:
                    # The connection itself is gone; the rest stay pending for the next attempt.
                    break
                continue
            _finish(services, digest_id, message_id=str(message["Message-ID"]))
            results[digest_id] = SendResult.SENT
    return results


def summarize(services: Services, plan: DayPlan) -> RunSummary:
    with services.sessions() as session:
        rows = session.execute(
            select(Digest.status, Digest.error, Subscriber.email)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(Digest.id.in_(plan.to_send))
        ).all()
    counts: dict[DigestStatus, int] = defaultdict(int)
    failures = []
    for status, error, email in rows:
        counts[status] += 1
        if status == DigestStatus.FAILED:
            failures.append(f"{email}: {error}")
    return RunSummary(
        digest_date=plan.digest_date,
        subscribers=plan.subscribers,
        sent=counts[DigestStatus.SENT],
        nothing_new=plan.nothing_new,
        already_sent=plan.already_sent,
        failed=counts[DigestStatus.FAILED],
        not_yet_sent=counts[DigestStatus.PENDING] + counts[DigestStatus.SENDING],
        failures=failures,
    )


def run_day(
    services: Services, digest_date: date, dispatcher: Dispatcher, *, now: datetime | None = None
) -> RunSummary:
    now = now or utcnow()
    plan = plan_day(services, digest_date, now=now)
    if plan.to_send:
        dispatcher.send_digests(plan.to_send)
    summary = summarize(services, plan)
    if plan.window_start is not None and plan.new_listings == 0:
        summary.note = _why_nothing_new(services, plan.window_start, now)
    return summary
