"""Figures for the admin pages: who is subscribed, what went out each day, what bounced, how people voted.

Plain functions over a `Session`, each returning dataclasses. Per-day figures are grouped in SQL, by the UTC
calendar day, and the same queries run on SQLite and PostgreSQL (see `utc_day`). Days with no rows are
filled in here, so a chart always has one bar per day of the window.

The latest evaluation's figures are in `digest.evaluation_figures`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from digest.models import (
    Cadence,
    Digest,
    DigestStatus,
    Feedback,
    Listing,
    Subscriber,
    SubscriberStatus,
    Vote,
)

DEFAULT_DAYS = 30
TOP_BOUNCE_REASONS = 10
RECENT_BOUNCES = 50
SUBSCRIBERS_PER_PAGE = 50


# The UTC calendar day of a stored moment, in SQL ------------------------------------------------------------


class utc_day(FunctionElement[date]):
    """The UTC date of a `UTCDateTime` column, usable in SELECT and GROUP BY on both backends.

    SQLite stores these moments as naive UTC text, so `date(x)` is already the UTC day. PostgreSQL stores a
    timestamptz, whose `date(x)` is the day in the *session's* time zone; `timezone('UTC', x)` first turns
    it into the UTC wall-clock time.
    """

    type = Date()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day)
def _utc_day_default(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# Subscribers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberCounts:
    pending: int = 0
    active: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    # Active subscribers whose cadence is paused; they are counted among the active too.
    paused: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.active + self.unsubscribed + self.bounced

    @property
    def receiving(self) -> int:
        """Active and not paused: the addresses a digest goes to."""
        return self.active - self.paused


def subscriber_counts(session: Session) -> SubscriberCounts:
    by_status = {
        SubscriberStatus(status): int(count)
        for status, count in session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
    }
    paused = session.scalar(
        select(func.count()).where(
            Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.cadence == Cadence.PAUSED
        )
    )
    return SubscriberCounts(
        pending=by_status.get(SubscriberStatus.PENDING, 0),
        active=by_status.get(SubscriberStatus.ACTIVE, 0),
        unsubscribed=by_status.get(SubscriberStatus.UNSUBSCRIBED, 0),
        bounced=by_status.get(SubscriberStatus.BOUNCED, 0),
        paused=int(paused or 0),
    )


@dataclass(frozen=True)
class SubscriberRow:
    email: str
    status: str
    cadence: str
    timezone: str
    created_at: datetime
    bounce_reason: str | None


@dataclass(frozen=True)
class SubscriberPage:
    rows: list[SubscriberRow]
    total: int
    page: int
    per_page: int
    search: str

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def subscribers_page(
    session: Session, *, search: str = "", page: int = 1, per_page: int = SUBSCRIBERS_PER_PAGE
) -> SubscriberPage:
    """Newest first; `search` matches anywhere in the address, ignoring case (% and _ match themselves)."""
    search = search.strip()
    condition: ColumnElement[bool] | None = None
    if search:
        condition = func.lower(Subscriber.email).contains(search.lower(), autoescape=True)
    count_query = select(func.count()).select_from(Subscriber)
    if condition is not None:
        count_query = count_query.where(condition)
    total = int(session.scalar(count_query) or 0)
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    query = select(
        Subscriber.email,
        Subscriber.status,
        Subscriber.cadence,
        Subscriber.timezone,
        Subscriber.created_at,
        Subscriber.bounce_reason,
    )
    if condition is not None:
        query = query.where(condition)
    query = query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
    rows = [
        SubscriberRow(email, str(status), str(cadence), tz, created, reason)
        for email, status, cadence, tz, created, reason in session.execute(
            query.limit(per_page).offset((page - 1) * per_page)
        )
    ]
    return SubscriberPage(rows=rows, total=total, page=page, per_page=per_page, search=search)


# Per day ----------------------------------------------------------------------------------------------------


@dataclass
class DayStats:
    day: date
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    new_subscribers: int = 0
    unsubscribes: int = 0
    votes_more: int = 0
    votes_less: int = 0


def window(today: date, days: int = DEFAULT_DAYS) -> list[date]:
    """The last `days` UTC days, oldest first, ending with `today`."""
    if days < 1:
        raise ValueError("the window needs at least one day")
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def daily(session: Session, today: date, days: int = DEFAULT_DAYS) -> list[DayStats]:
    """One entry per day of the window, oldest first; every figure is grouped by day in SQL.

    Digests count on their `digest_date`; subscriptions on `created_at`, unsubscribes on `unsubscribed_at`
    and votes on the day they were last changed (`Feedback.updated_at`, since the last click wins).
    """
    span = window(today, days)
    first, after = span[0], today + timedelta(days=1)
    by_day = {day: DayStats(day) for day in span}

    digest_rows = session.execute(
        select(Digest.digest_date, Digest.status, func.count())
        .where(
            Digest.digest_date >= first,
            Digest.digest_date < after,
            Digest.status.in_([DigestStatus.SENT, DigestStatus.FAILED, DigestStatus.BOUNCED]),
        )
        .group_by(Digest.digest_date, Digest.status)
    )
    for day, status, count in digest_rows:
        entry = by_day.get(_as_date(day))
        if entry is not None:
            setattr(entry, DigestStatus(status).value, int(count))

    for column, attribute in (
        (Subscriber.created_at, "new_subscribers"),
        (Subscriber.unsubscribed_at, "unsubscribes"),
    ):
        for day, count in _count_by_day(session, column, first, after):
            if day in by_day:
                setattr(by_day[day], attribute, count)

    day_column = utc_day(Feedback.updated_at)
    vote_rows = session.execute(
        select(day_column, Feedback.vote, func.count())
        .where(Feedback.updated_at >= _start_of(first), Feedback.updated_at < _start_of(after))
        .group_by(day_column, Feedback.vote)
    )
    for day, vote, count in vote_rows:
        entry = by_day.get(_as_date(day))
        if entry is None:
            continue
        if vote == Vote.MORE:
            entry.votes_more += int(count)
        elif vote == Vote.LESS:
            entry.votes_less += int(count)
    return [by_day[day] for day in span]


def _count_by_day(session: Session, column: Any, first: date, after: date) -> Iterable[tuple[date, int]]:
    day_column = utc_day(column)
    rows = session.execute(
        select(day_column, func.count())
        .where(column >= _start_of(first), column < _start_of(after))
        .group_by(day_column)
    )
    return [(_as_date(day), int(count)) for day, count in rows]


# Bounces ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BounceReason:
    reason: str
    count: int
    last_at: datetime | None


def bounce_reasons(session: Session, limit: int = TOP_BOUNCE_REASONS) -> list[BounceReason]:
    """The commonest reasons addresses were suppressed, with how often and when last."""
    count = func.count().label("n")
    rows = session.execute(
        select(Subscriber.bounce_reason, count, func.max(Subscriber.bounced_at))
        .where(Subscriber.bounce_reason.is_not(None))
        .group_by(Subscriber.bounce_reason)
        .order_by(count.desc(), Subscriber.bounce_reason)
        .limit(limit)
    )
    return [BounceReason(str(reason), int(n), last) for reason, n, last in rows]


@dataclass(frozen=True)
class Bounce:
    email: str
    status: str
    bounced_at: datetime | None
    reason: str | None


def recent_bounces(session: Session, limit: int = RECENT_BOUNCES) -> list[Bounce]:
    """Addresses that bounced, latest first (they may since have subscribed again)."""
    rows = session.execute(
        select(Subscriber.email, Subscriber.status, Subscriber.bounced_at, Subscriber.bounce_reason)
        .where(Subscriber.bounced_at.is_not(None))
        .order_by(Subscriber.bounced_at.desc(), Subscriber.id.desc())
        .limit(limit)
    )
    return [Bounce(email, str(status), at, reason) for email, status, at, reason in rows]


# Totals -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    """All-time figures."""

    digests: dict[str, int] = field(default_factory=dict)
    votes_more: int = 0
    votes_less: int = 0
    listings: int = 0

    def digests_with(self, status: str) -> int:
        return self.digests.get(status, 0)


def totals(session: Session) -> Totals:
    digests = {status.value: 0 for status in DigestStatus}
    for status, count in session.execute(select(Digest.status, func.count()).group_by(Digest.status)):
        digests[DigestStatus(status).value] = int(count)
    votes = {
        int(vote): int(count)
        for vote, count in session.execute(select(Feedback.vote, func.count()).group_by(Feedback.vote))
    }
    listings = session.scalar(select(func.count()).select_from(Listing))
    return Totals(
        digests=digests,
        votes_more=votes.get(Vote.MORE, 0),
        votes_less=votes.get(Vote.LESS, 0),
        listings=int(listings or 0),
    )


# Everything the overview shows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    today: date
    subscribers: SubscriberCounts
    days: list[DayStats]
    bounce_reasons: list[BounceReason]
    totals: Totals

    def window_sum(self, attribute: str) -> int:
        return sum(int(getattr(day, attribute)) for day in self.days)


def overview(session: Session, now: datetime, days: int = DEFAULT_DAYS) -> Overview:
    today = now.astimezone(UTC).date()
    return Overview(
        today=today,
        subscribers=subscriber_counts(session),
        days=daily(session, today, days),
        bounce_reasons=bounce_reasons(session),
        totals=totals(session),
    )
