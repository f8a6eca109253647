"""A reader steering their own profile: mute or boost a term, forget every vote, and take that back.

A reset keeps the votes it removed on the subscriber row until the next reset, so "undo" restores exactly
what was there; a vote cast since the reset wins over the one put aside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.models import Feedback, Listing, Subscriber, SubscriberModel, utcnow
from digest.rank.adjust import ACTIONS, MAX_ADJUSTMENTS
from digest.subscribers.subscriptions import InvalidSubscription, find_by_public_id


class NothingToUndo(LookupError):
    """There is no reset to take back (none was made, or it was undone already)."""


@dataclass(frozen=True)
class ResetResult:
    subscriber_id: int
    votes: int


def adjust_term(
    session: Session, subscriber: Subscriber, label: str, action: str | None, terms: Sequence[str]
) -> None:
    """Mute or boost the entry `label` (acting on `terms`), or with `action=None` lift what was set."""
    adjustments = dict(subscriber.term_adjustments or {})
    if action is None:
        adjustments.pop(label, None)
    else:
        if action not in ACTIONS:
            raise InvalidSubscription("action", f"choose mute or boost, not {action[:20]!r}")
        if not terms:
            raise InvalidSubscription("term", f"“{label[:80]}” is not in your profile any more")
        if label not in adjustments and len(adjustments) >= MAX_ADJUSTMENTS:
            raise InvalidSubscription(
                "term", f"you can mute or boost up to {MAX_ADJUSTMENTS} terms; lift one first"
            )
        adjustments[label] = {"action": action, "terms": list(terms)}
    # A new dict, so the JSON column is seen as changed.
    subscriber.term_adjustments = adjustments or None


def reset_votes(session: Session, public_id: str) -> ResetResult | None:
    subscriber = find_by_public_id(session, public_id)
    if subscriber is None:
        return None
    rows = session.execute(
        select(Feedback.listing_id, Feedback.vote).where(Feedback.subscriber_id == subscriber.id)
    ).all()
    if not rows:
        return ResetResult(subscriber.id, 0)
    subscriber.reset_votes = [[int(listing_id), int(vote)] for listing_id, vote in rows]
    session.execute(delete(Feedback).where(Feedback.subscriber_id == subscriber.id))
    session.execute(delete(SubscriberModel).where(SubscriberModel.subscriber_id == subscriber.id))
    return ResetResult(subscriber.id, len(rows))


def undo_reset(session: Session, public_id: str) -> ResetResult | None:
    subscriber = find_by_public_id(session, public_id)
    if subscriber is None:
        return None
    kept = subscriber.reset_votes
    if not kept:
        raise NothingToUndo("there is no reset to undo")
    voted_since = set(
        session.scalars(select(Feedback.listing_id).where(Feedback.subscriber_id == subscriber.id))
    )
    stored = set(
        session.scalars(select(Listing.id).where(Listing.id.in_([listing_id for listing_id, _ in kept])))
    )
    restored = 0
    now = utcnow()
    for listing_id, vote in kept:
        if listing_id in stored and listing_id not in voted_since:
            session.add(
                Feedback(subscriber_id=subscriber.id, listing_id=listing_id, vote=vote, updated_at=now)
            )
            restored += 1
    subscriber.reset_votes = None
    return ResetResult(subscriber.id, restored)
