"""The send stage: render each planned digest and hand it to the mail server; never lose one.

A batch of digests is claimed with one compare-and-set (pending → sending, stamping `claimed_at`, which
also serves as the claim's fencing token). Just before the final "." of each SMTP DATA the row records
`handed_at` and its Message-ID: until then the message certainly has not left. The same write records
the previous message's 250 as sent, so confirming costs no round trip of its own, and at any moment at
most one message per connection is handed over but not yet recorded as accepted.

Such a message's outcome is unknown: the server may have queued it and the reply got lost, or not. Both
the live path (a connection dropped after the hand-over) and `reconcile` (a worker killed) follow one
rule: send it again, with the same Message-ID, so the worst case is one duplicate that mailbox providers
can collapse, never a digest recorded as sent that nobody received. Temporary failures are retried with
exponential backoff; a permanent refusal of the address is a bounce and suppresses it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Integer, String, Update, bindparam, case, literal, select, update

from digest.db import transaction
from digest.deliver.batch import load_batch
from digest.mail.digest_email import DigestToSend, render_digest
from digest.mail.transport import DeliveryError, MailConnection
from digest.models import (
    Digest,
    DigestStatus,
    Subscriber,
    SubscriberStatus,
    UTCDateTime,
    utcnow,
)
from digest.services import Services

log = logging.getLogger(__name__)

_STATUS = Digest.__table__.c.status.type

# A batch reopens its connection at most this often before leaving the rest for a later attempt.
MAX_RECONNECTS = 3


class SendResult(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"


def backoff(settings: Any, attempts: int) -> timedelta:
    return timedelta(seconds=settings.retry_base_seconds * 2 ** max(0, attempts - 1))


class _Connection:
    """The batch's mail connection, opened on first use and reopened after the server drops it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.context: AbstractContextManager[MailConnection] | None = None
        self.connection: MailConnection | None = None
        self.reconnects = 0

    def get(self) -> MailConnection:
        if self.connection is None:
            context = self.services.mailer.open()
            self.connection = context.__enter__()
            self.context = context
        return self.connection

    def drop(self) -> None:
        context, self.context, self.connection = self.context, None, None
        if context is not None:
            with suppress(Exception):
                context.__exit__(None, None, None)
        self.reconnects += 1


@dataclass
class _Outcomes:
    """What a batch has learnt: `accepted` holds the 250s not yet written, which ride on the next
    hand-over's write (or the batch's last one)."""

    engine: Engine
    results: dict[int, SendResult] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    _writer: Connection | None = None

    def writer(self) -> Connection:
        """One connection for the batch's per-email writes, in autocommit: each is one atomic UPDATE,
        and a transaction around it would add a BEGIN and a COMMIT round trip per email."""
        if self._writer is None:
            self._writer = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def send_digests(services: Services, digest_ids: Sequence[int]) -> dict[int, SendResult]:
    """Send a batch of planned digests over one mail connection."""
    now = utcnow()
    claimed = _claim(services, digest_ids, now)
    outcomes = _Outcomes(services.engine, {digest_id: SendResult.SKIPPED for digest_id in digest_ids})
    if not claimed:
        return outcomes.results
    rows = load_batch(services, claimed)
    connection = _Connection(services)
    handed: set[int] = set()
    processed: set[int] = set()
    try:
        for row in rows:
            result = _send_one(services, connection, row, now, handed, outcomes)
            if result is None:  # the connection could not be (re)opened: the rest wait for a retry
                break
            processed.add(row.id)
            outcomes.results[row.id] = result
            if result is SendResult.SENT:
                outcomes.accepted.append(row.id)
    finally:
        connection.drop()
        try:
            _record_accepted(outcomes, now)
        finally:
            outcomes.close()
        _clear_soft_bounces(services, outcomes.sent)
        # Whatever stopped the batch (an unreachable server, or an error nobody expected), the digests it
        # never handed over go back to pending now instead of waiting in `sending` for a reconcile.
        unsent = [r for r in rows if r.id not in processed and r.id not in handed]
        for row in unsent:
            outcomes.results[row.id] = SendResult.RETRY
        _release_unattempted(services, unsent, now)
    return outcomes.results


def _claim(services: Services, digest_ids: Sequence[int], now: datetime) -> list[int]:
    """Take the ids still waiting to be sent; another worker (or an earlier run) owns the rest."""
    if not digest_ids:
        return []
    with transaction(services.sessions) as session:
        return list(
            session.scalars(
                update(Digest)
                .where(
                    Digest.id.in_(list(digest_ids)),
                    Digest.status == DigestStatus.PENDING,
                    Digest.planned_at.is_not(None),
                )
                .values(status=DigestStatus.SENDING, claimed_at=now, attempts=Digest.attempts + 1, error=None)
                .returning(Digest.id)
                .execution_options(synchronize_session=False)
            ).all()
        )


def _send_one(  # noqa: C901, PLR0911 - one SMTP send's outcomes, each its own early return, read top to bottom
    services: Services,
    connection: _Connection,
    row: DigestToSend,
    claimed_at: datetime,
    handed_ids: set[int],
    outcomes: _Outcomes,
) -> SendResult | None:
    subscriber = row.subscriber
    if subscriber.status is not SubscriberStatus.ACTIVE:
        _finish(services, row, DigestStatus.FAILED, f"not sent: subscriber is {subscriber.status.value}")
        return SendResult.FAILED
    try:
        mail = render_digest(services, row)
    except ValueError as exc:  # an address or a link that cannot go into a message; retrying won't help
        _finish(services, row, DigestStatus.FAILED, f"could not build the message: {exc}")
        return SendResult.FAILED
    handed = False

    def handing_over() -> None:
        nonlocal handed
        if not _hand_over(row.id, claimed_at, mail.message_id, outcomes):
            raise _ClaimLost(row.id)
        handed = True
        handed_ids.add(row.id)

    services.rate_limiter.acquire()
    try:
        mailer = connection.get()
    except DeliveryError as exc:
        log.warning("cannot open a mail connection: %s", exc)
        _retry_or_give_up(services, row, f"temporary delivery failure: {exc}", soft_bounce=False)
        return None
    try:
        mailer.send(mail, handing_over)
    except _ClaimLost:
        log.warning("digest %d was reconciled by another worker; not sending it from this batch", row.id)
        return SendResult.SKIPPED
    except DeliveryError as exc:
        if exc.connection_lost:
            connection.drop()
        if exc.bounce:
            _bounce(services, row, str(exc))
            return SendResult.BOUNCED
        if exc.permanent:
            _finish(services, row, DigestStatus.FAILED, f"permanent delivery failure: {exc}")
            return SendResult.FAILED
        if handed:
            # The server had the whole message: it may have queued it before the connection went.
            error = (
                f"outcome unknown, sent again with the same Message-ID: {exc} after the whole message "
                "was handed over"
            )
        else:
            error = f"temporary delivery failure: {exc}"
        # A 4xx naming the recipient is the mailbox deferring us; a dropped connection says nothing about it.
        result = _retry_or_give_up(
            services, row, error, soft_bounce=not exc.connection_lost, ambiguous=handed
        )
        if exc.connection_lost and connection.reconnects > MAX_RECONNECTS:
            return None if result is SendResult.RETRY else result
        return result
    if not handed:
        # Mailers without a hand-over point (none today) still record the Message-ID.
        _hand_over(row.id, claimed_at, mail.message_id, outcomes)
    return SendResult.SENT


class _ClaimLost(Exception):
    """The row is no longer this worker's to send: a reconcile took it over after the lease ran out."""


def _hand_over_statement() -> Update:
    """Built once: composing this UPDATE anew for every email cost about as much as running it."""
    is_current = Digest.id == bindparam("current", type_=Integer())
    now = bindparam("now", type_=UTCDateTime())
    message_id = bindparam("handed_message_id", type_=String())
    return (
        update(Digest)
        .where(
            Digest.id.in_(bindparam("ids", expanding=True)),
            Digest.status == DigestStatus.SENDING,
            Digest.claimed_at == bindparam("claim", type_=UTCDateTime()),
        )
        .values(
            status=case((is_current, Digest.status), else_=literal(DigestStatus.SENT, _STATUS)),
            sent_at=case((is_current, Digest.sent_at), else_=now),
            handed_at=case((is_current, now), else_=Digest.handed_at),
            message_id=case((is_current, message_id), else_=Digest.message_id),
        )
        .returning(Digest.id)
    )


_HAND_OVER = _hand_over_statement()


def _hand_over(digest_id: int, claimed_at: datetime, message_id: str, outcomes: _Outcomes) -> bool:
    """Mark `digest_id` handed over and record the batch's pending 250s as sent, in one statement.

    False if the row is no longer this claim's (a reconcile took it over): it must not be sent.
    """
    accepted = outcomes.accepted
    updated = set(
        outcomes.writer().scalars(
            _HAND_OVER,
            {
                "ids": [digest_id, *accepted],
                "current": digest_id,
                "now": utcnow(),
                "claim": claimed_at,
                "handed_message_id": message_id,
            },
        )
    )
    outcomes.sent.extend(accepted)
    accepted.clear()
    return digest_id in updated


def _record_accepted(outcomes: _Outcomes, claimed_at: datetime) -> None:
    """The batch's last 250s, which no later hand-over carried."""
    if not outcomes.accepted:
        return
    outcomes.writer().execute(
        update(Digest)
        .where(
            Digest.id.in_(outcomes.accepted),
            Digest.status == DigestStatus.SENDING,
            Digest.claimed_at == claimed_at,
        )
        .values(status=DigestStatus.SENT, sent_at=utcnow())
    )
    outcomes.sent.extend(outcomes.accepted)
    outcomes.accepted.clear()


def _clear_soft_bounces(services: Services, sent: list[int]) -> None:
    """A digest that got through ends a run of deferrals; one statement per batch, not per email."""
    if not sent:
        return
    with transaction(services.sessions) as session:
        subscriber_ids = select(Digest.subscriber_id).where(Digest.id.in_(sent))
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(subscriber_ids), Subscriber.soft_bounces > 0)
            .values(soft_bounces=0)
            .execution_options(synchronize_session=False)
        )


def _release_unattempted(services: Services, rows: list[DigestToSend], now: datetime) -> None:
    """Digests of a batch whose turn never came go back to pending for a later tick; as they were never
    tried, the claim's attempt is taken back."""
    if not rows:
        return
    with transaction(services.sessions) as session:
        session.execute(
            update(Digest)
            .where(
                Digest.id.in_([row.id for row in rows]),
                Digest.status == DigestStatus.SENDING,
                Digest.handed_at.is_(None),
            )
            .values(
                status=DigestStatus.PENDING,
                attempts=Digest.attempts - 1,
                claimed_at=None,
                queued_at=None,
                next_attempt_at=now + backoff(services.settings, 1),
                error="not attempted: the batch stopped before its turn",
            )
            .execution_options(synchronize_session=False)
        )


def _finish(services: Services, row: DigestToSend, status: DigestStatus, error: str) -> None:
    with transaction(services.sessions) as session:
        session.execute(
            update(Digest)
            .where(Digest.id == row.id)
            .values(status=status, error=error[:2000], handed_at=None, claimed_at=None)
            .execution_options(synchronize_session=False)
        )


def _retry_or_give_up(
    services: Services, row: DigestToSend, error: str, *, soft_bounce: bool, ambiguous: bool = False
) -> SendResult:
    settings = services.settings
    row.error = error[:2000]
    ambiguous_sends = Digest.ambiguous_sends + (1 if ambiguous else 0)
    if row.attempts < settings.max_attempts:
        with transaction(services.sessions) as session:
            session.execute(
                update(Digest)
                .where(Digest.id == row.id)
                .values(
                    status=DigestStatus.PENDING,
                    error=row.error,
                    handed_at=None,
                    claimed_at=None,
                    queued_at=None,
                    ambiguous_sends=ambiguous_sends,
                    next_attempt_at=utcnow() + backoff(settings, row.attempts),
                )
                .execution_options(synchronize_session=False)
            )
        return SendResult.RETRY
    with transaction(services.sessions) as session:
        session.execute(
            update(Digest)
            .where(Digest.id == row.id)
            .values(
                status=DigestStatus.FAILED,
                error=f"gave up after {row.attempts} attempts; last: {error}"[:2000],
                handed_at=None,
                claimed_at=None,
                ambiguous_sends=ambiguous_sends,
            )
            .execution_options(synchronize_session=False)
        )
        if soft_bounce:
            subscriber = session.get(Subscriber, row.subscriber_id)
            if subscriber is not None:
                subscriber.soft_bounces += 1
                if subscriber.soft_bounces >= settings.soft_bounce_limit:
                    suppress_address(
                        subscriber,
                        f"{subscriber.soft_bounces} digests in a row deferred until we gave up; "
                        f"last: {error}",
                    )
    return SendResult.FAILED


def _bounce(services: Services, row: DigestToSend, error: str) -> None:
    with transaction(services.sessions) as session:
        session.execute(
            update(Digest)
            .where(Digest.id == row.id)
            .values(status=DigestStatus.BOUNCED, error=error[:2000], handed_at=None, claimed_at=None)
            .execution_options(synchronize_session=False)
        )
        subscriber = session.get(Subscriber, row.subscriber_id)
        if subscriber is not None:
            suppress_address(subscriber, error)


def suppress_address(subscriber: Subscriber, reason: str) -> None:
    subscriber.status = SubscriberStatus.BOUNCED
    subscriber.bounced_at = utcnow()
    subscriber.bounce_reason = reason[:500]
    subscriber.next_due_at = None


@dataclass(frozen=True)
class Reconciled:
    digest_id: int
    email: str
    # True when the message may have left before the worker stopped: it is sent again all the same.
    ambiguous: bool
    explanation: str


def reconcile(services: Services, now: datetime | None = None) -> list[Reconciled]:
    """Settle digests left in `sending` by a worker that stopped (killed, crashed, lost its host).

    Every such digest goes back to pending and is sent again. One never handed over certainly did not
    leave; one handed over may have (the server had the whole message), so it is resent with the
    Message-ID it went out with and counted in `ambiguous_sends`: a possible duplicate that providers
    collapse is better than a digest recorded as sent that nobody received.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=services.settings.send_lease_seconds)
    settled: list[Reconciled] = []
    with transaction(services.sessions) as session:
        stuck = session.execute(
            select(Digest.id, Digest.handed_at, Digest.claimed_at, Subscriber.email)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(Digest.status == DigestStatus.SENDING, Digest.claimed_at < stale)
        ).all()
        for digest_id, handed_at, claimed_at, email in stuck:
            ambiguous = handed_at is not None
            if ambiguous:
                explanation = (
                    "the worker stopped after handing it to the mail server at "
                    f"{handed_at:%Y-%m-%d %H:%M:%S} UTC, before recording the reply; outcome unknown, "
                    "so it will be sent again with the same Message-ID"
                )
            else:
                explanation = (
                    f"the worker that claimed it at {claimed_at:%Y-%m-%d %H:%M:%S} UTC stopped before "
                    "handing it to the mail server, so it certainly did not leave; it will be sent again"
                )
            result = session.execute(
                update(Digest)
                .where(
                    Digest.id == digest_id,
                    Digest.status == DigestStatus.SENDING,
                    Digest.claimed_at == claimed_at,
                )
                .values(
                    status=DigestStatus.PENDING,
                    claimed_at=None,
                    queued_at=None,
                    handed_at=None,
                    next_attempt_at=None,
                    ambiguous_sends=Digest.ambiguous_sends + (1 if ambiguous else 0),
                    error=f"reconciled: {explanation}",
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                settled.append(Reconciled(digest_id, email, ambiguous, explanation))
    for item in settled:
        log.warning("digest %d to %s reconciled: %s", item.digest_id, item.email, item.explanation)
    return settled
