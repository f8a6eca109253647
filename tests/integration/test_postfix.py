"""Our SMTP sending against a real Postfix (tools/postfix.py): what it stores, how it answers, the DSNs it
mails back after it has accepted a message."""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from digest.bounces.processor import Action, process_bounces
from digest.bounces.verp import return_path
from digest.config import Settings
from digest.db import transaction
from digest.deliver.day import tick
from digest.mail.compose import OutgoingMail, compose
from digest.mail.render import RenderedEmail
from digest.mail.transport import DeliveryError, SmtpMailer
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from tests.support.daily import LORA, InlineDispatcher, ingest
from tools.postfix import POSTFIX, QUEUE_LIFETIME_SECONDS, PostfixError, PostfixInstance

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not POSTFIX.exists(), reason=f"{POSTFIX} is missing; `make test` installs Debian's postfix"
    ),
]

VERP_SENDER = "bounces+xyz@bounces.test"


@pytest.fixture
def postfix() -> Iterator[PostfixInstance]:
    instance = PostfixInstance.start()
    try:
        yield instance
    finally:
        instance.stop()


def composed(settings: Settings, to: str, n: int = 0) -> OutgoingMail:
    rendered = RenderedEmail(
        subject=f"Your papers for today, n°{n}",
        # A line starting with "." must be dot-stuffed on the wire and arrive as it was written.
        text=f"1. Sparse low-rank adapters — {n}\n.a line that starts with a dot\nÜber LoRA\n",
        html=f"<p>1. <a href='https://digest.example.org/p/{n}'>Sparse low-rank adapters</a> — Über</p>",
    )
    return compose(settings, to=to, rendered=rendered, unsubscribe_url=f"https://digest.example.org/u/{n}")


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def stored_as_sent(stored: bytes, mail: OutgoingMail) -> bool:
    """Postfix keeps a Maildir in LF line ends and puts its trace headers on top; the rest is ours."""
    return stored.endswith(mail.data.replace(b"\r\n", b"\n"))


def delivery_status(dsn: EmailMessage) -> tuple[Message, Message]:
    """The per-message and the (one) per-recipient field groups of a DSN's message/delivery-status part."""
    [report] = [part for part in dsn.walk() if part.get_content_type() == "message/delivery-status"]
    groups = report.get_payload()
    assert isinstance(groups, list) and len(groups) == 2, groups
    per_message, per_recipient = groups
    assert isinstance(per_message, Message) and isinstance(per_recipient, Message)
    return per_message, per_recipient


def working_in(directory: Path) -> set[int]:
    """The processes whose working directory this is: a Postfix daemon lives in its queue directory."""
    found = set()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cwd").readlink() == directory:
                found.add(int(proc.name))
    return found


def test_a_composed_message_arrives_byte_for_byte(postfix: PostfixInstance, settings: Settings) -> None:
    mail = composed(settings, "someone@deliver.test")
    with SmtpMailer(postfix.url).open() as connection:
        connection.send(mail)

    [stored] = postfix.wait_for_messages("deliver", 1)
    assert stored_as_sent(stored, mail)
    message = parse(stored)
    assert message["Message-ID"] == mail.message_id
    assert message["Delivered-To"] == "someone@deliver.test"
    assert message["Return-Path"] == f"<{mail.sender}>"
    sent = parse(mail.data.replace(b"\r\n", b"\n"))  # as stored, so the parts compare as text
    for subtype in ("plain", "html"):
        ours, theirs = (m.get_body(preferencelist=(subtype,)) for m in (sent, message))
        assert ours is not None and theirs is not None
        assert theirs.get_content() == ours.get_content()
    assert postfix.accepted_count() == 1


def test_postfix_offers_what_the_sender_relies_on(postfix: PostfixInstance) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=10) as client:
        code, _ = client.ehlo()
        assert code == 250
        assert client.has_extn("pipelining") and client.has_extn("8bitmime")
        # Outside the test domains nothing is relayed: refused at once, never queued for the Internet.
        client.mail("digest@example.org")
        code, reply = client.rcpt("someone@gmail.com")
        assert code == 550 and b"relays nowhere" in reply


def test_a_batch_over_one_connection_survives_a_refused_recipient(
    postfix: PostfixInstance, settings: Settings
) -> None:
    good = [composed(settings, f"reader{n}@deliver.test", n) for n in range(6)]
    refused = composed(settings, "nobody@reject.test", 99)
    handed_over: list[str] = []
    errors: list[DeliveryError] = []
    with SmtpMailer(postfix.url).open() as connection:
        for mail in [*good[:3], refused, *good[3:]]:
            try:
                connection.send(mail, partial(handed_over.append, mail.recipient))
            except DeliveryError as exc:
                errors.append(exc)

    [error] = errors
    # Postfix's own words for a user it does not have, and what our transport makes of them.
    assert error.permanent and error.bounce and not error.connection_lost
    assert "550" in str(error) and "User unknown" in str(error)
    assert handed_over == [mail.recipient for mail in good]
    stored = postfix.wait_for_messages("deliver", len(good))
    assert {parse(raw)["Message-ID"] for raw in stored} == {mail.message_id for mail in good}
    assert all(any(stored_as_sent(raw, mail) for raw in stored) for mail in good)
    assert postfix.accepted_count() == len(good)
    # One SMTP session carried the whole batch (the harness's readiness probe sends no MAIL); pipelined
    # or not, only the refused recipient is missing from it.
    [session] = [
        line for line in postfix.log_text().splitlines() if "disconnect from" in line and " mail=" in line
    ]
    assert " mail=7 rcpt=6/7 " in session, session


def test_an_unknown_user_comes_back_as_a_real_dsn_to_the_verp_address(
    postfix: PostfixInstance, settings: Settings
) -> None:
    mail = replace(composed(settings, "nobody@unknown.test"), sender=VERP_SENDER)
    with SmtpMailer(postfix.url).open() as connection:
        connection.send(mail)  # accepted: Postfix finds out only when it tries to deliver

    [raw] = postfix.wait_for_messages("bounces", 1, timeout=30)
    dsn = parse(raw)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Delivered-To"] == VERP_SENDER
    assert dsn["Return-Path"] == "<>"  # a DSN has the null sender, so it can never bounce in turn
    per_message, per_recipient = delivery_status(dsn)
    assert "postfix.test" in str(per_message["Reporting-MTA"])
    assert per_recipient["Action"] == "failed"
    assert str(per_recipient["Status"]).startswith("5.1.")
    assert "nobody@unknown.test" in str(per_recipient["Final-Recipient"])
    # The returned copy carries our Message-ID, the other way to tell which digest bounced.
    [returned] = [part for part in dsn.walk() if part.get_content_type() == "message/rfc822"]
    assert mail.message_id.encode() in returned.as_bytes()


def test_a_deferral_that_never_clears_ends_in_a_dsn_with_a_temporary_status(
    postfix: PostfixInstance, settings: Settings
) -> None:
    mail = replace(composed(settings, "full@deferred.test"), sender="bounces+soft@bounces.test")
    with SmtpMailer(postfix.url).open() as connection:
        connection.send(mail)

    [raw] = postfix.wait_for_messages("bounces", 1, timeout=QUEUE_LIFETIME_SECONDS + 30)
    dsn = parse(raw)
    assert dsn["Delivered-To"] == "bounces+soft@bounces.test"
    _, per_recipient = delivery_status(dsn)
    assert per_recipient["Action"] == "failed"
    assert str(per_recipient["Status"]).startswith("4.")
    assert "full@deferred.test" in str(per_recipient["Final-Recipient"])
    assert postfix.log_text().count("status=deferred") >= 2  # retried before Postfix gave up


def test_discarded_mail_is_counted_and_instances_are_independent(settings: Settings) -> None:
    with PostfixInstance.start() as first, PostfixInstance.start() as second:
        assert first.port != second.port and first.root != second.root
        # Postfix listens with SO_REUSEPORT; without the harness's reservation this would share the port.
        with pytest.raises(PostfixError, match="Address already in use"):
            PostfixInstance.start(port=first.port)
        with SmtpMailer(first.url).open() as connection:
            for n in range(40):
                connection.send(composed(settings, f"reader{n}@example.org", n))
        with SmtpMailer(second.url).open() as connection:
            connection.send(composed(settings, "someone@discard.test"))
        assert first.wait_for_accepted(40, timeout=30) == 40
        assert second.wait_for_accepted(1, timeout=30) == 1
        for instance in (first, second):
            assert instance.messages("deliver") == [] and instance.messages("bounces") == []
        processes = working_in(first.queue_dir)
        assert first.master_pid in processes and len(processes) > 1  # the master and its daemons
    # Stopped, master and all, and the directories they made are gone.
    assert not any(Path(f"/proc/{pid}").exists() for pid in processes)
    assert not first.root.exists() and not second.root.exists()


def test_a_directory_the_delivery_agent_cannot_reach_is_refused(tmp_path: Path) -> None:
    # pytest's base temporary directory is private to its user; Postfix delivers as nobody.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(PostfixError, match="not searchable by other users"):
        PostfixInstance.start(private / "postfix")


def test_a_real_bounce_suppresses_the_subscriber_it_is_about(
    any_services: Services, postfix: PostfixInstance, tmp_path: Path
) -> None:
    """The whole way: the real send path hands both digests to Postfix, which accepts both; one comes
    back days later (here: at once) as Postfix's DSN to that digest's VERP address, and the bounce
    processor, reading the Maildir Postfix delivered it to, suppresses that address and no other."""
    settings = replace(
        any_services.settings,
        smtp_url=postfix.url,
        bounce_domain="bounces.test",
        bounce_mailbox=f"maildir:{postfix.maildir('bounces')}",
    )
    services = Services(settings=settings, engine=any_services.engine, sessions=any_services.sessions)
    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=1))
    with transaction(services.sessions) as session:
        session.execute(
            insert(Subscriber),
            [
                {
                    "email": email,
                    "topics": ["LoRA"],
                    "status": SubscriberStatus.ACTIVE,
                    "next_due_at": utcnow() - timedelta(minutes=1),
                }
                for email in ("nobody@unknown.test", "reader@deliver.test")
            ],
        )

    tick(services, InlineDispatcher(services))

    with services.sessions() as session:
        digests = dict(
            session.execute(select(Subscriber.email, Digest).join(Subscriber, Digest.subscriber)).all()
        )
    # Postfix took both: during the SMTP session nothing distinguishes the mailbox that does not exist.
    assert {email: row.status for email, row in digests.items()} == {
        "nobody@unknown.test": DigestStatus.SENT,
        "reader@deliver.test": DigestStatus.SENT,
    }
    [delivered] = postfix.wait_for_messages("deliver", 1)
    assert parse(delivered)["Return-Path"] == f"<{return_path(settings, digests['reader@deliver.test'].id)}>"
    [dsn] = postfix.wait_for_messages("bounces", 1, timeout=30)
    assert parse(dsn)["Delivered-To"] == return_path(settings, digests["nobody@unknown.test"].id)

    run = process_bounces(services)

    [outcome] = run.outcomes
    assert outcome.action is Action.SUPPRESSED, outcome.line()
    assert outcome.digest_id == digests["nobody@unknown.test"].id
    assert "return path bounces+" in outcome.detail  # tied by its VERP address, not by a guess
    with services.sessions() as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
        statuses = dict(
            session.execute(select(Subscriber.email, Digest.status).join(Subscriber, Digest.subscriber)).all()
        )
    assert people["nobody@unknown.test"].status is SubscriberStatus.BOUNCED
    assert "5.1.1" in (people["nobody@unknown.test"].bounce_reason or "")
    assert statuses["nobody@unknown.test"] is DigestStatus.BOUNCED
    assert people["reader@deliver.test"].status is SubscriberStatus.ACTIVE
    assert statuses["reader@deliver.test"] is DigestStatus.SENT
    # Filed away, so the next run has nothing to read again.
    assert postfix.messages("bounces") == []
    assert process_bounces(services).outcomes == []
