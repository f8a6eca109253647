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
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Date, and_, case, func, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from digest.models import (
    Cadence,
    Digest,
    DigestItem,
    DigestStatus,
    Feedback,
    Listing,
    Source,
    Subscriber,
    SubscriberStatus,
    Vote,
    WatchedFile,
)

DEFAULT_DAYS = 30
TOP_BOUNCE_REASONS = 10
RECENT_BOUNCES = 50
SUBSCRIBERS_PER_PAGE = 50
SENDS_PER_PAGE = 50
TOP_TOPICS = 10
# Sources drawn as their own series in the papers-per-day chart; the rest are summed as "other sources".
CHART_SOURCES = 4
FILES_SERIES = "files (digest ingest)"
RECENT_FILE_INGESTS = 50
SUBSCRIBER_RECENT = 10


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
    id: int
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
        Subscriber.id,
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
        SubscriberRow(row_id, email, str(status), str(cadence), tz, created, reason)
        for row_id, email, status, cadence, tz, created, reason in session.execute(
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


# One subscriber ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoteRow:
    title: str
    vote: int
    at: datetime


@dataclass(frozen=True)
class DigestRow:
    """One digest as the operator sees it: whom, when, how it went, how many papers."""

    id: int
    subscriber_id: int
    email: str
    digest_date: date
    status: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    papers: int
    error: str | None

    @property
    def moment(self) -> datetime:
        return self.sent_at or self.created_at


@dataclass(frozen=True)
class SubscriberDetail:
    subscriber: Subscriber
    suppressed: bool
    votes_more: int
    votes_less: int
    recent_votes: list[VoteRow]
    digests: list[DigestRow]
    digests_total: int


def _papers_per_digest(session: Session, digest_ids: list[int]) -> dict[int, int]:
    if not digest_ids:
        return {}
    rows = session.execute(
        select(DigestItem.digest_id, func.count())
        .where(DigestItem.digest_id.in_(digest_ids))
        .group_by(DigestItem.digest_id)
    )
    return {int(digest_id): int(n) for digest_id, n in rows}


def _digest_rows(session: Session, query: Any) -> list[DigestRow]:
    found = session.execute(query).all()
    papers = _papers_per_digest(session, [int(r.id) for r in found])
    return [
        DigestRow(
            id=r.id,
            subscriber_id=r.subscriber_id,
            email=r.email,
            digest_date=_as_date(r.digest_date),
            status=str(r.status),
            created_at=r.created_at,
            sent_at=r.sent_at,
            attempts=int(r.attempts or 0),
            papers=papers.get(int(r.id), 0),
            error=r.error,
        )
        for r in found
    ]


_DIGEST_COLUMNS = (
    Digest.id,
    Digest.subscriber_id,
    Subscriber.email,
    Digest.digest_date,
    Digest.status,
    Digest.created_at,
    Digest.sent_at,
    Digest.attempts,
    Digest.error,
)


def subscriber_detail(
    session: Session, subscriber_id: int, recent: int = SUBSCRIBER_RECENT
) -> SubscriberDetail | None:
    """Everything the admin page of one subscriber shows; each query goes through the subscriber's index."""
    from digest.subscribers.subscriptions import is_suppressed

    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    votes = {
        int(vote): int(n)
        for vote, n in session.execute(
            select(Feedback.vote, func.count())
            .where(Feedback.subscriber_id == subscriber_id)
            .group_by(Feedback.vote)
        )
    }
    recent_votes = [
        VoteRow(title, int(vote), at)
        for title, vote, at in session.execute(
            select(Listing.title, Feedback.vote, Feedback.updated_at)
            .join(Listing, Listing.id == Feedback.listing_id)
            .where(Feedback.subscriber_id == subscriber_id)
            .order_by(Feedback.updated_at.desc(), Feedback.id.desc())
            .limit(recent)
        )
    ]
    digests = _digest_rows(
        session,
        select(*_DIGEST_COLUMNS)
        .join(Subscriber, Subscriber.id == Digest.subscriber_id)
        .where(Digest.subscriber_id == subscriber_id)
        .order_by(Digest.digest_date.desc())
        .limit(recent),
    )
    total = session.scalar(select(func.count()).where(Digest.subscriber_id == subscriber_id))
    return SubscriberDetail(
        subscriber=subscriber,
        suppressed=is_suppressed(subscriber),
        votes_more=votes.get(Vote.MORE, 0),
        votes_less=votes.get(Vote.LESS, 0),
        recent_votes=recent_votes,
        digests=digests,
        digests_total=int(total or 0),
    )


# Individual sends -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendsPage:
    rows: list[DigestRow]
    status: str | None
    # The id to continue below for the next (older) page, None on the last one.
    older_than: int | None


def recent_sends(
    session: Session,
    *,
    before: int | None = None,
    status: str | None = None,
    limit: int = SENDS_PER_PAGE,
) -> SendsPage:
    """Digests newest first, paged by id rather than by offset, so the hundredth page costs what the first
    does; `status` keeps one outcome only. Digests with nothing new (empty) are not sends and are left out
    unless asked for."""
    query = select(*_DIGEST_COLUMNS).join(Subscriber, Subscriber.id == Digest.subscriber_id)
    if status:
        query = query.where(Digest.status == DigestStatus(status))
    else:
        query = query.where(Digest.status != DigestStatus.EMPTY)
    if before is not None:
        query = query.where(Digest.id < before)
    rows = _digest_rows(session, query.order_by(Digest.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return SendsPage(rows=rows, status=status, older_than=rows[-1].id if more and rows else None)


# Charts beyond the per-day counts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSeries:
    days: list[date]
    # Series name -> papers first stored on each day, in the order the chart draws them.
    papers: dict[str, list[int]]


def papers_by_source(session: Session, today: date, days: int = DEFAULT_DAYS) -> SourceSeries:
    """Papers first stored per UTC day, split by where they came from: each busiest configured source,
    the other sources together, and files given to `digest ingest` (whose listings name the file)."""
    span = window(today, days)
    first, after = _start_of(span[0]), _start_of(today + timedelta(days=1))
    day_column = utc_day(Listing.first_seen_at)
    rows = session.execute(
        select(day_column, Listing.source, func.count())
        .where(Listing.first_seen_at >= first, Listing.first_seen_at < after)
        .group_by(day_column, Listing.source)
    ).all()
    configured = set(session.scalars(select(Source.name)))
    position = {day: i for i, day in enumerate(span)}
    per_source: dict[str, list[int]] = {}
    files = [0] * len(span)
    for day, source, n in rows:
        index = position.get(_as_date(day))
        if index is None:
            continue
        if source in configured:
            per_source.setdefault(source, [0] * len(span))[index] += int(n)
        else:
            files[index] += int(n)
    busiest = sorted(per_source, key=lambda name: (-sum(per_source[name]), name))
    papers = {name: per_source[name] for name in busiest[:CHART_SOURCES]}
    rest = busiest[CHART_SOURCES:]
    if rest:
        papers["other sources"] = [sum(per_source[name][i] for name in rest) for i in range(len(span))]
    if any(files):
        papers[FILES_SERIES] = files
    return SourceSeries(days=span, papers=papers)


def _left_at() -> Any:
    """When a subscriber who is no longer active stopped being so, as far as the row still says."""
    return case(
        (Subscriber.status == SubscriberStatus.UNSUBSCRIBED, Subscriber.unsubscribed_at),
        (Subscriber.status == SubscriberStatus.BOUNCED, Subscriber.bounced_at),
        else_=None,
    )


def active_over_time(session: Session, today: date, days: int = DEFAULT_DAYS) -> list[tuple[date, int]]:
    """Active subscribers at the end of each day of the window, rebuilt from the stored moments.

    Joining is the confirmation (the creation, for rows made active directly), leaving the unsubscribe or
    bounce. A row keeps only its latest of each, so someone who left and came back twice counts from their
    last return: an estimate for the past, exact for today. Three grouped counts over the subscriber table.
    """
    span = window(today, days)
    start, after = _start_of(span[0]), _start_of(today + timedelta(days=1))
    joined_at = func.coalesce(Subscriber.confirmed_at, Subscriber.created_at)
    left_at = _left_at()
    ever_active = or_(
        Subscriber.status == SubscriberStatus.ACTIVE,
        and_(Subscriber.confirmed_at.is_not(None), left_at.is_not(None)),
    )
    baseline = session.scalar(
        select(func.count()).where(
            ever_active,
            joined_at < start,
            or_(Subscriber.status == SubscriberStatus.ACTIVE, left_at >= start),
        )
    )
    change = {day: 0 for day in span}
    join_day, leave_day = utc_day(joined_at), utc_day(left_at)
    for day, n in session.execute(
        select(join_day, func.count())
        .where(ever_active, joined_at >= start, joined_at < after)
        .group_by(join_day)
    ):
        if _as_date(day) in change:
            change[_as_date(day)] += int(n)
    for day, n in session.execute(
        select(leave_day, func.count())
        .where(ever_active, left_at >= start, left_at < after)
        .group_by(leave_day)
    ):
        if _as_date(day) in change:
            change[_as_date(day)] -= int(n)
    running, out = int(baseline or 0), []
    for day in span:
        running += change[day]
        out.append((day, max(0, running)))
    return out


@dataclass(frozen=True)
class DigestVotes:
    day: date
    digests: int
    more: int
    less: int

    @property
    def more_per_digest(self) -> float:
        return self.more / self.digests if self.digests else 0.0

    @property
    def less_per_digest(self) -> float:
        return self.less / self.digests if self.digests else 0.0


def votes_on_digests(session: Session, today: date, days: int = DEFAULT_DAYS) -> dict[date, tuple[int, int]]:
    """The current ("more", "less") votes on papers of the digests sent on each digest date of the window.

    Starts from the votes (few) rather than the digests' items (many): each vote finds its item through
    the unique (subscriber, paper) index of digest_item, and the item its digest by primary key.
    """
    span = window(today, days)
    first, after = span[0], today + timedelta(days=1)
    votes: dict[date, tuple[int, int]] = {}
    for day, vote, n in session.execute(
        select(Digest.digest_date, Feedback.vote, func.count())
        .select_from(Feedback)
        .join(
            DigestItem,
            and_(
                DigestItem.subscriber_id == Feedback.subscriber_id,
                DigestItem.listing_id == Feedback.listing_id,
            ),
        )
        .join(Digest, Digest.id == DigestItem.digest_id)
        .where(
            Feedback.updated_at >= _start_of(first),
            Digest.digest_date >= first,
            Digest.digest_date < after,
            Digest.status == DigestStatus.SENT,
        )
        .group_by(Digest.digest_date, Feedback.vote)
    ):
        more, less = votes.get(_as_date(day), (0, 0))
        if vote == Vote.MORE:
            more += int(n)
        elif vote == Vote.LESS:
            less += int(n)
        votes[_as_date(day)] = (more, less)
    return votes


def votes_per_digest(days: list[DayStats], votes: dict[date, tuple[int, int]]) -> list[DigestVotes]:
    """`votes_on_digests` beside the digests `daily` counted as sent on each date."""
    return [DigestVotes(d.day, d.sent, *votes.get(d.day, (0, 0))) for d in days]


def top_topics(session: Session, limit: int = TOP_TOPICS) -> list[tuple[str, int]]:
    """The commonest topics among active subscribers, ignoring case, unnested from the JSON list in SQL."""
    dialect = session.get_bind().dialect.name
    function = func.json_array_elements_text if dialect == "postgresql" else func.json_each
    element = function(Subscriber.topics).table_valued("value").alias("topic")
    topic = func.lower(element.c.value)
    count = func.count().label("n")
    rows = session.execute(
        select(topic, count)
        .select_from(Subscriber)
        .join(element, true())
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(topic)
        .order_by(count.desc(), topic)
        .limit(limit)
    )
    return [(str(name), int(n)) for name, n in rows]


# Listings from files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileIngest:
    """Papers that came from one file (`digest ingest FILE`, or a watched folder), which no fetch records."""

    name: str
    papers: int
    first_at: datetime | None
    last_at: datetime | None
    # The watched-folder source that picked the file up, if one did.
    via: str | None


def file_ingests(session: Session, limit: int = RECENT_FILE_INGESTS) -> tuple[list[FileIngest], int, int]:
    """Files papers were first stored from, latest first; and how many files and papers there are in all.

    A listing stored from a file names the file as its source; a fetched one names its configured source.
    """
    from_file = Listing.source.not_in(select(Source.name))
    last = func.max(Listing.first_seen_at).label("last_at")
    rows = session.execute(
        select(Listing.source, func.count(), func.min(Listing.first_seen_at), last)
        .where(from_file)
        .group_by(Listing.source)
        .order_by(last.desc(), Listing.source)
        .limit(limit)
    ).all()
    files, papers = session.execute(
        select(func.count(func.distinct(Listing.source)), func.count()).where(from_file)
    ).one()
    watched: dict[str, str] = {}
    if rows:
        for path, source_name in session.execute(
            select(WatchedFile.path, Source.name)
            .join(Source, Source.id == WatchedFile.source_id)
            .order_by(WatchedFile.ingested_at.desc())
            .limit(1000)
        ):
            watched.setdefault(Path(path).name, source_name)
    found = [
        FileIngest(str(name), int(n), first_at, last_at, watched.get(str(name)))
        for name, n, first_at, last_at in rows
    ]
    return found, int(files or 0), int(papers or 0)
