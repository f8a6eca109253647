"""The scheduler's tick: due subscribers claimed once, sends fenced, stuck sends reconciled, bounces kept."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

from sqlalchemy import select, update

from digest.db import transaction
from digest.deliver.day import tick
from digest.deliver.planning import open_due, plan_pending
from digest.deliver.schedule import validated
from digest.deliver.sending import SendResult, reconcile, send_digests
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from digest.status import gather, report
from digest.subscribers.subscriptions import subscribe
from tests.support.daily import LORA, InlineDispatcher, ingest, outbox


def add(services: Services, email: str, hour: int, tz: str, cadence: str = "daily", weekday: int = 0) -> int:
    with transaction(services.sessions) as session:
        result = subscribe(
            session, email, "LoRA", confirmed=True, schedule=validated(cadence, hour, tz, weekday)
        )
    return result.subscriber_id


def everyone_due(services: Services, now: datetime) -> None:
    with transaction(services.sessions) as session:
        session.execute(update(Subscriber).values(next_due_at=now - timedelta(minutes=1)))


def due_at(services: Services, email: str) -> datetime | None:
    with services.sessions() as session:
        return session.scalars(select(Subscriber.next_due_at).where(Subscriber.email == email)).one()


def digests(services: Services) -> list[tuple[str, str]]:
    with services.sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Digest.status).join(Subscriber).order_by(Subscriber.email, Digest.id)
        ).all()
    return [(email, status.value) for email, status in rows]


def test_each_subscriber_is_sent_at_their_own_local_hour(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    # An hour that is one hour ahead of now in UTC, and the same wall hour in a zone 9 hours ahead.
    hour = (now + timedelta(hours=1)).hour
    add(services, "utc@example.org", hour, "UTC")
    add(services, "tokyo@example.org", hour, "Asia/Tokyo")
    add(services, "paused@example.org", hour, "UTC", cadence="paused")

    # Confirming works out the first delivery time; the paused subscriber gets none.
    with transaction(services.sessions) as session:
        session.execute(
            update(Subscriber).where(Subscriber.email == "tokyo@example.org").values(next_due_at=None)
        )
    first = tick(services, InlineDispatcher(services), now=now)
    assert first.opened.scheduled == 1  # a subscriber left without a time gets one from the tick
    assert first.opened.digest_ids == []
    utc_due, tokyo_due = due_at(services, "utc@example.org"), due_at(services, "tokyo@example.org")
    assert utc_due is not None and tokyo_due is not None
    assert utc_due - now <= timedelta(hours=1) and (utc_due - tokyo_due) % timedelta(days=1) == timedelta(
        hours=9
    )
    assert due_at(services, "paused@example.org") is None

    at_utc_hour = tick(services, InlineDispatcher(services), now=utc_due + timedelta(seconds=1))
    assert len(at_utc_hour.opened.digest_ids) == (2 if tokyo_due <= utc_due else 1)
    sent_to = {email for email, status in digests(services) if status == "sent"}
    assert "utc@example.org" in sent_to and "paused@example.org" not in sent_to
    assert due_at(services, "utc@example.org") == utc_due + timedelta(days=1)

    again = tick(services, InlineDispatcher(services), now=utc_due + timedelta(seconds=2))
    assert again.opened.digest_ids == [] and again.queued == 0
    assert len(outbox(services)) == len(sent_to)


def test_a_weekly_subscriber_is_claimed_only_on_their_day(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    other_day = (now.weekday() + 3) % 7
    add(services, "weekly@example.org", 6, "UTC", cadence="weekly", weekday=other_day)
    tick(services, InlineDispatcher(services), now=now)
    due = due_at(services, "weekly@example.org")
    assert due is not None and due.weekday() == other_day and due > now
    for hours in range(1, 6 * 24, 12):
        moment = now + timedelta(hours=hours)
        if moment < due:
            assert tick(services, InlineDispatcher(services), now=moment).opened.digest_ids == []
    assert len(tick(services, InlineDispatcher(services), now=due).opened.digest_ids) == 1


def test_two_ticks_at_once_claim_each_due_subscriber_once(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    for n in range(40):
        add(services, f"reader{n}@example.org", 0, "UTC")
    everyone_due(services, now)

    opened: list[int] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        opened.extend(open_due(services, now).digest_ids)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 40 and len(set(opened)) == 40
    planned = plan_pending(services, now)
    assert planned.planned == 40
    assert plan_pending(services, now).planned == 0  # already planned: nothing is ranked twice


def test_a_digest_opened_but_never_ranked_is_ranked_and_sent_by_the_next_tick(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    add(services, "reader@example.org", 0, "UTC")
    everyone_due(services, now)
    assert len(open_due(services, now).digest_ids) == 1  # ... and the process dies here
    report = tick(services, InlineDispatcher(services), now=now + timedelta(minutes=2))
    assert report.opened.digest_ids == [] and report.planned.planned == 1
    assert digests(services) == [("reader@example.org", "sent")]


def _stuck_in_sending(services: Services, *, handed: bool) -> int:
    now = utcnow()
    add(services, "reader@example.org", 0, "UTC")
    everyone_due(services, now)
    open_due(services, now)
    plan_pending(services, now)
    with transaction(services.sessions) as session:
        digest = session.scalars(select(Digest)).one()
        digest.status = DigestStatus.SENDING
        digest.claimed_at = now - timedelta(hours=1)
        digest.attempts = 1
        if handed:
            digest.handed_at = now - timedelta(hours=1)
            digest.message_id = "<first-copy@example.org>"
        return digest.id


def test_a_send_stuck_before_the_hand_over_is_resent(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=2))
    digest_id = _stuck_in_sending(services, handed=False)
    settled = reconcile(services)
    assert [(s.digest_id, s.ambiguous) for s in settled] == [(digest_id, False)]
    assert "certainly did not leave" in settled[0].explanation
    tick(services, InlineDispatcher(services))
    assert digests(services) == [("reader@example.org", "sent")]
    assert len(outbox(services)) == 1
    with services.sessions() as session:
        assert session.get(Digest, digest_id).ambiguous_sends == 0  # type: ignore[union-attr]


def test_a_send_stuck_after_the_hand_over_is_resent_with_the_same_message_id(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=2))
    digest_id = _stuck_in_sending(services, handed=True)
    settled = reconcile(services)
    assert [(s.digest_id, s.ambiguous) for s in settled] == [(digest_id, True)]
    assert "outcome unknown" in settled[0].explanation and "same Message-ID" in settled[0].explanation
    tick(services, InlineDispatcher(services))
    assert digests(services) == [("reader@example.org", "sent")]
    [resent] = outbox(services)
    message = message_from_bytes((services.settings.outbox_dir / resent).read_bytes())
    assert message["Message-ID"] == "<first-copy@example.org>"
    with services.sessions() as session:
        row = session.get(Digest, digest_id)
        assert row is not None
        assert (row.ambiguous_sends, row.message_id) == (1, "<first-copy@example.org>")
    status = "\n".join(report(gather(services)))
    assert (
        "Resent with the same Message-ID after an unknown outcome: 1 digest(s): reader@example.org (1x)"
        in status
    )


def test_a_live_send_is_not_reconciled_and_a_reconciled_one_is_not_sent_by_its_old_worker(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=2))
    digest_id = _stuck_in_sending(services, handed=False)
    with transaction(services.sessions) as session:
        session.execute(update(Digest).values(claimed_at=utcnow()))
    assert reconcile(services) == []  # inside the lease: the worker may still be sending

    # The old worker's lease runs out while it renders; a reconcile resets the row, and a new worker sends it.
    with transaction(services.sessions) as session:
        session.execute(update(Digest).values(claimed_at=utcnow() - timedelta(hours=1)))
    assert len(reconcile(services)) == 1
    assert send_digests(services, [digest_id]) == {digest_id: SendResult.SENT}
    assert send_digests(services, [digest_id]) == {digest_id: SendResult.SKIPPED}
    assert len(outbox(services)) == 1


def test_an_active_subscriber_after_a_bounce_is_not_claimed(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    add(services, "gone@example.org", 0, "UTC")
    with transaction(services.sessions) as session:
        subscriber = session.scalars(select(Subscriber)).one()
        subscriber.status = SubscriberStatus.BOUNCED
        subscriber.next_due_at = now - timedelta(minutes=1)
    report = tick(services, InlineDispatcher(services), now=now)
    assert report.opened.digest_ids == [] and digests(services) == []


def test_retries_back_off_exponentially(services: Services) -> None:
    from digest.deliver.sending import backoff

    settings = replace(services.settings, retry_base_seconds=60)
    assert [backoff(settings, n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert datetime(2026, 1, 1, tzinfo=UTC) + backoff(settings, 1) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def test_an_unexpected_error_mid_batch_sends_nothing_twice_and_leaves_nothing_in_sending(
    any_services: Services, tmp_path: Path, monkeypatch: object
) -> None:
    import pytest

    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    for n in range(3):
        add(services, f"reader{n}@example.org", 0, "UTC")
    everyone_due(services, now)
    open_due(services, now)
    plan_pending(services, now)
    with services.sessions() as session:
        ids = sorted(session.scalars(select(Digest.id)).all())

    real_render = services.renderer.render
    calls = {"n": 0}

    def flaky(name: str, context: dict[str, object]) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("template being replaced")
        return real_render(name, context)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services.renderer, "render", flaky)
        with pytest.raises(RuntimeError, match="template being replaced"):
            send_digests(services, ids)
    with services.sessions() as session:
        rows = {d.id: d for d in session.scalars(select(Digest))}
    assert rows[ids[0]].status is DigestStatus.SENT
    assert [rows[i].status for i in ids[1:]] == [DigestStatus.PENDING, DigestStatus.PENDING]
    assert [rows[i].attempts for i in ids[1:]] == [0, 0]
    assert len(outbox(services)) == 1
    # The next attempt sends the other two, once each.
    with transaction(services.sessions) as session:
        session.execute(update(Digest).values(next_attempt_at=None))
    assert send_digests(services, ids) == {
        ids[0]: SendResult.SKIPPED,
        ids[1]: SendResult.SENT,
        ids[2]: SendResult.SENT,
    }
    assert len(outbox(services)) == 3


def test_every_message_waits_for_the_shared_rate_limiter(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    for n in range(4):
        add(services, f"reader{n}@example.org", 0, "UTC")
    everyone_due(services, now)

    class Counting:
        calls = 0

        def acquire(self) -> float:
            Counting.calls += 1
            return 0.0

    services.__dict__["rate_limiter"] = Counting()
    tick(services, InlineDispatcher(services), now=now)
    assert Counting.calls == 4 == len(outbox(services))


def test_status_reports_todays_deliveries_and_who_is_next(services: Services, tmp_path: Path) -> None:
    now = utcnow()
    ingest(services, tmp_path, LORA, now - timedelta(hours=1))
    add(services, "sent@example.org", 0, "UTC")
    add(services, "later@example.org", (now.hour + 2) % 24, "Asia/Tokyo")
    with transaction(services.sessions) as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "sent@example.org")
            .values(next_due_at=now - timedelta(minutes=1))
        )
    tick(services, InlineDispatcher(services), now=now)
    status = gather(services, now)
    assert status.digests_today["sent"] == 1 and status.subscribers["active"] == 2
    assert {email for _, email, _ in status.next_due} == {"sent@example.org", "later@example.org"}
    assert [due for due, _, _ in status.next_due] == sorted(due for due, _, _ in status.next_due)
    assert all(due > now for due, _, _ in status.next_due)
    lines = "\n".join(report(status))
    assert "later@example.org" in lines and "Asia/Tokyo" in lines
    assert "no broker: tasks run in the calling process" in lines
