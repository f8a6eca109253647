"""What an operator asks first: is mail going out, is anything stuck, who is next."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from digest.models import Cadence, Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from digest.tables import text_table

NEXT_DUE_SHOWN = 5


@dataclass
class QueueDepth:
    where: str
    waiting: int | None
    unacknowledged: int | None = None
    problem: str | None = None


@dataclass
class Status:
    today: date
    digests_today: Counter[str] = field(default_factory=Counter)
    subscribers: Counter[str] = field(default_factory=Counter)
    stuck_sending: int = 0
    retrying: int = 0
    # Today's digests sent again because an earlier send's outcome was unknown, with how many times.
    resent_ambiguous: list[tuple[str, int]] = field(default_factory=list)
    next_due: list[tuple[datetime, str, str]] = field(default_factory=list)
    queue: QueueDepth | None = None


def queue_depth(services: Services) -> QueueDepth:
    settings = services.settings
    if settings.eager:
        return QueueDepth("no broker: tasks run in the calling process", None)
    if not (settings.broker_url or "").startswith(("redis://", "rediss://")):
        return QueueDepth(
            f"broker {settings.broker_url}", None, problem="queue depth is only read from Redis"
        )
    import redis

    client = redis.Redis.from_url(settings.broker_url or "", socket_timeout=5, socket_connect_timeout=5)
    where = f"Redis queue {settings.queue!r}"
    try:
        waiting = int(client.llen(settings.queue))
        # Celery's Redis transport keeps messages delivered to a worker but not yet acknowledged here.
        unacked = int(client.hlen("unacked"))
    except redis.RedisError as exc:
        return QueueDepth(where, None, problem=f"cannot reach the broker: {exc}")
    finally:
        client.close()
    return QueueDepth(where, waiting, unacked)


def gather(services: Services, now: datetime | None = None) -> Status:
    now = now or utcnow()
    status = Status(today=now.date())
    stale = now - timedelta(seconds=services.settings.send_lease_seconds)
    with services.sessions() as session:
        status.digests_today.update(
            {
                s.value: n
                for s, n in session.execute(
                    select(Digest.status, func.count())
                    .where(Digest.digest_date == status.today)
                    .group_by(Digest.status)
                )
            }
        )
        status.subscribers.update(
            {
                s.value: n
                for s, n in session.execute(
                    select(Subscriber.status, func.count()).group_by(Subscriber.status)
                )
            }
        )
        status.subscribers["paused"] = int(
            session.scalar(
                select(func.count()).where(
                    Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.cadence == Cadence.PAUSED
                )
            )
            or 0
        )
        status.stuck_sending = int(
            session.scalar(
                select(func.count()).where(Digest.status == DigestStatus.SENDING, Digest.claimed_at < stale)
            )
            or 0
        )
        status.retrying = int(
            session.scalar(
                select(func.count()).where(Digest.status == DigestStatus.PENDING, Digest.attempts > 0)
            )
            or 0
        )
        status.resent_ambiguous = [
            (email, count)
            for email, count in session.execute(
                select(Subscriber.email, Digest.ambiguous_sends)
                .join(Subscriber, Subscriber.id == Digest.subscriber_id)
                .where(Digest.digest_date == status.today, Digest.ambiguous_sends > 0)
                .order_by(Subscriber.email)
            )
        ]
        status.next_due = [
            (due, email, tz)
            for due, email, tz in session.execute(
                select(Subscriber.next_due_at, Subscriber.email, Subscriber.timezone)
                .where(
                    Subscriber.status == SubscriberStatus.ACTIVE,
                    Subscriber.cadence != Cadence.PAUSED,
                    Subscriber.next_due_at.is_not(None),
                )
                .order_by(Subscriber.next_due_at)
                .limit(NEXT_DUE_SHOWN)
            )
            if due is not None
        ]
    status.queue = queue_depth(services)
    return status


def report(status: Status) -> list[str]:
    lines = [f"Digests dated {status.today.isoformat()} (UTC):"]
    order = ["sent", "pending", "sending", "failed", "bounced", "empty"]
    lines += [
        "  " + line
        for line in text_table(
            [order, [str(status.digests_today.get(name, 0)) for name in order]],
            right_aligned=range(len(order)),
        )
    ]
    lines.append(
        f"Retrying: {status.retrying} digest(s) waiting for another attempt; "
        f"stuck in sending past the lease: {status.stuck_sending} (the next tick reconciles them)"
    )
    if status.resent_ambiguous:
        shown = ", ".join(f"{email} ({count}x)" for email, count in status.resent_ambiguous[:NEXT_DUE_SHOWN])
        more = len(status.resent_ambiguous) - NEXT_DUE_SHOWN
        lines.append(
            f"Resent with the same Message-ID after an unknown outcome: {len(status.resent_ambiguous)} "
            f"digest(s): {shown}" + (f" and {more} more" if more > 0 else "")
        )
    subscribers = status.subscribers
    lines.append(
        "Subscribers: "
        + ", ".join(
            f"{subscribers.get(name, 0)} {name}"
            for name in ("active", "paused", "pending", "bounced", "unsubscribed")
        )
        + " (paused ones are counted among the active too)"
    )
    queue = status.queue
    if queue is not None:
        if queue.waiting is None:
            lines.append(f"Queue: {queue.where}" + (f" ({queue.problem})" if queue.problem else ""))
        else:
            lines.append(
                f"Queue: {queue.where}: {queue.waiting} task(s) waiting, "
                f"{queue.unacknowledged} taken by a worker and not yet finished"
            )
    if status.next_due:
        lines.append("Next due:")
        lines += [
            "  " + line
            for line in text_table(
                [["due (UTC)", "subscriber", "time zone"]]
                + [[f"{due:%Y-%m-%d %H:%M}", email, tz] for due, email, tz in status.next_due]
            )
        ]
    else:
        lines.append("Next due: nobody is scheduled (the beat schedules new subscribers on its next tick)")
    return lines
