"""From a digest on the wire to its bounce processed: the envelope sender, `digest bounces`, the Celery
task and its beat entry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from digest.bounces.verp import digest_id_from, return_path
from digest.cli import main
from digest.config import Settings, get_settings
from digest.db import transaction, upgrade
from digest.deliver.day import run_day
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus
from digest.services import Services
from digest.subscribers.confirmation import send_confirmation
from digest.subscribers.subscriptions import subscribe
from tests.support.daily import DAY, LORA, T0, InlineDispatcher, add_subscriber, ingest
from tests.support.env import SmtpSink
from tests.unit.bounces import samples
from tests.unit.bounces.test_mailbox import deliver, make_maildir
from workers.app import bind, celery_config


def dsn_returning(raw: bytes, verp: str, recipient: str) -> bytes:
    """A Postfix-shaped report returning the very message the sink received."""
    report = samples.postfix_hard(verp, recipient, "<placeholder@example.org>").decode()
    head, _, _ = report.partition("Content-Description: Undelivered Message\n")
    original = raw.replace(b"\r\n", b"\n").decode()
    boundary = "4QwY0b2CdE.1795413605/relay.example.org"
    return (
        f"{head}Content-Description: Undelivered Message\nContent-Type: message/rfc822\n\n"
        f"{original}\n--{boundary}--\n"
    ).encode()


def test_a_digest_leaves_with_its_own_return_path_and_its_bounce_comes_back_to_it(
    services: Services, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    maildir = make_maildir(tmp_path / "Maildir")
    settings = replace(services.settings, smtp_url=smtp_sink.url, bounce_mailbox=f"maildir:{maildir}")
    sending = Services(settings=settings, engine=services.engine, sessions=services.sessions)
    ingest(sending, tmp_path, LORA, T0 - timedelta(hours=2))
    add_subscriber(sending, "lora@example.net", "LoRA, parameter-efficient fine-tuning")

    assert run_day(sending, DAY, InlineDispatcher(sending), now=T0).sent == 1

    ((mail_from, recipients),) = smtp_sink.envelopes
    (message,) = smtp_sink.messages
    with sending.sessions() as session:
        row = session.scalars(select(Digest)).one()
    assert recipients == ["lora@example.net"]
    assert mail_from == return_path(settings, row.id) and digest_id_from(settings, mail_from) == row.id
    assert message["From"] == "Paper digest <digest@example.org>"  # what the reader sees is unchanged
    assert message["Message-ID"] == row.message_id

    deliver(
        maildir, "1795413605.M1P1Q1.relay", dsn_returning(smtp_sink.raw[0], mail_from, "lora@example.net")
    )
    # The command reads its settings from the environment: the same database and Maildir as above.
    result = CliRunner().invoke(main, ["bounces"], env=_env_of(settings))
    assert result.exit_code == 0, result.output
    assert "hard, suppressed (processed)" in result.output
    assert "1 message(s) in maildir:" in result.output
    with sending.sessions() as session:
        row = session.scalars(select(Digest)).one()
        subscriber = session.scalars(select(Subscriber)).one()
    assert row.status is DigestStatus.BOUNCED and subscriber.status is SubscriberStatus.BOUNCED


def _env_of(settings: Settings) -> dict[str, str]:
    return {
        "DIGEST_DATA_DIR": str(settings.data_dir),
        "DIGEST_DATABASE_URL": settings.database_url,
        "DIGEST_BASE_URL": settings.base_url,
        "DIGEST_FROM": settings.mail_from,
        "DIGEST_SECRET_KEY": settings.secret_key,
        "DIGEST_BOUNCE_MAILBOX": settings.bounce_mailbox or "",
    }


def test_a_confirmation_email_keeps_the_plain_envelope_sender(
    services: Services, smtp_sink: SmtpSink
) -> None:
    sending = Services(
        settings=replace(services.settings, smtp_url=smtp_sink.url),
        engine=services.engine,
        sessions=services.sessions,
    )
    with transaction(sending.sessions) as session:
        subscriber_id = subscribe(session, "new@example.net", "lora").subscriber_id
    send_confirmation(sending, subscriber_id)
    assert smtp_sink.envelopes == [("digest@example.org", ["new@example.net"])]


def test_the_command_fails_only_when_the_mailbox_cannot_be_read(tmp_path: Path) -> None:
    env = {
        "DIGEST_DATA_DIR": str(tmp_path / "data"),
        "DIGEST_SECRET_KEY": "cli-test-secret-key-0123456789",
        "DIGEST_BASE_URL": "https://digest.example.org",
    }
    runner = CliRunner()
    assert runner.invoke(main, ["init-db"], env=env).exit_code == 0

    unset = runner.invoke(main, ["bounces"], env=env)
    assert unset.exit_code == 1 and "DIGEST_BOUNCE_MAILBOX is not set" in unset.output

    missing = runner.invoke(
        main, ["bounces"], env={**env, "DIGEST_BOUNCE_MAILBOX": f"maildir:{tmp_path}/none"}
    )
    assert missing.exit_code == 1
    assert f"cannot read the bounce mailbox: maildir:{tmp_path}/none is not a Maildir" in missing.output

    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "1.M1.relay", samples.GARBAGE)
    deliver(maildir, "2.M2.relay", samples.vacation_reply("bounces+1abc@example.org"))
    read = runner.invoke(main, ["bounces"], env={**env, "DIGEST_BOUNCE_MAILBOX": f"maildir:{maildir}"})
    assert read.exit_code == 0, read.output
    lines = read.output.splitlines()
    assert lines[0].startswith("new/1.M1.relay: malformed, left alone (unhandled): no header fields")
    assert lines[1].startswith("new/2.M2.relay: unrelated, left alone (unhandled): an automatic reply")
    assert lines[2] == f"2 message(s) in maildir:{maildir}: 1 malformed, 1 unrelated; 2 left alone."


def test_the_beat_reads_the_mailbox_every_five_minutes_only_when_there_is_one(tmp_path: Path) -> None:
    settings = get_settings(
        {"DIGEST_DATA_DIR": str(tmp_path), "DIGEST_SECRET_KEY": "beat-test-secret-key-0123456789"}
    )
    assert "process-bounces" not in celery_config(settings)["beat_schedule"]
    with_box = replace(settings, bounce_mailbox=f"maildir:{tmp_path}")
    entry = celery_config(with_box)["beat_schedule"]["process-bounces"]
    assert entry == {"task": "digest.process_bounces", "schedule": 300.0}


def test_the_task_returns_a_small_summary(services: Services, tmp_path: Path) -> None:
    from workers import tasks

    maildir = make_maildir(tmp_path / "Maildir")
    settings = replace(services.settings, bounce_mailbox=f"maildir:{maildir}")
    bound = Services(settings=settings, engine=services.engine, sessions=services.sessions)
    upgrade(bound.engine)
    deliver(maildir, "1.M1.relay", samples.vacation_reply("bounces+1abc@example.org"))
    bind(bound)
    assert tasks.process_bounces() == {"messages": 1, "left alone": 1}


def test_compose_puts_the_return_path_on_the_envelope_only(tmp_path: Path) -> None:
    from digest.mail.compose import compose
    from digest.mail.render import RenderedEmail

    rendered = RenderedEmail(subject="Your paper digest", text="1. A paper\n", html="<p>1. A paper</p>")
    # The embedded default sends from digest@localhost, a domain without a dot, and must keep working.
    settings = get_settings(
        {"DIGEST_DATA_DIR": str(tmp_path), "DIGEST_SECRET_KEY": "compose-test-secret-0123456"}
    )
    verp = return_path(settings, 42)
    assert verp.endswith("@localhost")
    mail = compose(
        settings, to="reader@example.net", rendered=rendered, unsubscribe_url=None, return_path=verp
    )
    assert mail.sender == verp
    assert b"From: Paper digest <digest@localhost>\r\n" in mail.data and verp.encode() not in mail.data
    plain = compose(settings, to="reader@example.net", rendered=rendered, unsubscribe_url=None)
    assert plain.sender == "digest@localhost"
    for bad in ("bounces+x@example.org\r\nRCPT TO:<a@b>", "no-at-sign", "a b@example.org", "<x@example.org>"):
        with pytest.raises(ValueError, match="not an envelope sender"):
            compose(
                settings, to="reader@example.net", rendered=rendered, unsubscribe_url=None, return_path=bad
            )
