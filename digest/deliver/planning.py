"""Opening digests and choosing their papers: the rank stage.

A digest row is opened for a subscriber when their delivery is due (or when an operator runs a day by
hand), before anything is ranked, so a crash between the two loses nothing: an opened digest without
papers is ranked by the next tick. Both steps claim rows with a compare-and-set update, so two beats,
two ticks or two `digest run`s never open or rank the same digest twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, String, and_, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest.db import transaction
from digest.deliver.schedule import digest_date_for, next_slot, schedule_of
from digest.models import (
    Cadence,
    Digest,
    DigestItem,
    DigestStatus,
    Listing,
    Subscriber,
    SubscriberStatus,
    UTCDateTime,
)
from digest.rank.ranker import Candidate, Ranker, Ranking
from digest.services import Services

SCORING_BLOCK = 5000
# Subscribers claimed per statement; keeps parameter lists well inside every backend's limits.
CLAIM_CHUNK = 5000


def insert_new(session: Session, model: type[Any]) -> Any:
    """An INSERT that skips rows a concurrent writer already stored (by any unique key)."""
    dialect = session.get_bind().dialect.name
    return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(model).on_conflict_do_nothing()


def _active() -> Any:
    return and_(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.cadence != Cadence.PAUSED)


@dataclass
class Opened:
    digest_ids: list[int] = field(default_factory=list)
    scheduled: int = 0
    # Due subscribers whose digest for that date already existed (a manual run got there first).
    already_open: int = 0


def schedule_unscheduled(services: Services, now: datetime) -> int:
    """Give subscribers who just confirmed, resumed or changed their schedule their next delivery time."""
    total = 0
    while True:
        with transaction(services.sessions) as session:
            rows = session.execute(
                select(
                    Subscriber.id,
                    Subscriber.cadence,
                    Subscriber.send_hour,
                    Subscriber.timezone,
                    Subscriber.weekly_day,
                )
                .where(_active(), Subscriber.next_due_at.is_(None))
                .limit(CLAIM_CHUNK)
            ).all()
            groups: dict[datetime, list[int]] = defaultdict(list)
            for row in rows:
                slot = next_slot(schedule_of(row), now)
                if slot is not None:
                    groups[slot.due_at].append(row.id)
            for due_at, ids in groups.items():
                result = session.execute(
                    update(Subscriber)
                    .where(Subscriber.id.in_(ids), Subscriber.next_due_at.is_(None))
                    .values(next_due_at=due_at)
                    .execution_options(synchronize_session=False)
                )
                total += int(result.rowcount)  # type: ignore[attr-defined]
        if len(rows) < CLAIM_CHUNK:
            return total


def open_due(services: Services, now: datetime) -> Opened:
    """Claim every subscriber whose delivery is due and open their digest for the day.

    The claim moves `next_due_at` on to the following slot with a compare-and-set on its old value,
    grouped by schedule so one UPDATE claims everyone sharing a delivery time; whoever's update
    changes a row owns that delivery. Each chunk commits its claims together with the digest rows.
    """
    opened = Opened(scheduled=schedule_unscheduled(services, now))
    while True:
        with transaction(services.sessions) as session:
            rows = session.execute(
                select(
                    Subscriber.id,
                    Subscriber.next_due_at,
                    Subscriber.cadence,
                    Subscriber.send_hour,
                    Subscriber.timezone,
                    Subscriber.weekly_day,
                )
                .where(_active(), Subscriber.next_due_at <= now)
                .order_by(Subscriber.next_due_at)
                .limit(CLAIM_CHUNK)
            ).all()
            groups: dict[tuple[datetime, datetime | None, date], list[int]] = defaultdict(list)
            for row in rows:
                schedule = schedule_of(row)
                slot = next_slot(schedule, now)
                groups[
                    (row.next_due_at, slot.due_at if slot else None, digest_date_for(schedule, now))
                ].append(row.id)
            claimed: list[tuple[int, date]] = []
            for (old_due, new_due, digest_date), ids in groups.items():
                owned = session.scalars(
                    update(Subscriber)
                    .where(Subscriber.id.in_(ids), Subscriber.next_due_at == old_due)
                    .values(next_due_at=new_due)
                    .returning(Subscriber.id)
                    .execution_options(synchronize_session=False)
                ).all()
                claimed.extend((subscriber_id, digest_date) for subscriber_id in owned)
            if claimed:
                new_ids = session.scalars(
                    insert_new(session, Digest).returning(Digest.id),
                    [
                        {
                            "subscriber_id": subscriber_id,
                            "digest_date": digest_date,
                            "status": DigestStatus.PENDING,
                            "candidates_until": now,
                            "created_at": now,
                        }
                        for subscriber_id, digest_date in claimed
                    ],
                ).all()
                opened.digest_ids.extend(new_ids)
                opened.already_open += len(claimed) - len(new_ids)
        if len(rows) < CLAIM_CHUNK:
            return opened


def open_day(services: Services, digest_date: date, now: datetime) -> Opened:
    """Open a digest dated `digest_date` for every active subscriber at once (`digest run`, the demo)."""
    with transaction(services.sessions) as session:
        opened = session.scalars(
            insert_new(session, Digest)
            .from_select(
                ["subscriber_id", "digest_date", "status", "candidates_until", "created_at"],
                select(
                    Subscriber.id,
                    literal(digest_date, Date),
                    literal(DigestStatus.PENDING.value, String(20)),
                    literal(now, UTCDateTime),
                    literal(now, UTCDateTime),
                ).where(_active()),
            )
            .returning(Digest.id)
        ).all()
    return Opened(digest_ids=sorted(opened))


@dataclass
class Planned:
    planned: int = 0
    empty: int = 0
    # Listings stored in the widest candidate window ranked; zero means nobody could get anything.
    new_listings: int = 0
    window_start: datetime | None = None


def plan_pending(
    services: Services, now: datetime, on_planned: Callable[[list[int]], None] | None = None
) -> Planned:
    """Choose the papers of every opened digest that has none yet.

    Each block of subscribers is written (and handed to `on_planned`, which queues the sends) as soon
    as it is ranked, so the first emails leave while later blocks are still being scored.
    """
    report = Planned()
    candidates = claim_for_planning(services, now)
    if not candidates:
        return report
    report.window_start = min(c.since for c in candidates)
    with services.sessions() as session:
        report.new_listings = _count_new(session, report.window_start, now)
        ranker = Ranker(services, session, report.window_start, now) if report.new_listings else None
        for start in range(0, len(candidates), SCORING_BLOCK):
            block = candidates[start : start + SCORING_BLOCK]
            picks = ranker.rank(session, block) if ranker else Ranking()
            ready = _store_plans(services, block, picks, now)
            report.planned += len(ready)
            report.empty += len(block) - len(ready)
            if ready and on_planned is not None:
                on_planned(ready)
    return report


# Over 60 lines: one transaction that claims, keeps the oldest digest per subscriber and reads their details.
def claim_for_planning(services: Services, now: datetime) -> list[Candidate]:
    stale = now - timedelta(seconds=services.settings.send_lease_seconds)
    settings = services.settings
    with transaction(services.sessions) as session:
        claimed = session.execute(
            update(Digest)
            .where(
                Digest.status == DigestStatus.PENDING,
                Digest.planned_at.is_(None),
                or_(Digest.claimed_at.is_(None), Digest.claimed_at < stale),
            )
            .values(claimed_at=now)
            .returning(Digest.id, Digest.subscriber_id, Digest.digest_date)
            .execution_options(synchronize_session=False)
        ).all()
        if not claimed:
            return []
        # A subscriber with two open digests (a crash, then the next day) gets the older one ranked now.
        oldest: dict[int, tuple[date, int]] = {}
        for digest_id, subscriber_id, digest_date in claimed:
            if subscriber_id not in oldest or (digest_date, digest_id) < oldest[subscriber_id]:
                oldest[subscriber_id] = (digest_date, digest_id)
        keep = {digest_id for _, digest_id in oldest.values()}
        later = [digest_id for digest_id, _, _ in claimed if digest_id not in keep]
        for start in range(0, len(later), CLAIM_CHUNK):
            session.execute(
                update(Digest)
                .where(Digest.id.in_(later[start : start + CLAIM_CHUNK]))
                .values(claimed_at=None)
                .execution_options(synchronize_session=False)
            )
        subscriber_ids = sorted(oldest)
        details: dict[int, Any] = {}
        previous_until: dict[int, datetime] = {}
        for start in range(0, len(subscriber_ids), CLAIM_CHUNK):
            chunk = subscriber_ids[start : start + CLAIM_CHUNK]
            for row in session.execute(
                select(
                    Subscriber.id,
                    Subscriber.topics,
                    Subscriber.digest_size,
                    Subscriber.show_trending,
                    Subscriber.term_adjustments,
                ).where(Subscriber.id.in_(chunk))
            ):
                details[row.id] = row
            previous_until.update(
                session.execute(
                    select(Digest.subscriber_id, func.max(Digest.candidates_until))
                    .where(Digest.subscriber_id.in_(chunk), Digest.planned_at.is_not(None))
                    .group_by(Digest.subscriber_id)
                ).all()
            )
    first_window_start = now - timedelta(days=settings.first_digest_lookback_days)
    return [
        Candidate(
            digest_id=oldest[subscriber_id][1],
            subscriber_id=subscriber_id,
            topics=list(details[subscriber_id].topics),
            size=details[subscriber_id].digest_size or settings.digest_size,
            since=previous_until.get(subscriber_id) or first_window_start,
            show_trending=bool(details[subscriber_id].show_trending),
            adjustments=details[subscriber_id].term_adjustments or None,
        )
        for subscriber_id in subscriber_ids
        if subscriber_id in details
    ]


def _store_plans(services: Services, block: Sequence[Candidate], picks: Ranking, now: datetime) -> list[int]:
    """Write the chosen items and mark the block planned, in one transaction; returns the digests to send."""
    ready = [c for c in block if picks.get(c.subscriber_id)]
    empty = [c.digest_id for c in block if not picks.get(c.subscriber_id)]
    with transaction(services.sessions) as session:
        items = [
            (c.digest_id, c.subscriber_id, listing_id, rank, score, reason, section)
            for c in ready
            for rank, (listing_id, score, reason, section) in enumerate(picks[c.subscriber_id], start=1)
        ]
        if items:
            _insert_items(session, items)
        ids = [c.digest_id for c in ready]
        quiet_rows = [
            {"id": c.digest_id, "quiet_topics": picks.quiet[c.subscriber_id]}
            for c in ready
            if picks.quiet.get(c.subscriber_id)
        ]
        if quiet_rows:
            session.execute(update(Digest), quiet_rows)
        for chunk_ids, status in ((ids, DigestStatus.PENDING), (empty, DigestStatus.EMPTY)):
            for start in range(0, len(chunk_ids), CLAIM_CHUNK):
                session.execute(
                    update(Digest)
                    .where(Digest.id.in_(chunk_ids[start : start + CLAIM_CHUNK]))
                    .values(status=status, planned_at=now, candidates_until=now, claimed_at=None)
                    .execution_options(synchronize_session=False)
                )
    return ids


_ITEM_COLUMNS = ("digest_id", "subscriber_id", "listing_id", "rank", "score", "reason", "section")

# One array per column, unnested into rows by PostgreSQL: one statement for a whole block of items. Row by
# row, a 100,000-subscriber day's million items took most of the planning time.
_INSERT_ITEM_ARRAYS = text(
    "INSERT INTO digest_item (digest_id, subscriber_id, listing_id, rank, score, reason, section) "
    "SELECT * FROM unnest(CAST(:digest_id AS integer[]), CAST(:subscriber_id AS integer[]), "
    "CAST(:listing_id AS integer[]), CAST(:rank AS smallint[]), CAST(:score AS double precision[]), "
    "CAST(:reason AS varchar[]), CAST(:section AS varchar[])) "
    "ON CONFLICT DO NOTHING"
)


def _insert_items(session: Session, items: list[tuple[int, int, int, int, float, str, str]]) -> None:
    """Store chosen items, skipping any a concurrent planner already stored (by any unique key)."""
    if session.get_bind().dialect.name == "postgresql":
        columns = dict(zip(_ITEM_COLUMNS, map(list, zip(*items, strict=True)), strict=True))
        session.execute(_INSERT_ITEM_ARRAYS, columns)
    else:
        session.execute(
            insert_new(session, DigestItem), [dict(zip(_ITEM_COLUMNS, item, strict=True)) for item in items]
        )


def _count_new(session: Session, since: datetime, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Listing)
            .where(Listing.first_seen_at > since, Listing.first_seen_at <= now)
        )
        or 0
    )
