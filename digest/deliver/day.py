"""A day of digests: open them, choose their papers, queue the sends, and say what happened.

`tick` is what the beat runs every few minutes: it settles sends a dead worker left behind, opens the
digests of subscribers whose delivery time has come, ranks them, and queues the sends in batches. A
send task is queued only after the transaction that made its digest ready has committed.
`run_day` is the operator's (and the demo's) way to send everyone a digest for one date right now.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select, update

from digest.db import transaction
from digest.deliver.planning import Opened, Planned, open_day, open_due, plan_pending
from digest.deliver.sending import Reconciled, reconcile
from digest.ingest.health import source_health
from digest.models import Digest, DigestStatus, Subscriber, utcnow
from digest.services import Dispatcher, Services

__all__ = ["DayPlan", "RunSummary", "TickReport", "plan_day", "queue_ready", "run_day", "tick"]


@dataclass
class TickReport:
    reconciled: list[Reconciled] = field(default_factory=list)
    opened: Opened = field(default_factory=Opened)
    planned: Planned = field(default_factory=Planned)
    queued: int = 0


def _queue(services: Services, dispatcher: Dispatcher, digest_ids: list[int], now: datetime) -> int:
    """Mark the digests queued, commit, and only then hand them to the dispatcher."""
    if not digest_ids:
        return 0
    with transaction(services.sessions) as session:
        session.execute(
            update(Digest)
            .where(Digest.id.in_(digest_ids))
            .values(queued_at=now)
            .execution_options(synchronize_session=False)
        )
    dispatcher.send_digests(digest_ids)
    return len(digest_ids)


def queue_ready(services: Services, dispatcher: Dispatcher, now: datetime) -> int:
    """Queue planned digests that are due a (re)try and not already sitting in the queue.

    A queue mark older than the lease means the task was lost (a broker restart, say) and it is queued
    again; the send's own claim makes a duplicate task harmless.
    """
    stale = now - timedelta(seconds=services.settings.send_lease_seconds)
    with transaction(services.sessions) as session:
        ready = list(
            session.scalars(
                update(Digest)
                .where(
                    Digest.status == DigestStatus.PENDING,
                    Digest.planned_at.is_not(None),
                    or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now),
                    or_(Digest.queued_at.is_(None), Digest.queued_at < stale),
                )
                .values(queued_at=now)
                .returning(Digest.id)
                .execution_options(synchronize_session=False)
            ).all()
        )
    if ready:
        dispatcher.send_digests(sorted(ready))
    return len(ready)


def tick(services: Services, dispatcher: Dispatcher, *, now: datetime | None = None) -> TickReport:
    now = now or utcnow()
    report = TickReport(reconciled=reconcile(services, now))
    report.opened = open_due(services, now)
    queued: list[int] = []

    def queue_block(ids: list[int]) -> None:
        queued.extend(ids)
        _queue(services, dispatcher, ids, now)

    report.planned = plan_pending(services, now, on_planned=queue_block)
    report.queued = len(queued) + queue_ready(services, dispatcher, now)
    return report


@dataclass
class DayPlan:
    digest_date: date
    subscribers: int = 0
    to_send: list[int] = field(default_factory=list)
    nothing_new: int = 0
    new_listings: int = 0
    window_start: datetime | None = None
    already_sent: int = 0


@dataclass
class RunSummary:
    digest_date: date
    subscribers: int
    sent: int
    nothing_new: int
    already_sent: int
    failed: int
    not_yet_sent: int
    bounced: int = 0
    retrying: int = 0
    failures: list[str] = field(default_factory=list)
    note: str | None = None


def plan_day(services: Services, digest_date: date, *, now: datetime | None = None) -> DayPlan:
    """Open and rank a digest dated `digest_date` for every active subscriber; returns what to send."""
    now = now or utcnow()
    opened = open_day(services, digest_date, now)
    planned = plan_pending(services, now)
    plan = DayPlan(digest_date, new_listings=planned.new_listings, window_start=planned.window_start)
    with services.sessions() as session:
        statuses = session.execute(
            select(Digest.id, Digest.status, Digest.planned_at).where(Digest.digest_date == digest_date)
        ).all()
    fresh = set(opened.digest_ids)
    for digest_id, status, planned_at in statuses:
        plan.subscribers += 1
        if status is DigestStatus.PENDING and planned_at is not None:
            # An operator's run retries at once; the scheduler's ticks respect the backoff.
            plan.to_send.append(digest_id)
        elif status is DigestStatus.EMPTY and digest_id in fresh:
            plan.nothing_new += 1
        elif status in (DigestStatus.SENT, DigestStatus.SENDING):
            plan.already_sent += 1
    plan.to_send.sort()
    return plan


def summarize(services: Services, plan: DayPlan) -> RunSummary:
    with services.sessions() as session:
        rows = session.execute(
            select(Digest.status, Digest.error, Subscriber.email)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(Digest.id.in_(plan.to_send))
        ).all()
    counts: dict[DigestStatus, int] = defaultdict(int)
    failures = []
    retrying = 0
    for status, error, email in rows:
        counts[status] += 1
        # A pending digest with an error was tried and waits for its next attempt; one without is simply
        # still in the queue.
        if status is DigestStatus.PENDING and error:
            retrying += 1
        if status in (DigestStatus.FAILED, DigestStatus.BOUNCED) or (
            status is DigestStatus.PENDING and error
        ):
            failures.append(f"{email}: {error}")
    return RunSummary(
        digest_date=plan.digest_date,
        subscribers=plan.subscribers,
        sent=counts[DigestStatus.SENT],
        nothing_new=plan.nothing_new,
        already_sent=plan.already_sent,
        failed=counts[DigestStatus.FAILED],
        bounced=counts[DigestStatus.BOUNCED],
        retrying=retrying,
        not_yet_sent=counts[DigestStatus.PENDING] + counts[DigestStatus.SENDING],
        failures=failures,
    )


def _why_nothing_new(services: Services, since: datetime, now: datetime) -> str:
    """A day without listings is normal on a weekend and alarming on a Tuesday; say which this is."""
    with services.sessions() as session:
        report = source_health(session, now, services.settings.extra_holidays)
    head = f"no new listings since {since:%Y-%m-%d %H:%M} UTC"
    if not report:
        return f"{head}, and no sources are configured (`digest sources add`, or `digest ingest FILES`)"
    troubled = [h for h in report if h.state in ("stale", "failing", "never fetched")]
    if troubled:
        return f"{head}: " + "; ".join(f"{h.name} is {h.state} ({h.detail})" for h in troubled)
    return f"{head}; every source is healthy, just quiet: " + "; ".join(
        f"{h.name} {h.detail}" for h in report
    )


def run_day(
    services: Services, digest_date: date, dispatcher: Dispatcher, *, now: datetime | None = None
) -> RunSummary:
    now = now or utcnow()
    reconcile(services, now)
    plan = plan_day(services, digest_date, now=now)
    if plan.to_send:
        _queue(services, dispatcher, plan.to_send, now)
    summary = summarize(services, plan)
    if plan.window_start is not None and plan.new_listings == 0:
        summary.note = _why_nothing_new(services, plan.window_start, now)
    return summary
