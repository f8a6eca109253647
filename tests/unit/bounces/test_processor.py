"""The bounce processor on a real Maildir and a real database (SQLite, and PostgreSQL with -m integration)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import NamedTuple

import pytest
from sqlalchemy import select

from digest.bounces.mailbox import Disposition, MailboxError
from digest.bounces.parse import BounceKind
from digest.bounces.processor import Action, BounceRun, process_bounces
from digest.bounces.verp import return_path
from digest.db import transaction
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus
from digest.services import Services
from digest.subscribers import subscriptions
from tests.unit.bounces import samples
from tests.unit.bounces.test_mailbox import deliver, make_maildir

SENT = datetime(2026, 11, 23, 6, 0, 2, tzinfo=UTC)
_names = count(1)


@dataclass
class Box:
    services: Services
    maildir: Path

    def deliver(self, data: bytes) -> str:
        name = f"17954{next(_names):05d}.M{next(_names)}P1Q1.relay.example.org"
        deliver(self.maildir, name, data)
        return name

    def run(self) -> BounceRun:
        return process_bounces(self.services)

    def processed(self) -> list[str]:
        return sorted(p.name for p in (self.maildir / ".processed" / "cur").glob("*"))

    def unhandled(self) -> list[str]:
        return sorted(p.name for p in (self.maildir / ".unhandled" / "new").glob("*"))

    def waiting(self) -> list[str]:
        return sorted(p.name for p in (self.maildir / "new").glob("*"))


@pytest.fixture
def box(any_services: Services, tmp_path: Path) -> Box:
    maildir = make_maildir(tmp_path / "bounces" / "Maildir")
    settings = replace(any_services.settings, bounce_mailbox=f"maildir:{maildir}")
    return Box(
        Services(settings=settings, engine=any_services.engine, sessions=any_services.sessions), maildir
    )


def add_reader(services: Services, email: str, *, confirmed_at: datetime = SENT - timedelta(days=30)) -> int:
    with transaction(services.sessions) as session:
        subscriber = Subscriber(
            email=email,
            topics=["lora"],
            status=SubscriberStatus.ACTIVE,
            confirmed_at=confirmed_at,
            next_due_at=SENT + timedelta(days=1),
        )
        session.add(subscriber)
        session.flush()
        return subscriber.id


def add_digest(
    services: Services, subscriber_id: int, day: int = 0, status: DigestStatus = DigestStatus.SENT
) -> tuple[int, str]:
    """A digest handed over on day `day` after SENT; returns its id and Message-ID."""
    at = SENT + timedelta(days=day)
    with transaction(services.sessions) as session:
        row = Digest(
            subscriber_id=subscriber_id,
            digest_date=date(2026, 11, 23) + timedelta(days=day),
            status=status,
            candidates_until=at - timedelta(hours=1),
            planned_at=at - timedelta(minutes=5),
            handed_at=at if status is not DigestStatus.PENDING else None,
            sent_at=at if status is DigestStatus.SENT else None,
            attempts=1,
        )
        session.add(row)
        session.flush()
        row.message_id = f"<{row.id}.{at:%Y%m%d}.digest@example.org>"
        return row.id, row.message_id


class SubscriberState(NamedTuple):
    status: SubscriberStatus
    bounce_reason: str | None
    bounced_at: datetime | None
    soft_bounces: int
    next_due_at: datetime | None
    unsubscribed_at: datetime | None


def subscriber_state(services: Services, subscriber_id: int) -> SubscriberState:
    with services.sessions() as session:
        s = session.get(Subscriber, subscriber_id)
        assert s is not None
        return SubscriberState(
            s.status, s.bounce_reason, s.bounced_at, s.soft_bounces, s.next_due_at, s.unsubscribed_at
        )


def digest_state(services: Services, digest_id: int) -> tuple[DigestStatus, str | None]:
    with services.sessions() as session:
        row = session.get(Digest, digest_id)
        assert row is not None
        return row.status, row.error


@pytest.mark.parametrize("sample", [samples.postfix_hard, samples.exim_hard, samples.gmail_hard])
def test_a_hard_bounce_suppresses_the_address_at_once(box: Box, sample: samples.Sample) -> None:
    services = box.services
    reader = add_reader(services, "gone@example.net")
    digest_id, message_id = add_digest(services, reader)
    name = box.deliver(sample(return_path(services.settings, digest_id), "gone@example.net", message_id))

    run = box.run()

    (outcome,) = run.outcomes
    assert (outcome.kind, outcome.action, outcome.digest_id) == (
        BounceKind.HARD,
        Action.SUPPRESSED,
        digest_id,
    )
    assert outcome.recipient == "gone@example.net" and outcome.filed is Disposition.PROCESSED
    status, error = digest_state(services, digest_id)
    assert status is DigestStatus.BOUNCED and error is not None and "5." in error
    state, reason, bounced_at, _, next_due, _ = subscriber_state(services, reader)
    assert state is SubscriberStatus.BOUNCED and bounced_at is not None and next_due is None
    assert reason == error
    assert box.processed() == [f"{name}:2,S"] and box.waiting() == [] and box.unhandled() == []
    assert "1 hard" in run.summary() and "1 suppressed" in run.summary()


@pytest.mark.parametrize("sample", [samples.postfix_hard, samples.postfix_gave_up, samples.arf_complaint])
def test_the_same_report_processed_twice_changes_nothing_the_second_time(
    box: Box, sample: samples.Sample
) -> None:
    services = box.services
    reader = add_reader(services, "twice@example.net")
    digest_id, message_id = add_digest(services, reader)
    data = sample(return_path(services.settings, digest_id), "twice@example.net", message_id)
    box.deliver(data)
    assert box.run().outcomes[0].action in (Action.SUPPRESSED, Action.COUNTED)
    before = subscriber_state(services, reader), digest_state(services, digest_id)

    box.deliver(data)  # the server sent it twice, or a run died before filing it
    (again,) = box.run().outcomes

    assert again.action is Action.ALREADY_DONE and again.filed is Disposition.PROCESSED
    assert (subscriber_state(services, reader), digest_state(services, digest_id)) == before
    assert len(box.processed()) == 2


def test_soft_bounces_suppress_at_the_limit_though_later_hand_overs_reset_the_counter(box: Box) -> None:
    services = box.services
    assert services.settings.soft_bounce_limit == 3
    reader = add_reader(services, "slow@example.net")
    digests = [add_digest(services, reader, day) for day in range(5)]

    def soft_report(day: int) -> Action:
        digest_id, message_id = digests[day]
        box.deliver(
            samples.postfix_gave_up(return_path(services.settings, digest_id), "slow@example.net", message_id)
        )
        (outcome,) = box.run().outcomes
        # The reports come days late; meanwhile each later digest was handed over, which resets the count.
        with transaction(services.sessions) as session:
            subscriber = session.get(Subscriber, reader)
            assert subscriber is not None
            if subscriber.status is SubscriberStatus.ACTIVE:
                subscriber.soft_bounces = 0
        return outcome.action

    assert soft_report(0) is Action.COUNTED
    assert soft_report(1) is Action.COUNTED
    assert digest_state(services, digests[1][0])[0] is DigestStatus.FAILED
    assert subscriber_state(services, reader)[0] is SubscriberStatus.ACTIVE
    assert soft_report(2) is Action.SUPPRESSED
    state, reason, *_ = subscriber_state(services, reader)
    assert state is SubscriberStatus.BOUNCED
    assert reason is not None and reason.startswith("3 digests in a row") and "4.4.1" in reason


def test_a_digest_that_got_through_breaks_the_run_of_soft_bounces(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "flaky@example.net")
    digests = [add_digest(services, reader, day) for day in range(3)]
    for day in (0, 2):  # day 1 was delivered: no report about it
        digest_id, message_id = digests[day]
        box.deliver(
            samples.postfix_gave_up(
                return_path(services.settings, digest_id), "flaky@example.net", message_id
            )
        )
        box.run()
        with transaction(services.sessions) as session:
            subscriber = session.get(Subscriber, reader)
            assert subscriber is not None and subscriber.status is SubscriberStatus.ACTIVE
            assert subscriber.soft_bounces == 1
            subscriber.soft_bounces = 0


def test_a_soft_bounce_counts_on_top_of_deferrals_during_the_session(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "deferred@example.net")
    digest_id, message_id = add_digest(services, reader)
    with transaction(services.sessions) as session:
        subscriber = session.get(Subscriber, reader)
        assert subscriber is not None
        subscriber.soft_bounces = 2  # two digests given up on by `_retry_or_give_up`
    box.deliver(
        samples.postfix_gave_up(return_path(services.settings, digest_id), "deferred@example.net", message_id)
    )
    (outcome,) = box.run().outcomes
    assert outcome.action is Action.SUPPRESSED
    assert subscriber_state(services, reader)[0] is SubscriberStatus.BOUNCED


def test_a_complaint_unsubscribes_and_nothing_but_the_owner_undoes_it(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "annoyed@example.net")
    digest_id, message_id = add_digest(services, reader)
    box.deliver(
        samples.arf_complaint(return_path(services.settings, digest_id), "annoyed@example.net", message_id)
    )

    (outcome,) = box.run().outcomes

    assert (outcome.kind, outcome.action) == (BounceKind.COMPLAINT, Action.SUPPRESSED)
    state, reason, bounced_at, _, next_due, unsubscribed_at = subscriber_state(services, reader)
    assert state is SubscriberStatus.UNSUBSCRIBED and next_due is None
    assert reason is not None and reason.startswith("complaint:") and "abuse" in reason
    assert bounced_at is not None and unsubscribed_at is not None
    # The digest was delivered: that is what the recipient complained about.
    assert digest_state(services, digest_id) == (DigestStatus.SENT, None)

    with services.sessions() as session:
        public_id = session.scalars(select(Subscriber.public_id).where(Subscriber.id == reader)).one()
    with transaction(services.sessions) as session:
        # The provider's one-click unsubscribe that often follows, and an old confirmation link.
        subscriptions.unsubscribe(session, public_id)
        subscriptions.confirm(session, public_id)
    assert subscriber_state(services, reader)[:2] == (SubscriberStatus.UNSUBSCRIBED, reason)
    with transaction(services.sessions) as session:
        # Someone typing the address into the form changes nothing and mails nothing: it stays suppressed
        # until the operator lifts it (`digest unsuppress`).
        result = subscriptions.subscribe(session, "annoyed@example.net", "lora")
    assert result.suppressed and not result.needs_confirmation
    assert subscriber_state(services, reader)[:2] == (SubscriberStatus.UNSUBSCRIBED, reason)


def test_reports_that_call_for_nothing_are_left_for_a_human_and_change_nothing(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "fine@example.net")
    digest_id, message_id = add_digest(services, reader)
    verp = return_path(services.settings, digest_id)
    local, _, domain = verp.partition("@")
    tampered = f"{local[:-1]}{'b' if local[-1] == 'a' else 'a'}@{domain}"
    unknown = return_path(services.settings, digest_id + 1000)
    messages = {
        "delayed": samples.postfix_delayed(verp, "fine@example.net", message_id),
        "vacation": samples.vacation_reply(verp),
        "garbage": samples.GARBAGE,
        "no status part": samples.report_without_status_part(verp, "fine@example.net", message_id),
        "tampered": samples.postfix_hard(tampered, "fine@example.net", "<made-up@example.org>"),
        "unknown digest": samples.postfix_hard(unknown, "fine@example.net", "<other@example.org>"),
        "not ours": samples.exim_hard("someone@example.org", "fine@example.net", "<elsewhere@example.net>"),
    }
    names = {label: box.deliver(data) for label, data in messages.items()}
    before = subscriber_state(services, reader), digest_state(services, digest_id)

    run = box.run()

    by_key = {o.key.split("/", 1)[1]: o for o in run.outcomes}
    assert {by_key[names[label]].kind for label in messages} == {
        BounceKind.DELAYED,
        BounceKind.UNRELATED,
        BounceKind.MALFORMED,
        BounceKind.HARD,
    }
    assert all(o.action is Action.LEFT_ALONE and o.filed is Disposition.UNHANDLED for o in run.outcomes)
    assert by_key[names["tampered"]].detail.startswith("not ours")
    assert by_key[names["unknown digest"]].detail.startswith("not ours")
    assert (subscriber_state(services, reader), digest_state(services, digest_id)) == before
    assert box.unhandled() == sorted(names.values()) and box.waiting() == []
    assert box.run().outcomes == []  # not read again


def test_a_report_without_our_return_path_is_tied_by_the_returned_message_id(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "forwarded@example.net")
    digest_id, message_id = add_digest(services, reader)
    # Delivered to the plain address (a server that ignored the return path); the original came back.
    box.deliver(samples.exim_hard("digest@example.org", "forwarded@example.net", message_id))
    (outcome,) = box.run().outcomes
    assert (outcome.action, outcome.digest_id) == (Action.SUPPRESSED, digest_id)
    assert f"Message-ID {message_id}" in outcome.detail


def test_a_report_about_a_digest_still_being_sent_waits_for_the_next_run(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "fast@example.net")
    digest_id, message_id = add_digest(services, reader, status=DigestStatus.SENDING)
    name = box.deliver(
        samples.postfix_hard(return_path(services.settings, digest_id), "fast@example.net", message_id)
    )

    (outcome,) = box.run().outcomes
    assert outcome.action is Action.LATER and outcome.filed is Disposition.KEEP
    assert box.waiting() == [name]
    assert subscriber_state(services, reader)[0] is SubscriberStatus.ACTIVE

    with transaction(services.sessions) as session:  # the batch records the send
        row = session.get(Digest, digest_id)
        assert row is not None
        row.status, row.sent_at = DigestStatus.SENT, SENT
    assert box.run().outcomes[0].action is Action.SUPPRESSED
    assert box.processed() == [f"{name}:2,S"]


def test_an_old_report_does_not_suppress_a_subscriber_who_confirmed_since(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "back@example.net", confirmed_at=SENT + timedelta(days=3))
    digest_id, message_id = add_digest(services, reader)
    box.deliver(
        samples.postfix_hard(return_path(services.settings, digest_id), "back@example.net", message_id)
    )

    (outcome,) = box.run().outcomes

    assert outcome.action is Action.RECORDED and "confirmed again" in outcome.detail
    assert digest_state(services, digest_id)[0] is DigestStatus.BOUNCED
    assert subscriber_state(services, reader)[0] is SubscriberStatus.ACTIVE


def test_one_message_that_cannot_be_read_does_not_stop_the_run(box: Box) -> None:
    services = box.services
    reader = add_reader(services, "gone@example.net")
    digest_id, message_id = add_digest(services, reader)
    broken = "1795400000.M0P0Q0.relay.example.org"
    (box.maildir / "new" / broken).mkdir()  # reading it fails: a directory, not a file
    box.deliver(
        samples.postfix_hard(return_path(services.settings, digest_id), "gone@example.net", message_id)
    )

    run = box.run()

    first, second = run.outcomes
    assert first.key == f"new/{broken}" and first.action is Action.ERROR and first.kind is None
    assert "IsADirectoryError" in first.detail
    assert second.action is Action.SUPPRESSED
    assert box.waiting() == [broken]  # kept for the next run


def test_a_mailbox_that_cannot_be_read_raises_and_names_it(box: Box, tmp_path: Path) -> None:
    missing = replace(box.services.settings, bounce_mailbox=f"maildir:{tmp_path / 'nowhere'}")
    with pytest.raises(MailboxError, match="nowhere is not a Maildir"):
        process_bounces(replace(box.services, settings=missing))
    unset = replace(box.services.settings, bounce_mailbox=None)
    with pytest.raises(MailboxError, match="DIGEST_BOUNCE_MAILBOX is not set"):
        process_bounces(replace(box.services, settings=unset))


def test_an_empty_mailbox_says_so(box: Box) -> None:
    run = box.run()
    assert run.outcomes == [] and run.summary() == f"No messages waiting in maildir:{box.maildir}."
