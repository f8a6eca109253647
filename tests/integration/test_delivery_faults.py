"""A mail server that defers, drops and refuses: every deliverable address gets its digest once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from digest.db import transaction
from digest.deliver.day import tick
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from tests.support.daily import LORA, InlineDispatcher, ingest
from tools.sink import SinkProcess

FAULTS = {
    "closing@example.org": {"action": "421", "times": 1},
    "busy@example.org": {"action": "451", "times": 2},
    "dropped@example.org": {"action": "drop", "times": 1},
    "cut-before-queueing@example.org": {"action": "drop_after_data", "times": 1},
    "lost-reply@example.org": {"action": "accept_then_drop", "times": 1},
    "nobody@example.org": {"action": "550", "times": None},
    "spam@example.org": {"action": "554_after_data", "times": None},
    "full@example.org": {"action": "451", "times": None},
}
HEALTHY = [f"reader{n}@example.org" for n in range(20)]


@pytest.fixture
def faulty_sink(tmp_path: Path) -> Iterator[SinkProcess]:
    sink = SinkProcess.start(tmp_path / "sink.jsonl", faults=FAULTS)
    try:
        yield sink
    finally:
        sink.stop()


def with_mail_server(services: Services, url: str, **changes: object) -> Services:
    return Services(
        settings=replace(services.settings, smtp_url=url, **changes),  # type: ignore[arg-type]
        engine=services.engine,
        sessions=services.sessions,
    )


def make_due(services: Services, emails: list[str]) -> None:
    with transaction(services.sessions) as session:
        session.execute(
            insert(Subscriber),
            [
                {
                    "email": email,
                    "topics": ["LoRA"],
                    "status": SubscriberStatus.ACTIVE,
                    "next_due_at": utcnow() - timedelta(minutes=1),
                }
                for email in emails
            ],
        )


def test_deferrals_drops_and_refusals_end_with_one_email_per_deliverable_address(
    any_services: Services, faulty_sink: SinkProcess, tmp_path: Path
) -> None:
    services = with_mail_server(any_services, faulty_sink.url, retry_base_seconds=0, max_attempts=4)
    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=1))
    make_due(services, sorted(FAULTS) + HEALTHY)

    for _ in range(8):
        tick(services, InlineDispatcher(services))
        with services.sessions() as session:
            waiting = session.scalar(select(Digest.id).where(Digest.status == DigestStatus.PENDING).limit(1))
        if waiting is None:
            break

    received = Counter(to for message in faulty_sink.messages() for to in message["to"])
    deliverable = set(HEALTHY) | {"closing@example.org", "busy@example.org", "dropped@example.org"}
    deliverable |= {"cut-before-queueing@example.org", "lost-reply@example.org"}
    assert set(received) == deliverable
    # The server queued the lost-reply copy and then hung up before its 250: the sender cannot know,
    # so it sends again, with the same Message-ID; every other address got exactly one.
    assert received.pop("lost-reply@example.org") == 2
    assert all(count == 1 for count in received.values()), received
    copies = [m["message_id"] for m in faulty_sink.messages() if m["to"] == ["lost-reply@example.org"]]
    assert len(copies) == 2 and copies[0] == copies[1] and copies[0]
    faults_seen = Counter(fault["fault"] for fault in faulty_sink.faults())
    assert faults_seen["421"] == 1 and faults_seen["drop"] == 1 and faults_seen["drop_after_data"] == 1
    assert faults_seen["accept_then_drop"] == 1
    assert faults_seen["451"] == 2 + 4  # busy twice, full on every one of its four attempts

    with services.sessions() as session:
        outcome = dict(
            session.execute(select(Subscriber.email, Digest.status).join(Subscriber, Digest.subscriber)).all()
        )
        people = {s.email: s for s in session.scalars(select(Subscriber))}
        full_digest = session.scalars(
            select(Digest).join(Subscriber, Digest.subscriber).where(Subscriber.email == "full@example.org")
        ).one()
    assert {email for email, status in outcome.items() if status is DigestStatus.SENT} == deliverable
    with services.sessions() as session:
        ambiguous = dict(
            session.execute(
                select(Subscriber.email, Digest.ambiguous_sends)
                .join(Subscriber, Digest.subscriber)
                .where(Digest.ambiguous_sends > 0)
            ).all()
        )
    # Both hang-ups came after the final ".": from the sender's side the two look the same.
    assert ambiguous == {"lost-reply@example.org": 1, "cut-before-queueing@example.org": 1}
    assert outcome["nobody@example.org"] is DigestStatus.BOUNCED
    assert outcome["spam@example.org"] is DigestStatus.BOUNCED
    assert outcome["full@example.org"] is DigestStatus.FAILED
    assert full_digest.attempts == 4 and "gave up after 4 attempts" in (full_digest.error or "")
    assert "451" in (full_digest.error or "")
    # A hard bounce suppresses the address at once; one digest deferred to the end counts as one soft bounce.
    assert people["nobody@example.org"].status is SubscriberStatus.BOUNCED
    assert "550" in (people["nobody@example.org"].bounce_reason or "")
    assert people["spam@example.org"].status is SubscriberStatus.BOUNCED
    assert people["full@example.org"].status is SubscriberStatus.ACTIVE
    assert people["full@example.org"].soft_bounces == 1
    assert people["busy@example.org"].soft_bounces == 0


def test_repeated_soft_bounces_suppress_the_address(any_services: Services, tmp_path: Path) -> None:
    sink = SinkProcess.start(
        tmp_path / "sink.jsonl", faults={"full@example.org": {"action": "451", "times": None}}
    )
    try:
        services = with_mail_server(
            any_services, sink.url, retry_base_seconds=0, max_attempts=1, soft_bounce_limit=2
        )
        ingest(services, tmp_path, LORA[:1], utcnow() - timedelta(hours=3))
        make_due(services, ["full@example.org", "fine@example.org"])
        tick(services, InlineDispatcher(services))
        with services.sessions() as session:
            full = session.scalars(select(Subscriber).where(Subscriber.email == "full@example.org")).one()
            assert (full.status, full.soft_bounces) == (SubscriberStatus.ACTIVE, 1)

        # The next day's digest is deferred until we give up too: that is the second in a row.
        ingest(services, tmp_path, LORA[1:2], utcnow())
        with transaction(services.sessions) as session:
            session.execute(update(Subscriber).values(next_due_at=utcnow() - timedelta(minutes=1)))
            # Yesterday's digest, as far as the unique (subscriber, date) key is concerned.
            session.execute(update(Digest).values(digest_date=utcnow().date() - timedelta(days=1)))
        tick(services, InlineDispatcher(services))
        with services.sessions() as session:
            full = session.scalars(select(Subscriber).where(Subscriber.email == "full@example.org")).one()
            fine = session.scalars(select(Subscriber).where(Subscriber.email == "fine@example.org")).one()
        assert (full.status, full.soft_bounces) == (SubscriberStatus.BOUNCED, 2)
        assert "2 digests in a row" in (full.bounce_reason or "")
        assert fine.status is SubscriberStatus.ACTIVE
        assert Counter(to for m in sink.messages() for to in m["to"]) == {"fine@example.org": 2}
    finally:
        sink.stop()
