"""A typed topic with no good paper today is named in the digest, not silently dropped."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select

from digest.deliver.day import run_day
from digest.models import Digest
from digest.services import Services
from tests.support.daily import DAY, LORA, OTHER, T0, InlineDispatcher, add_subscriber, ingest


def test_a_topic_without_papers_is_named_in_the_email(any_services: Services, tmp_path: Path) -> None:
    services = any_services
    ingest(services, tmp_path, LORA + OTHER, T0 - timedelta(hours=2))
    add_subscriber(services, "two@example.org", "LoRA, zymurgy")
    add_subscriber(services, "one@example.org", "LoRA")
    assert run_day(services, DAY, InlineDispatcher(services), now=T0).sent == 2
    with services.sessions() as session:
        quiet = dict(session.execute(select(Digest.subscriber_id, Digest.quiet_topics)).all())
    assert sorted(quiet.values(), key=str) == [None, ["zymurgy"]]
    mails = {}
    for eml in services.settings.outbox_dir.glob("*.eml"):
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        mails[str(message["To"])] = message
    text = mails["two@example.org"].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mails["two@example.org"].get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert 'Nothing new on "zymurgy" today.' in text
    assert "Nothing new on &ldquo;zymurgy&rdquo; today." in html or "Nothing new on “zymurgy” today." in html
    other = mails["one@example.org"].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Nothing new" not in other
