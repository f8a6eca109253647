"""Tasks: each unpacks its arguments, calls one `digest` function and returns a small summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from digest.deliver import day as daily
from digest.deliver import sending
from digest.ingest import sources
from digest.limits import default_limits
from digest.models import utcnow
from digest.rank import learned as profiles
from digest.readers import Readers, SubscriptionRequestData
from digest.subscribers import confirmation
from workers.app import app, services

SEND_BATCH = 50


@app.task(name="digest.send_digests")
def send_digests(digest_ids: list[int]) -> dict[str, str]:
    results = sending.send_digests(services(), digest_ids)
    return {str(digest_id): result.value for digest_id, result in results.items()}


@app.task(name="digest.send_confirmation")
def send_confirmation(subscriber_id: int) -> str:
    return confirmation.send_confirmation(services(), subscriber_id)


@app.task(name="digest.answer_subscription")
def answer_subscription(request: SubscriptionRequestData) -> None:
    current = services()
    Readers(current, CeleryDispatcher(), default_limits(current.settings)).answer_subscription(request)


@app.task(name="digest.run_day")
def run_day(digest_date: str | None = None) -> dict[str, int]:
    day = date.fromisoformat(digest_date) if digest_date else utcnow().date()
    summary = daily.run_day(services(), day, CeleryDispatcher())
    return {"subscribers": summary.subscribers, "queued": summary.sent + summary.not_yet_sent}


@app.task(name="digest.tick")
def tick() -> dict[str, int]:
    report = daily.tick(services(), CeleryDispatcher())
    return {
        "reconciled": len(report.reconciled),
        "opened": len(report.opened.digest_ids),
        "planned": report.planned.planned,
        "queued": report.queued,
    }


@app.task(name="digest.ingest_due")
def ingest_due() -> list[int]:
    claimed = sources.claim_due_sources(services())
    for source_id in claimed:
        fetch_source.delay(source_id)
    return claimed


@app.task(name="digest.fetch_source")
def fetch_source(source_id: int) -> str:
    return sources.fetch_source(services(), source_id).summary()


@app.task(name="digest.retrain_subscriber")
def retrain_subscriber(subscriber_id: int) -> bool:
    return profiles.retrain(services(), subscriber_id)


class CeleryDispatcher:
    """Queues sends as Celery tasks, in batches so one SMTP connection serves many emails."""

    def send_digests(self, digest_ids: Sequence[int]) -> None:
        ids = list(digest_ids)
        for start in range(0, len(ids), SEND_BATCH):
            send_digests.delay(ids[start : start + SEND_BATCH])

    def send_confirmation(self, subscriber_id: int) -> None:
        send_confirmation.delay(subscriber_id)

    def answer_subscription(self, request: SubscriptionRequestData) -> None:
        answer_subscription.delay(request)

    def retrain(self, subscriber_id: int) -> None:
        retrain_subscriber.delay(subscriber_id)


@app.task(name="digest.process_bounces")
def process_bounces() -> dict[str, int]:
    # Imported here: only the workers that run this task need the mailbox readers.
    from digest.bounces.processor import process_bounces as process

    run = process(services())
    return {"messages": len(run.outcomes), **run.actions()}
