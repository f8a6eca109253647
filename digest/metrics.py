"""Prometheus metrics, read from the database at each scrape: what every process can see alike.

The web app serves them at /metrics; the figures are the operator's questions from `digest status` as
gauges (digests of today by state, subscribers by state, stuck and retrying sends, queue depth), how late
the scheduler is and how long today's emails took to go out, and the send path's troubles: today's
failures by the class of the server's last reply, resends after an unknown outcome, and suppressions.
Counters kept inside each worker would reach no scraper (workers serve no HTTP) and would reset with
every restart; the rows already record all of this, so any one process can report it for all.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from digest.models import Cadence, Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from digest.status import gather, queue_depth


class DigestCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        status = gather(self.services, now)
        digests = GaugeMetricFamily("digest_digests_today", "Today's digests by state", labels=["state"])
        for state in DigestStatus:
            digests.add_metric([state.value], status.digests_today.get(state.value, 0))
        yield digests
        subscribers = GaugeMetricFamily("digest_subscribers", "Subscribers by state", labels=["state"])
        for name, count in sorted(status.subscribers.items()):
            subscribers.add_metric([name], count)
        yield subscribers
        yield GaugeMetricFamily(
            "digest_sends_stuck", "Digests in sending past the send lease", value=status.stuck_sending
        )
        yield GaugeMetricFamily(
            "digest_sends_retrying", "Pending digests that have failed at least once", value=status.retrying
        )
        depth = queue_depth(self.services)
        if depth.waiting is not None:
            yield GaugeMetricFamily("digest_queue_depth", "Tasks waiting in the broker", value=depth.waiting)
        yield from self._timing(now)
        yield from self._troubles(now)

    def _troubles(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        today = now.date()
        with self.services.sessions() as session:
            errors = session.execute(
                select(Digest.status, Digest.error).where(
                    Digest.digest_date == today,
                    Digest.error.is_not(None),
                    Digest.status.in_([DigestStatus.PENDING, DigestStatus.FAILED, DigestStatus.BOUNCED]),
                )
            ).all()
            resent = session.scalar(
                select(func.coalesce(func.sum(Digest.ambiguous_sends), 0)).where(Digest.digest_date == today)
            )
            since = now - timedelta(days=1)
            suppressed = session.execute(
                select(Subscriber.status, func.count())
                .where(Subscriber.bounced_at >= since)
                .group_by(Subscriber.status)
            ).all()
        failures = GaugeMetricFamily(
            "digest_send_failures_today",
            "Today's digests whose last attempt failed, by outcome and the class of the server's reply",
            labels=["outcome", "reply_class"],
        )
        for (outcome, reply_class), count in sorted(
            Counter((_outcome(status), reply_class_of(error)) for status, error in errors).items()
        ):
            failures.add_metric([outcome, reply_class], count)
        yield failures
        yield GaugeMetricFamily(
            "digest_ambiguous_resends_today",
            "Sends of today's digests repeated, with the same Message-ID, because the outcome was unknown",
            value=float(resent or 0),
        )
        suppressions = GaugeMetricFamily(
            "digest_suppressed_last_day",
            "Addresses suppressed in the last 24 hours: bounced (hard or repeated soft) or complained",
            labels=["state"],
        )
        for status, count in suppressed:
            suppressions.add_metric(
                ["complained" if status is SubscriberStatus.UNSUBSCRIBED else status.value], count
            )
        yield suppressions

    def _timing(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        with self.services.sessions() as session:
            oldest_due = session.scalar(
                select(func.min(Subscriber.next_due_at)).where(
                    Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.cadence != Cadence.PAUSED
                )
            )
            opened, first, last = session.execute(
                select(func.min(Digest.created_at), func.min(Digest.sent_at), func.max(Digest.sent_at)).where(
                    Digest.digest_date == now.date()
                )
            ).one()
        lag = max(0.0, (now - oldest_due).total_seconds()) if oldest_due is not None else 0.0
        yield GaugeMetricFamily(
            "digest_tick_lag_seconds",
            "How long the most overdue delivery has waited to be claimed",
            value=lag,
        )
        if opened is not None and first is not None and last is not None:
            yield GaugeMetricFamily(
                "digest_first_email_seconds",
                "Seconds from opening today's first digest to the first email handed over",
                value=(first - opened).total_seconds(),
            )
            yield GaugeMetricFamily(
                "digest_last_email_seconds",
                "Seconds from opening today's first digest to the latest email handed over",
                value=(last - opened).total_seconds(),
            )


# The code as our errors quote it ("...refused the recipient a@b: 550 5.1.1 no such user"), never a port.
_REPLY_CODE = re.compile(r"(?:^|: )([245])\d\d(?=[ -]|$)")


def reply_class_of(error: str | None) -> str:
    """'4xx' or '5xx' from the SMTP reply quoted in a digest's error; 'connection' when none was heard."""
    match = _REPLY_CODE.search(error or "")
    if match is not None:
        return f"{match.group(1)}xx"
    text = error or ""
    if "connection" in text or "connect" in text or "reconciled" in text:
        return "connection"
    return "other"


def _outcome(status: DigestStatus) -> str:
    return "retrying" if status is DigestStatus.PENDING else status.value


def exposition(services: Services) -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DigestCollector(services))
    return generate_latest(registry)
