"""The stored state of the service. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def new_public_id() -> str:
    return secrets.token_urlsafe(12)


class Listing(Base):
    """One paper, stored once however many times it is ingested."""

    __tablename__ = "listing"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Versionless arXiv id ("2401.01234", "hep-th/9901001"); the strongest identity a paper has.
    arxiv_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    doi: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Not unique: two different papers (different arXiv ids) may share a title.
    title_key: Mapped[str] = mapped_column(String(500), index=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(2000))
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    published: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int | None] = mapped_column(SmallInteger)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    upvotes: Mapped[int | None] = mapped_column(Integer)
    links: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(500))
    # Every source that has reported this paper, first one first.
    seen_in: Mapped[list[str]] = mapped_column(JSON, default=list)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    # Suppressed after a hard bounce or repeated soft ones: mailing a dead address hurts our reputation.
    BOUNCED = "bounced"


class Cadence(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    PAUSED = "paused"


class Subscriber(Base):
    __tablename__ = "subscriber"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Links carry this, never the row id or the address.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    topics: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[SubscriberStatus] = mapped_column(
        Enum(SubscriberStatus, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=SubscriberStatus.PENDING,
    )
    digest_size: Mapped[int | None] = mapped_column(SmallInteger)
    # The day's most upvoted papers below the personal picks; each subscriber can switch it off.
    show_trending: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Delivery schedule, in the subscriber's own time zone.
    send_hour: Mapped[int] = mapped_column(SmallInteger, default=6)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    cadence: Mapped[Cadence] = mapped_column(
        Enum(Cadence, native_enum=False, length=10, values_callable=lambda e: [m.value for m in e]),
        default=Cadence.DAILY,
    )
    # 0 is Monday, as in `date.weekday()`; used by the weekly cadence.
    weekly_day: Mapped[int] = mapped_column(SmallInteger, default=0)
    # When the next digest is due, in UTC; NULL until the scheduler works it out.
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Digests in a row that never got through because the mailbox kept deferring them.
    soft_bounces: Mapped[int] = mapped_column(SmallInteger, default=0)
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounce_reason: Mapped[str | None] = mapped_column(String(500))
    # The last confirmation or "already subscribed" email; a form flooded with one address mails it once.
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Renewed by every request from the public form for a pending address; only a confirmation link
    # carrying the latest one confirms, so an old link cannot confirm a stranger's newer request.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32))
    # Terms the reader muted or boosted on the preferences page: {label: {"action": ..., "terms": [...]}}.
    term_adjustments: Mapped[dict[str, dict[str, Any]] | None] = mapped_column(JSON)
    # The votes "reset what you learned" took away, kept so the reset can be undone until the next reset.
    reset_votes: Mapped[list[list[int]] | None] = mapped_column(JSON)


class Vote(enum.IntEnum):
    LESS = -1
    MORE = 1


class Feedback(Base):
    """The subscriber's current vote on one paper: the last click wins."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("subscriber_id", "listing_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"), index=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id", ondelete="CASCADE"))
    vote: Mapped[int] = mapped_column(SmallInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DigestStatus(enum.StrEnum):
    # Waiting to be ranked (planned_at is NULL) or to be sent (possibly after a retry delay).
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    # Given up: cannot be sent, or temporary failures until the attempts ran out.
    FAILED = "failed"
    # The mail server refused the address for good.
    BOUNCED = "bounced"
    # Nothing new was worth sending; the row still marks the day as done.
    EMPTY = "empty"


class Digest(Base):
    """One subscriber's email for one date; the row exists before the send so a rerun never sends twice."""

    __tablename__ = "digest"
    __table_args__ = (UniqueConstraint("subscriber_id", "digest_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"))
    digest_date: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[DigestStatus] = mapped_column(
        Enum(DigestStatus, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=DigestStatus.PENDING,
        index=True,
    )
    # Listings first stored after this moment are candidates for the subscriber's next digest.
    candidates_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    # When its papers were chosen; NULL while the digest waits to be ranked.
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a worker took the row for ranking or sending; a claim older than the lease is taken over.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a send task was queued for it, so each tick does not queue the backlog again.
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set just before the final "." of the SMTP DATA: after that moment the message may have left.
    handed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    # Sends whose outcome was unknown (the worker died, or the reply to the final "." never came) and
    # that were therefore sent again, with the same Message-ID.
    ambiguous_sends: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Typed topics with no good paper in this digest, as typed: "Nothing new on <topic> today".
    quiet_topics: Mapped[list[str] | None] = mapped_column(JSON)

    subscriber: Mapped[Subscriber] = relationship()
    items: Mapped[list[DigestItem]] = relationship(
        back_populates="digest", order_by="DigestItem.rank", cascade="all, delete-orphan"
    )


class DigestItem(Base):
    """A paper chosen for a digest; unique per subscriber so no paper is ever sent to them twice."""

    __tablename__ = "digest_item"
    __table_args__ = (UniqueConstraint("subscriber_id", "listing_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digest.id", ondelete="CASCADE"), index=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"))
    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(500))
    # "picks" (ranked for this subscriber) or "trending" (the day's most upvoted, shown below them).
    section: Mapped[str] = mapped_column(String(20), default="picks")

    digest: Mapped[Digest] = relationship(back_populates="items")
    listing: Mapped[Listing] = relationship()


class Source(Base):
    """A place listings come from, fetched on its own interval by the scheduler."""

    __tablename__ = "source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    interval_minutes: Mapped[int] = mapped_column(Integer)
    # How long the source may produce nothing new before it is flagged stale (business days for arXiv).
    quiet_days: Mapped[int] = mapped_column(SmallInteger)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Validators from the last 200 per URL, so an unchanged feed costs a 304.
    http_cache: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON, default=dict)
    next_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Fetch(Base):
    """One attempt to read a source: what came back and what it added, for health and debugging."""

    __tablename__ = "fetch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    not_modified: Mapped[bool] = mapped_column(Boolean, default=False)
    seen: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # The first few rejected items, each naming the item and what was wrong.
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)


class WatchedFile(Base):
    """A file a watched directory already gave us, so each is ingested once (again only if it changes)."""

    __tablename__ = "watched_file"
    __table_args__ = (UniqueConstraint("source_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1000))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubscriberModel(Base):
    """A subscriber's learned weights, retrained when their votes change rather than every day.

    The feature space is hashed, so the stored column indices stay valid when the IDF weights are refit.
    """

    __tablename__ = "subscriber_model"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True
    )
    # Fingerprint of the votes it was trained on; a different one means it is out of date.
    votes_key: Mapped[str] = mapped_column(String(64))
    columns: Mapped[bytes] = mapped_column(LargeBinary)
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
