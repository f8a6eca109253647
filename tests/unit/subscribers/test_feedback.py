from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.models import Feedback, Listing, Subscriber, SubscriberStatus, Vote
from digest.services import Services
from digest.subscribers.feedback import (
    UnknownFeedbackTarget,
    history,
    record_vote,
    remove_vote,
    restore_vote,
    votes_for,
)


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


def add_listing(session: Session, title: str) -> Listing:
    listing = Listing(title_key=title.lower(), title=title, abstract="An abstract.", source="test")
    session.add(listing)
    session.flush()
    return listing


def add_subscriber(session: Session, email: str = "ann@example.org") -> Subscriber:
    subscriber = Subscriber(email=email, topics=["llms"], status=SubscriberStatus.ACTIVE)
    session.add(subscriber)
    session.flush()
    return subscriber


def stored_rows(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Feedback)) or 0


def test_first_vote_is_stored(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    result = record_vote(session, subscriber.public_id, paper.id, Vote.MORE)
    assert result.listing is paper
    assert (result.previous, result.current) == (None, Vote.MORE)
    assert votes_for(session, subscriber.id) == {paper.id: Vote.MORE}


def test_last_vote_wins_and_one_row_is_kept(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    record_vote(session, subscriber.public_id, paper.id, Vote.MORE)
    result = record_vote(session, subscriber.public_id, paper.id, Vote.LESS)
    assert (result.previous, result.current) == (Vote.MORE, Vote.LESS)
    assert votes_for(session, subscriber.id) == {paper.id: Vote.LESS}
    assert stored_rows(session) == 1


def test_repeating_a_vote_changes_nothing(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    record_vote(session, subscriber.public_id, paper.id, Vote.LESS)
    row = session.scalars(select(Feedback)).one()
    first_update = row.updated_at
    result = record_vote(session, subscriber.public_id, paper.id, Vote.LESS)
    assert (result.previous, result.current) == (Vote.LESS, Vote.LESS)
    assert row.updated_at == first_update
    assert stored_rows(session) == 1


def test_restore_puts_back_the_previous_vote(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    record_vote(session, subscriber.public_id, paper.id, Vote.MORE)
    changed = record_vote(session, subscriber.public_id, paper.id, Vote.LESS)
    undone = restore_vote(session, subscriber.public_id, paper.id, changed.previous)
    assert (undone.previous, undone.current) == (Vote.LESS, Vote.MORE)
    assert votes_for(session, subscriber.id) == {paper.id: Vote.MORE}


def test_restore_to_none_deletes_the_vote_and_is_repeatable(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    first = record_vote(session, subscriber.public_id, paper.id, Vote.MORE)
    restore_vote(session, subscriber.public_id, paper.id, first.previous)
    assert stored_rows(session) == 0
    again = restore_vote(session, subscriber.public_id, paper.id, None)
    assert (again.previous, again.current) == (None, None)
    assert votes_for(session, subscriber.id) == {}


def test_votes_for_only_returns_that_subscribers_votes(session: Session) -> None:
    ann = add_subscriber(session, "ann@example.org")
    bob = add_subscriber(session, "bob@example.org")
    papers = [add_listing(session, f"Paper {n}") for n in range(3)]
    record_vote(session, ann.public_id, papers[0].id, Vote.MORE)
    record_vote(session, ann.public_id, papers[1].id, Vote.LESS)
    record_vote(session, bob.public_id, papers[2].id, Vote.MORE)
    assert votes_for(session, ann.id) == {papers[0].id: Vote.MORE, papers[1].id: Vote.LESS}
    assert votes_for(session, bob.id) == {papers[2].id: Vote.MORE}


def test_unsubscribed_subscribers_votes_are_still_recorded(session: Session) -> None:
    subscriber = add_subscriber(session)
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    paper = add_listing(session, "Sparse attention")
    record_vote(session, subscriber.public_id, paper.id, Vote.LESS)
    assert votes_for(session, subscriber.id) == {paper.id: Vote.LESS}


def test_unknown_subscriber_or_listing_is_refused(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    with pytest.raises(UnknownFeedbackTarget):
        record_vote(session, "nobody", paper.id, Vote.MORE)
    with pytest.raises(UnknownFeedbackTarget):
        record_vote(session, subscriber.public_id, paper.id + 1000, Vote.MORE)
    with pytest.raises(UnknownFeedbackTarget):
        restore_vote(session, subscriber.public_id, paper.id + 1000, None)
    assert stored_rows(session) == 0


def test_remove_vote_takes_the_vote_back_and_is_repeatable(session: Session) -> None:
    subscriber = add_subscriber(session)
    paper = add_listing(session, "Sparse attention")
    record_vote(session, subscriber.public_id, paper.id, Vote.LESS)
    removed = remove_vote(session, subscriber.public_id, paper.id)
    assert (removed.previous, removed.current, removed.changed) == (Vote.LESS, None, True)
    assert removed.subscriber_id == subscriber.id
    assert stored_rows(session) == 0
    again = remove_vote(session, subscriber.public_id, paper.id)
    assert not again.changed
    with pytest.raises(UnknownFeedbackTarget):
        remove_vote(session, subscriber.public_id, paper.id + 1000)


def test_history_lists_the_current_votes_newest_first(session: Session) -> None:
    ann = add_subscriber(session, "ann@example.org")
    bob = add_subscriber(session, "bob@example.org")
    papers = [add_listing(session, f"Paper {n}") for n in range(3)]
    for paper, vote in zip(papers, (Vote.MORE, Vote.LESS, Vote.MORE), strict=True):
        record_vote(session, ann.public_id, paper.id, vote)
    record_vote(session, bob.public_id, papers[0].id, Vote.LESS)
    start = datetime(2026, 11, 20, 8, tzinfo=UTC)
    for offset, row in enumerate(session.scalars(select(Feedback).where(Feedback.subscriber_id == ann.id))):
        row.updated_at = start + timedelta(hours=[2, 0, 1][offset])
    session.flush()

    entries = history(session, ann.id)
    assert [(e.title, e.vote) for e in entries] == [
        ("Paper 0", Vote.MORE),
        ("Paper 2", Vote.MORE),
        ("Paper 1", Vote.LESS),
    ]
    assert entries[0].updated_at == start + timedelta(hours=2)
    assert entries[0].listing_id == papers[0].id
    assert [e.title for e in history(session, ann.id, limit=1)] == ["Paper 0"]
    assert [(e.title, e.vote) for e in history(session, bob.id)] == [("Paper 0", Vote.LESS)]
