"""Subscribing, confirming, unsubscribing and editing topics, independent of any web framework.

Every function works inside the caller's session and never commits: the caller decides when the change
becomes visible, and only then queues any email about it.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from digest.deliver.schedule import Schedule, next_slot, schedule_of
from digest.models import Subscriber, SubscriberStatus, utcnow

MAX_TOPICS = 20
MAX_DIGEST_SIZE = 50
MAX_TOPIC_LENGTH = 100
# RFC 5321 allows 254 characters in a path; anything far longer is not worth handing to the validator.
MAX_EMAIL_LENGTH = 320
# However often the public form names an address, it mails that address at most once in this interval.
NOTICE_INTERVAL = timedelta(hours=1)
_TOPIC_SEPARATORS = re.compile(r"[,;\r\n]+")
_SHOWN_INPUT_LENGTH = 60


class InvalidSubscription(ValueError):
    """Input a person typed that we cannot accept; the message is meant to be shown to them."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _shorten(text: str, limit: int = _SHOWN_INPUT_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reject_control_characters(field: str, value: str) -> str:
    """NUL and other control characters have no place in anything a person types here; PostgreSQL
    refuses NUL in text outright, and stored raw they would reach pages and emails."""
    for character in value:
        if unicodedata.category(character) == "Cc" and character not in "\t\r\n":
            raise InvalidSubscription(field, f"contains a control character (U+{ord(character):04X})")
    return value


def normalize_email(raw: str) -> str:
    """The form every address is stored and matched in, so 'Ann@Example.org' and 'ann@example.org' are one.

    The local part is lowercased too: providers treating it case-sensitively are vanishingly rare, and
    two rows for one mailbox would mean duplicate digests.
    """
    candidate = raw.strip()
    if len(candidate) > MAX_EMAIL_LENGTH:
        raise InvalidSubscription("email", f"an email address has at most {MAX_EMAIL_LENGTH} characters")
    if "\r" in candidate or "\n" in candidate:
        raise InvalidSubscription("email", "an email address cannot contain line breaks")
    if not candidate:
        raise InvalidSubscription("email", "an email address is needed")
    reject_control_characters("email", candidate)
    if not candidate.rpartition("@")[0].isascii():
        # Mailing such an address needs SMTPUTF8 end to end, which this sender does not use: accepting it
        # would store an address that can never get its confirmation email.
        raise InvalidSubscription(
            "email", "the part before the @ must be plain ASCII letters, digits and punctuation"
        )
    try:
        validated = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidSubscription(
            "email", f"{_shorten(candidate)!r} is not a valid email address ({error})"
        ) from None
    return validated.normalized.lower()


def parse_topics(raw: str | Sequence[str]) -> list[str]:
    """Turn a free-text box (or a list of entries) into the clean topic list ranking relies on."""
    chunks = [raw] if isinstance(raw, str) else list(raw)
    topics: list[str] = []
    seen: set[str] = set()
    for chunk in chunks:
        reject_control_characters("topics", chunk)
        for piece in _TOPIC_SEPARATORS.split(chunk):
            topic = " ".join(piece.split())
            if not topic or topic.casefold() in seen:
                continue
            if len(topic) > MAX_TOPIC_LENGTH:
                raise InvalidSubscription(
                    "topics", f"{_shorten(topic, 30)!r} is longer than {MAX_TOPIC_LENGTH} characters"
                )
            seen.add(topic.casefold())
            topics.append(topic)
    if not topics:
        raise InvalidSubscription("topics", "at least one topic is needed")
    if len(topics) > MAX_TOPICS:
        raise InvalidSubscription("topics", f"at most {MAX_TOPICS} topics (got {len(topics)})")
    return topics


@dataclass(frozen=True)
class SubscribeResult:
    subscriber_id: int
    needs_confirmation: bool
    created: bool
    suppressed: bool = False


def find_by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.public_id == public_id)).one_or_none()


def _activate(subscriber: Subscriber) -> None:
    if subscriber.status is not SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = utcnow()
        subscriber.soft_bounces = 0
        # The next delivery is worked out from now, not from a time missed while away.
        _reschedule(subscriber)
    subscriber.unsubscribed_at = None


def _reschedule(subscriber: Subscriber) -> None:
    slot = None
    if subscriber.status is SubscriberStatus.ACTIVE:
        slot = next_slot(schedule_of(subscriber), utcnow())
    subscriber.next_due_at = slot.due_at if slot else None


def _apply_schedule(subscriber: Subscriber, schedule: Schedule) -> None:
    changed = (subscriber.cadence, subscriber.send_hour, subscriber.timezone, subscriber.weekly_day) != (
        schedule.cadence,
        schedule.send_hour,
        schedule.timezone,
        schedule.weekly_day,
    )
    subscriber.cadence = schedule.cadence
    subscriber.send_hour = schedule.send_hour
    subscriber.timezone = schedule.timezone
    subscriber.weekly_day = schedule.weekly_day
    if changed:
        _reschedule(subscriber)


def subscribe(
    session: Session,
    email: str,
    topics: str | Sequence[str],
    *,
    confirmed: bool = False,
    schedule: Schedule | None = None,
) -> SubscribeResult:
    """Create or update a subscription by address; `confirmed` is for callers who already proved the mailbox.

    Without that proof, an active subscriber's topics are left as they are: anyone can type someone else's
    address into the form, and only the mailbox owner (through their preferences link) may change them.

    A concurrent subscribe of the same new address makes the flush fail on the unique email; the caller
    should retry its transaction once, which then takes the existing-row path.
    """
    address = normalize_email(email)
    topic_list = parse_topics(topics)
    subscriber = session.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(email=address, topics=topic_list, status=SubscriberStatus.PENDING)
        if schedule is not None:
            _apply_schedule(subscriber, schedule)
        session.add(subscriber)
    elif confirmed or (subscriber.status is not SubscriberStatus.ACTIVE and not is_suppressed(subscriber)):
        subscriber.topics = topic_list
        if schedule is not None:
            _apply_schedule(subscriber, schedule)

    if confirmed:
        _activate(subscriber)
    elif is_suppressed(subscriber):
        pass  # only the operator lifts a suppression (`digest unsuppress`); the form never mails it
    elif subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
        # Anyone can type an address into the form, so coming back needs the mailbox owner's click again.
        subscriber.status = SubscriberStatus.PENDING
        subscriber.confirmed_at = None
        subscriber.unsubscribed_at = None
    session.flush()
    return SubscribeResult(
        subscriber_id=subscriber.id,
        needs_confirmation=subscriber.status is SubscriberStatus.PENDING,
        created=created,
        suppressed=is_suppressed(subscriber),
    )


def is_suppressed(subscriber: Subscriber) -> bool:
    """Bounced for good, or unsubscribed by a spam complaint: mailing it again hurts the sender's
    reputation and, for a complaint, ignores what its owner said."""
    return subscriber.status is SubscriberStatus.BOUNCED or (
        subscriber.status is SubscriberStatus.UNSUBSCRIBED
        and (subscriber.bounce_reason or "").startswith("complaint")
    )


def lift_suppression(session: Session, email: str) -> Subscriber | None:
    """The operator's decision that a suppressed address may be mailed again; it still has to confirm."""
    subscriber = session.scalars(
        select(Subscriber).where(Subscriber.email == normalize_email(email))
    ).one_or_none()
    if subscriber is not None and is_suppressed(subscriber):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.bounce_reason = None
        subscriber.bounced_at = None
        subscriber.soft_bounces = 0
        session.flush()
    return subscriber


class Notice(StrEnum):
    """The email a subscribe request from the public form calls for."""

    # The address is not confirmed yet: send the confirmation link.
    CONFIRM = "confirm"
    # The address is already active: tell its owner, with their links, instead of changing anything.
    ALREADY_SUBSCRIBED = "already_subscribed"


@dataclass(frozen=True)
class SubscriptionRequest:
    subscriber_id: int
    # What to mail now; None when the address was mailed within NOTICE_INTERVAL.
    notice: Notice | None


def request_subscription(
    session: Session,
    email: str,
    topics: str | Sequence[str],
    *,
    schedule: Schedule | None = None,
    now: datetime | None = None,
) -> SubscriptionRequest:
    """The public form's path: subscribe without proof of the mailbox and decide which email to send.

    Whatever state the address is in, the person at the form learns nothing: a new, pending, unsubscribed
    or bounced address gets the confirmation link and an active one a note that it is already subscribed,
    both only in the mailbox. The decision to send is recorded in `confirmation_sent_at` within the
    caller's transaction by a compare-and-set, so concurrent requests for one address mail it once per
    NOTICE_INTERVAL however many of them race.
    """
    result = subscribe(session, email, topics, schedule=schedule)
    subscriber = session.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    if subscriber.status is SubscriberStatus.PENDING:
        # This request may have changed the topics or the schedule: links sent for earlier ones stop working.
        subscriber.confirm_nonce = secrets.token_urlsafe(12)
        notice: Notice | None = Notice.CONFIRM
    elif subscriber.status is SubscriberStatus.ACTIVE:
        notice = Notice.ALREADY_SUBSCRIBED
    else:  # suppressed: the same answer at the form, and no email
        notice = None
    if notice is not None and not _claim_notice(session, subscriber, now or utcnow()):
        notice = None
    return SubscriptionRequest(subscriber_id=subscriber.id, notice=notice)


def _claim_notice(session: Session, subscriber: Subscriber, now: datetime) -> bool:
    """Stamp `confirmation_sent_at` unless it is recent; True when this call may send the email."""
    claimed = cast(
        CursorResult[Any],
        session.execute(
            update(Subscriber)
            .where(
                Subscriber.id == subscriber.id,
                or_(
                    Subscriber.confirmation_sent_at.is_(None),
                    Subscriber.confirmation_sent_at <= now - NOTICE_INTERVAL,
                ),
            )
            .values(confirmation_sent_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    session.expire(subscriber, ["confirmation_sent_at"])
    return claimed.rowcount == 1


class StaleConfirmation(ValueError):
    """A confirmation link for an earlier request: a newer one (perhaps not the owner's) replaced it."""


def check_confirmation(subscriber: Subscriber, nonce: str | None) -> None:
    """Raise StaleConfirmation unless the link answers the subscriber's latest request."""
    if subscriber.status is SubscriberStatus.PENDING and subscriber.confirm_nonce != nonce:
        raise StaleConfirmation(
            "this confirmation link was replaced by a newer subscribe request for the same address; "
            "use the link in the newest email"
        )


def confirm(session: Session, public_id: str, nonce: str | None = None) -> Subscriber | None:
    """Activate a pending subscription; an unsubscribed one is left alone so an old link cannot revive it.

    `nonce` is the one the link carries; only the latest request's link confirms (StaleConfirmation).
    """
    subscriber = find_by_public_id(session, public_id)
    if subscriber is not None and subscriber.status is SubscriberStatus.PENDING:
        check_confirmation(subscriber, nonce)
        _activate(subscriber)
        subscriber.confirm_nonce = None
        session.flush()
    return subscriber


def unsubscribe(session: Session, public_id: str) -> Subscriber | None:
    subscriber = find_by_public_id(session, public_id)
    if subscriber is not None and subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = utcnow()
        session.flush()
    return subscriber


def resubscribe(session: Session, public_id: str) -> Subscriber | None:
    """Undo an unsubscribe; holding the signed link already proves control of the mailbox.

    Not for a suppressed address: a link that once reached a mailbox says nothing about whether that
    mailbox still exists, so a bounced or complaining address stays as it is (the caller says so).
    """
    subscriber = find_by_public_id(session, public_id)
    if subscriber is not None and not is_suppressed(subscriber):
        _activate(subscriber)
        session.flush()
    return subscriber


def update_topics(
    session: Session, public_id: str, topics: str | Sequence[str], *, show_trending: bool | None = None
) -> Subscriber | None:
    topic_list = parse_topics(topics)
    subscriber = find_by_public_id(session, public_id)
    if subscriber is not None:
        subscriber.topics = topic_list
        if show_trending is not None:
            subscriber.show_trending = show_trending
        session.flush()
    return subscriber


def update_schedule(
    session: Session, public_id: str, schedule: Schedule, *, digest_size: int | None = None
) -> Subscriber | None:
    """Change when (and how much) a subscriber receives; the next delivery is worked out again."""
    if digest_size is not None and not 1 <= digest_size <= MAX_DIGEST_SIZE:
        raise InvalidSubscription(
            "digest_size", f"must be from 1 to {MAX_DIGEST_SIZE} papers, not {digest_size}"
        )
    subscriber = find_by_public_id(session, public_id)
    if subscriber is not None:
        _apply_schedule(subscriber, schedule)
        if digest_size is not None:
            subscriber.digest_size = digest_size
        session.flush()
    return subscriber
