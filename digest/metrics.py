"""Prometheus metrics, read from the database at each scrape: what every process can see alike.

The web app serves them at /metrics; the figures are the operator's questions from `digest status` as
gauges (digests of today by state, subscribers by state, stuck and retrying sends, queue depth) plus how
late the scheduler is and how long today's emails took to go out.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

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


def exposition(services: Services) -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DigestCollector(services))
    return generate_latest(registry)
