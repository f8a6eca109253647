"""Planning and sending one day's digests, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select, update

from digest.db import transaction
from digest.deliver.day import plan_day, run_day
from digest.deliver.sending import SendResult, send_digests
from digest.ingest.files import ingest_paths
from digest.models import Cadence, Digest, DigestItem, DigestStatus, Listing, Subscriber
from digest.services import Services
from digest.subscribers.subscriptions import subscribe, unsubscribe
from tests.support.daily import DAY, LORA, OTHER, T0, InlineDispatcher, add_subscriber, ingest, outbox
from tests.support.env import free_port


def test_a_run_sends_each_subscriber_their_matches_once(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    ingest(services, tmp_path, LORA + OTHER, T0 - timedelta(hours=2))
    add_subscriber(services, "lora@example.org", "LoRA, parameter-efficient fine-tuning")
    add_subscriber(services, "nobody@example.org", "quantum gravity")

    summary = run_day(services, DAY, InlineDispatcher(services), now=T0)
    assert (summary.subscribers, summary.sent, summary.nothing_new, summary.failed) == (2, 1, 1, 0)
    (eml,) = services.settings.outbox_dir.glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["To"] == "lora@example.org"
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert all(title in text for title, _ in LORA)
    assert "Protein folding" not in text

    again = run_day(services, DAY, InlineDispatcher(services), now=T0 + timedelta(minutes=5))
    assert (again.sent, again.already_sent) == (0, 1)
    assert len(outbox(services)) == 1


def test_the_next_digest_holds_only_listings_stored_since_and_never_a_repeat(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    ingest(services, tmp_path, LORA[:2], T0 - timedelta(hours=2))
    add_subscriber(services, "lora@example.org", "LoRA")
    assert run_day(services, DAY, InlineDispatcher(services), now=T0).sent == 1

    nothing = run_day(
        services, DAY + timedelta(days=1), InlineDispatcher(services), now=T0 + timedelta(days=1)
    )
    assert (nothing.sent, nothing.nothing_new) == (0, 1)

    ingest(services, tmp_path, [LORA[2], *OTHER], T0 + timedelta(days=1, hours=1))
    later = run_day(services, DAY + timedelta(days=2), InlineDispatcher(services), now=T0 + timedelta(days=2))
    assert later.sent == 1
    with services.sessions() as session:
        sent_titles = session.execute(
            select(Digest.digest_date, Listing.title)
            .join(DigestItem, DigestItem.digest_id == Digest.id)
            .join(Listing, Listing.id == DigestItem.listing_id)
            .order_by(Digest.digest_date, DigestItem.rank)
        ).all()
    by_day: dict[str, list[str]] = {}
    for day, title in sent_titles:
        by_day.setdefault(day.isoformat(), []).append(title)
    assert set(by_day) == {"2026-11-23", "2026-11-25"}
    assert sorted(by_day["2026-11-23"]) == sorted(t for t, _ in LORA[:2])
    # Only what was stored since the previous digest, the on-topic paper first; nothing sent twice.
    assert by_day["2026-11-25"][0] == LORA[2][0]
    assert set(by_day["2026-11-25"]) <= {LORA[2][0], *(t for t, _ in OTHER)}


def test_two_workers_sending_the_same_digests_send_each_once(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, T0 - timedelta(hours=1))
    for n in range(12):
        add_subscriber(services, f"reader{n}@example.org", "LoRA")
    plan = plan_day(services, DAY, now=T0)
    assert len(plan.to_send) == 12

    results: list[dict[int, SendResult]] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        results.append(send_digests(services, plan.to_send))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    sent_per_digest = {i: sum(r[i] == SendResult.SENT for r in results) for i in plan.to_send}
    assert set(sent_per_digest.values()) == {1}
    assert len(outbox(services)) == 12


def test_a_subscriber_who_leaves_before_the_send_gets_nothing(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, T0 - timedelta(hours=1))
    add_subscriber(services, "leaver@example.org", "LoRA")
    plan = plan_day(services, DAY, now=T0)
    with transaction(services.sessions) as session:
        public_id = (
            session.scalars(select(Digest).where(Digest.id == plan.to_send[0])).one().subscriber.public_id
        )
        unsubscribe(session, public_id)
    assert send_digests(services, plan.to_send) == {plan.to_send[0]: SendResult.FAILED}
    assert outbox(services) == []


def test_an_smtp_outage_leaves_the_digest_to_retry_and_a_rerun_sends_it(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, T0 - timedelta(hours=1))
    add_subscriber(services, "patient@example.org", "LoRA")
    down = Services(
        settings=replace(services.settings, smtp_url=f"smtp://127.0.0.1:{free_port()}"),
        engine=services.engine,
        sessions=services.sessions,
    )
    failed = run_day(down, DAY, InlineDispatcher(down), now=T0)
    assert (failed.sent, failed.failed, failed.retrying) == (0, 0, 1)
    assert "patient@example.org" in failed.failures[0]
    assert "Connection refused" in failed.failures[0]
    with services.sessions() as session:
        row = session.scalars(select(Digest)).one()
        assert (row.status, row.attempts) == (DigestStatus.PENDING, 1)
        assert row.next_attempt_at is not None

    retried = run_day(services, DAY, InlineDispatcher(services), now=T0 + timedelta(minutes=10))
    assert (retried.sent, retried.failed) == (1, 0)
    assert len(outbox(services)) == 1


def test_trending_today_lists_the_most_upvoted_papers_not_already_picked(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    path = tmp_path / "hf.jsonl"
    records = [
        {"title": t, "abstract": a, "id": f"2611.0{n:04d}"} for n, (t, a) in enumerate(LORA + OTHER, start=1)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ingest_paths(services.sessions, [path], now=T0 - timedelta(hours=1))
    with transaction(services.sessions) as session:
        for listing in session.scalars(select(Listing)):
            listing.upvotes = {"Protein folding with attention": 90, "Rank-adaptive LoRA": 300}.get(
                listing.title
            )
        subscribe(session, "fan@example.org", "LoRA", confirmed=True)
        quiet = subscribe(session, "quiet@example.org", "LoRA", confirmed=True)
        session.get_one(Subscriber, quiet.subscriber_id).show_trending = False

    assert run_day(services, DAY, InlineDispatcher(services), now=T0).sent == 2
    texts = {}
    for eml in services.settings.outbox_dir.glob("*.eml"):
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        texts[str(message["To"])] = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    picks, trending = texts["fan@example.org"].split("Trending today")
    assert "Rank-adaptive LoRA" in picks and "Rank-adaptive LoRA" not in trending, "never twice in one email"
    assert "Protein folding with attention" in trending
    assert "Trending today" not in texts["quiet@example.org"]


def test_two_runs_planning_the_same_day_at_once_send_each_digest_once(
    any_services: Services, tmp_path: Path
) -> None:
    services = any_services
    ingest(services, tmp_path, LORA, T0 - timedelta(hours=1))
    for n in range(8):
        add_subscriber(services, f"reader{n}@example.org", "LoRA")
    plans = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        plans.append(plan_day(services, DAY, now=T0))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(plans) == 2, "neither run crashed on the other's rows"
    with services.sessions() as session:
        assert len(session.scalars(select(Digest.id)).all()) == 8
    for plan in plans:
        send_digests(services, plan.to_send)
    assert len(outbox(services)) == 8


def test_a_weekly_readers_digest_says_weekly_not_daily(services: Services, tmp_path: Path) -> None:
    ingest(services, tmp_path, LORA, T0 - timedelta(hours=2))
    add_subscriber(services, "weekly@example.org", "LoRA")
    with transaction(services.sessions) as session:
        session.execute(update(Subscriber).values(cadence=Cadence.WEEKLY, weekly_day=2, send_hour=7))
    assert run_day(services, DAY, InlineDispatcher(services), now=T0).sent == 1
    (eml,) = services.settings.outbox_dir.glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "every Wednesday at 07:00 UTC" in text and "daily" not in text.lower()
