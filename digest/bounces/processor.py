"""Acting on the bounces and complaints that arrive after a digest was handed to the mail server.

`process_bounces` reads every message waiting in DIGEST_BOUNCE_MAILBOX, ties it to a digest and files it:

- **Hard bounce** (5.x.x): the digest becomes BOUNCED and the address is suppressed at once, as for a 5xx
  during the SMTP session (`suppress_address`).
- **Soft bounce** (a server gave up after 4.x.x deferrals): the digest becomes FAILED and counts as one of
  `soft_bounce_limit` digests in a row that never got through, the rule `_retry_or_give_up` applies to
  deferrals during the session. Such a report arrives days after the send (Postfix retries for five
  days by default), after later digests were handed over, and each hand-over resets
  `Subscriber.soft_bounces`; so the count is also taken from the digests themselves: the run of
  consecutive digests that these reports gave up on, around this one.
- **Complaint** (ARF abuse, fraud...): the subscriber becomes UNSUBSCRIBED at once, with the complaint in
  `bounce_reason` and `bounced_at` (so the admin pages list it with the suppressions). Not BOUNCED: the
  address works and its owner reads it, and the preferences page would tell them their mail bounced. A
  complaint asks us to stop, which is what unsubscribing records; the provider's own one-click
  unsubscribe that often follows then changes nothing, and only the owner's deliberate resubscribe (the
  signed link's button, or the form and its confirmation link) mails them again, as after any unsubscribe.
- **Delayed**, unrelated, malformed, or not ours (no valid return path, no known Message-ID): no change.

A report is tied to its digest by the VERP return path it was delivered to or names (verified by its
MAC), else by the returned message's Message-ID. Never by the failed recipient's address alone: anyone
can mail the bounce address a made-up report naming any subscriber.

Processing the same report twice changes nothing the second time: a digest already BOUNCED, or already
marked by a soft report, is not counted again, and a subscriber who confirmed again after the digest was
sent is not suppressed by a report about it (they have shown that the mailbox works since). Each message
is processed in a transaction of its own; one that fails is logged, left in the mailbox for the next run,
and the run goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.bounces.mailbox import Disposition, Mailbox, MailboxError, open_mailbox
from digest.bounces.parse import COMPLAINT_MARK, BounceKind, Report, parse_report
from digest.bounces.verp import digest_id_from
from digest.db import transaction
from digest.deliver.sending import suppress_address
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services

log = logging.getLogger(__name__)

# Starts Digest.error of a digest a soft report gave up on: how a second copy of the report, and the
# count of digests in a row, recognise it.
SOFT_MARK = "soft bounce:"
# A report about a digest in these states waits for the send to finish (a fast bounce can beat the row).
_IN_FLIGHT = (DigestStatus.PENDING, DigestStatus.SENDING)


class Action(StrEnum):
    SUPPRESSED = "suppressed"
    # A soft bounce counted towards the limit, which it did not reach.
    COUNTED = "counted"
    # Recorded on the digest; the subscriber was already suppressed or has confirmed again since.
    RECORDED = "recorded"
    # The same report, or the send's own bounce, was recorded before.
    ALREADY_DONE = "already done"
    LEFT_ALONE = "left alone"
    # Read again by the next run.
    LATER = "later"
    ERROR = "error"


_DISPOSITION = {
    Action.SUPPRESSED: Disposition.PROCESSED,
    Action.COUNTED: Disposition.PROCESSED,
    Action.RECORDED: Disposition.PROCESSED,
    Action.ALREADY_DONE: Disposition.PROCESSED,
    Action.LEFT_ALONE: Disposition.UNHANDLED,
    Action.LATER: Disposition.KEEP,
    Action.ERROR: Disposition.KEEP,
}


@dataclass(frozen=True)
class Outcome:
    """What was done about one message in the mailbox."""

    key: str
    kind: BounceKind | None
    action: Action
    detail: str
    digest_id: int | None = None
    recipient: str | None = None
    filed: Disposition = Disposition.KEEP

    def line(self) -> str:
        kind = self.kind.value if self.kind else "unread"
        return f"{self.key}: {kind}, {self.action.value} ({self.filed.value}): {self.detail}"


@dataclass
class BounceRun:
    mailbox: str
    outcomes: list[Outcome] = field(default_factory=list)

    def kinds(self) -> Counter[str]:
        return Counter(o.kind.value if o.kind else "unread" for o in self.outcomes)

    def actions(self) -> Counter[str]:
        return Counter(o.action.value for o in self.outcomes)

    def summary(self) -> str:
        if not self.outcomes:
            return f"No messages waiting in {self.mailbox}."
        kinds = ", ".join(f"{n} {name}" for name, n in sorted(self.kinds().items()))
        actions = ", ".join(f"{n} {name}" for name, n in sorted(self.actions().items()))
        return f"{len(self.outcomes)} message(s) in {self.mailbox}: {kinds}; {actions}."


def process_bounces(services: Services) -> BounceRun:
    """Read and file every message waiting in the bounce mailbox; raises MailboxError if it cannot be read."""
    location = services.settings.bounce_mailbox
    if not location:
        raise MailboxError("DIGEST_BOUNCE_MAILBOX is not set, so there is no bounce mailbox to read")
    with open_mailbox(location) as box:
        run = BounceRun(mailbox=box.name)
        for key in box.waiting():
            outcome = _process_one(services, box, key)
            if outcome is not None:
                outcome = _file(box, outcome)
                log.info("bounce mailbox %s", outcome.line())
                run.outcomes.append(outcome)
    return run


def _process_one(services: Services, box: Mailbox, key: str) -> Outcome | None:
    report: Report | None = None
    try:
        data = box.read(key)
        if data is None:  # another run filed it meanwhile
            return None
        report = parse_report(data)
        return _act(services, key, report)
    except Exception as exc:  # one message must not stop the run; it stays for the next one
        log.exception("bounce mailbox %s: message %s could not be processed", box.name, key)
        return Outcome(key, report.kind if report else None, Action.ERROR, f"{type(exc).__name__}: {exc}")


def _file(box: Mailbox, outcome: Outcome) -> Outcome:
    disposition = _DISPOSITION[outcome.action]
    try:
        box.file(outcome.key, disposition)
    except Exception as exc:  # the outcome is in the database; a later run finds the report already done
        log.exception("bounce mailbox %s: message %s could not be moved", box.name, outcome.key)
        return replace(outcome, detail=f"{outcome.detail}; not moved to {disposition.value}: {exc}")
    return replace(outcome, filed=disposition)


def _act(services: Services, key: str, report: Report) -> Outcome:
    def outcome(action: Action, detail: str, digest_id: int | None = None) -> Outcome:
        return Outcome(key, report.kind, action, detail, digest_id, report.recipient)

    if report.kind not in (BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT):
        return outcome(Action.LEFT_ALONE, report.explanation)
    with transaction(services.sessions) as session:
        row, how = _find_digest(services, session, report)
        if row is None:
            return outcome(Action.LEFT_ALONE, f"not ours: {how}")
        subscriber = session.get(Subscriber, row.subscriber_id, with_for_update=True)
        if subscriber is None:  # pragma: no cover - the foreign key cascades
            return outcome(Action.LEFT_ALONE, f"digest {row.id} has no subscriber")
        if row.status in _IN_FLIGHT:
            return outcome(Action.LATER, f"digest {row.id} is still {row.status.value}", row.id)
        if row.status is DigestStatus.EMPTY:
            return outcome(
                Action.LEFT_ALONE, f"digest {row.id} sent no email, so this is not about it", row.id
            )
        if report.kind is BounceKind.HARD:
            action, detail = _hard(row, subscriber, report)
        elif report.kind is BounceKind.SOFT:
            action, detail = _soft(services, session, row, subscriber, report)
        else:
            action, detail = _complaint(row, subscriber, report)
        return outcome(action, f"digest {row.id} ({how}): {detail}", row.id)


def _find_digest(services: Services, session: Session, report: Report) -> tuple[Digest | None, str]:
    for address in report.return_paths:
        digest_id = digest_id_from(services.settings, address)
        if digest_id is not None:
            row = session.get(Digest, digest_id, with_for_update=True)
            if row is not None:
                return row, f"return path {address}"
    if report.original_message_id:
        row = session.scalars(
            select(Digest).where(Digest.message_id == report.original_message_id).with_for_update().limit(1)
        ).first()
        if row is not None:
            return row, f"Message-ID {report.original_message_id}"
    if report.return_paths or report.original_message_id:
        return None, "no valid digest return path and no Message-ID of ours"
    return None, "names no return path and quotes no Message-ID"


def _sent_at(row: Digest) -> datetime:
    return row.sent_at or row.handed_at or row.created_at


def _confirmed_since(subscriber: Subscriber, row: Digest) -> bool:
    """The owner confirmed the address after this digest left: a report about it is out of date."""
    return subscriber.confirmed_at is not None and subscriber.confirmed_at > _sent_at(row)


def _may_suppress(subscriber: Subscriber, row: Digest) -> bool:
    # A pending subscriber asked to come back after this digest left; their confirmation link decides.
    return subscriber.status in (
        SubscriberStatus.ACTIVE,
        SubscriberStatus.UNSUBSCRIBED,
    ) and not _confirmed_since(subscriber, row)


def _hard(row: Digest, subscriber: Subscriber, report: Report) -> tuple[Action, str]:
    reason = report.reason
    already = row.status is DigestStatus.BOUNCED
    if not already:
        row.status = DigestStatus.BOUNCED
        row.error = reason[:2000]
    if not _may_suppress(subscriber, row):
        state = _state(subscriber, row)
        return (Action.ALREADY_DONE if already else Action.RECORDED), f"{reason}; {state}"
    suppress_address(subscriber, reason)
    return Action.SUPPRESSED, f"{subscriber.email} suppressed: {reason}"


def _soft(
    services: Services, session: Session, row: Digest, subscriber: Subscriber, report: Report
) -> tuple[Action, str]:
    if row.status is DigestStatus.BOUNCED or (row.error or "").startswith(SOFT_MARK):
        return Action.ALREADY_DONE, f"already recorded: {row.error}"
    reason = report.reason
    row.status = DigestStatus.FAILED
    row.error = f"{SOFT_MARK} {reason}"[:2000]
    if not _may_suppress(subscriber, row) or subscriber.status is not SubscriberStatus.ACTIVE:
        return Action.RECORDED, f"{reason}; {_state(subscriber, row)}"
    session.flush()
    count = max(subscriber.soft_bounces + 1, _soft_run(session, row))
    subscriber.soft_bounces = count
    limit = services.settings.soft_bounce_limit
    if count < limit:
        return Action.COUNTED, f"soft bounce {count} of {limit} in a row: {reason}"
    suppress_address(subscriber, f"{count} digests in a row given up on by a mail server; last: {reason}")
    return Action.SUPPRESSED, f"{subscriber.email} suppressed after {count} soft bounces in a row: {reason}"


def _soft_run(session: Session, row: Digest) -> int:
    """How many of the subscriber's digests in a row, this one among them, soft reports gave up on."""
    history = session.execute(
        select(Digest.id, Digest.error)
        .where(
            Digest.subscriber_id == row.subscriber_id,
            Digest.status.in_([DigestStatus.SENT, DigestStatus.FAILED, DigestStatus.BOUNCED]),
        )
        .order_by(Digest.digest_date)
    ).all()
    marked = [(error or "").startswith(SOFT_MARK) for _, error in history]
    at = next(i for i, (digest_id, _) in enumerate(history) if digest_id == row.id)
    start, end = at, at
    while start > 0 and marked[start - 1]:
        start -= 1
    while end + 1 < len(marked) and marked[end + 1]:
        end += 1
    return end - start + 1


def _complaint(row: Digest, subscriber: Subscriber, report: Report) -> tuple[Action, str]:
    reason = report.reason
    if subscriber.status is SubscriberStatus.BOUNCED or (
        subscriber.status is SubscriberStatus.UNSUBSCRIBED
        and (subscriber.bounce_reason or "").startswith(COMPLAINT_MARK)
    ):
        return Action.ALREADY_DONE, f"{reason}; {_state(subscriber, row)}"
    if not _may_suppress(subscriber, row):
        return Action.RECORDED, f"{reason}; {_state(subscriber, row)}"
    now = utcnow()
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
    subscriber.next_due_at = None
    subscriber.bounced_at = now
    subscriber.bounce_reason = reason[:500]
    return Action.SUPPRESSED, f"{subscriber.email} unsubscribed: {reason}"


def _state(subscriber: Subscriber, row: Digest) -> str:
    if _confirmed_since(subscriber, row):
        return (
            f"{subscriber.email} confirmed again after this digest was sent, so it stays {subscriber.status}"
        )
    return f"{subscriber.email} is {subscriber.status.value} already"
