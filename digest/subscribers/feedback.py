"""Votes on papers from digest links: one current vote per subscriber and paper, the last click wins.

Votes from unsubscribed subscribers are still recorded: the link proves who clicked, the vote harms no
one, and it is there to use if they come back. Ranking only runs for active subscribers anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.models import Feedback, Listing, Subscriber, Vote, utcnow
from digest.subscribers.subscriptions import find_by_public_id


class UnknownFeedbackTarget(LookupError):
    """The link names a subscriber or paper that is not (or no longer) stored."""


@dataclass(frozen=True)
class VoteResult:
    listing: Listing
    previous: Vote | None
    current: Vote | None
    subscriber_id: int = 0

    @property
    def changed(self) -> bool:
        return self.previous != self.current


def _targets(session: Session, public_id: str, listing_id: int) -> tuple[Subscriber, Listing]:
    subscriber = find_by_public_id(session, public_id)
    if subscriber is None:
        raise UnknownFeedbackTarget("no subscriber with this id")
    listing = session.get(Listing, listing_id)
    if listing is None:
        raise UnknownFeedbackTarget(f"no paper with id {listing_id}")
    return subscriber, listing


def _current_row(session: Session, subscriber_id: int, listing_id: int) -> Feedback | None:
    return session.scalars(
        select(Feedback).where(Feedback.subscriber_id == subscriber_id, Feedback.listing_id == listing_id)
    ).one_or_none()


def _set_vote(session: Session, subscriber: Subscriber, listing: Listing, vote: Vote | None) -> Vote | None:
    """Make `vote` the stored one and return what was stored before."""
    row = _current_row(session, subscriber.id, listing.id)
    previous = None if row is None else Vote(row.vote)
    if vote is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Feedback(subscriber_id=subscriber.id, listing_id=listing.id, vote=int(vote)))
    elif previous is not vote:
        row.vote = int(vote)
        row.updated_at = utcnow()
    session.flush()
    return previous


def record_vote(session: Session, public_id: str, listing_id: int, vote: Vote) -> VoteResult:
    """Store a vote, replacing any earlier one; repeating the same vote changes nothing.

    Two simultaneous first votes make the flush fail on the unique (subscriber, listing) pair; the
    caller should retry its transaction once, which then updates the winner's row.
    """
    subscriber, listing = _targets(session, public_id, listing_id)
    previous = _set_vote(session, subscriber, listing, vote)
    return VoteResult(listing=listing, previous=previous, current=vote, subscriber_id=subscriber.id)


def restore_vote(session: Session, public_id: str, listing_id: int, restore: Vote | None) -> VoteResult:
    """Undo a click: put back the vote that was there before it, or none at all."""
    subscriber, listing = _targets(session, public_id, listing_id)
    previous = _set_vote(session, subscriber, listing, restore)
    return VoteResult(listing=listing, previous=previous, current=restore, subscriber_id=subscriber.id)


def remove_vote(session: Session, public_id: str, listing_id: int) -> VoteResult:
    """Take back a vote from the preferences page: the paper no longer counts either way."""
    return restore_vote(session, public_id, listing_id, None)


@dataclass(frozen=True)
class VoteEntry:
    """One current vote as the subscriber's history shows it."""

    listing_id: int
    title: str
    url: str | None
    vote: Vote
    updated_at: datetime


def history(session: Session, subscriber_id: int, limit: int = 50) -> list[VoteEntry]:
    """The subscriber's current votes, the most recent first."""
    rows = session.execute(
        select(Feedback.listing_id, Listing.title, Listing.url, Feedback.vote, Feedback.updated_at)
        .join(Listing, Listing.id == Feedback.listing_id)
        .where(Feedback.subscriber_id == subscriber_id)
        .order_by(Feedback.updated_at.desc(), Feedback.id.desc())
        .limit(max(0, limit))
    )
    return [
        VoteEntry(listing_id=listing_id, title=title, url=url, vote=Vote(vote), updated_at=updated_at)
        for listing_id, title, url, vote, updated_at in rows
    ]


def votes_for(session: Session, subscriber_id: int) -> dict[int, Vote]:
    rows = session.execute(
        select(Feedback.listing_id, Feedback.vote).where(Feedback.subscriber_id == subscriber_id)
    )
    return {listing_id: Vote(vote) for listing_id, vote in rows}
