"""/metrics: Prometheus' text format from the database, served only to a scraper that bears the token."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from digest.db import transaction, upgrade
from digest.deliver.day import run_day
from digest.deliver.sending import suppress_address
from digest.metrics import reply_class_of
from digest.models import Digest, DigestStatus, Subscriber, utcnow
from digest.services import Services
from digest.web import create_app
from tests.support.daily import DAY, LORA, T0, InlineDispatcher, add_subscriber, ingest
from tests.support.env import make_settings
from tests.support.web import RecordingDispatcher

TOKEN = "scrape-token-0123456789"


def _value(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} not in:\n{text}"
    return float(match.group(1))


def test_metrics_show_todays_digests_subscribers_and_timing(tmp_path: Path) -> None:
    services = Services.build(make_settings(tmp_path, DIGEST_METRICS_TOKEN=TOKEN))
    try:
        upgrade(services.engine)
        ingest(services, tmp_path, LORA, T0 - timedelta(hours=2))
        add_subscriber(services, "lora@example.org", "LoRA")
        add_subscriber(services, "other@example.org", "LoRA adapters")
        assert run_day(services, DAY, InlineDispatcher(services), now=T0).sent == 2
        with TestClient(create_app(services, RecordingDispatcher())) as client:
            refused = client.get("/metrics")
            wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
            scraped = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        services.close()
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    # The run above was dated DAY; "today" for the scrape is the real date, so its digests count only if
    # DAY is today. The subscribers and the lag are independent of the date.
    assert _value(text, "digest_subscribers", '{state="active"}') == 2.0
    assert _value(text, "digest_sends_stuck") == 0.0
    assert _value(text, "digest_sends_retrying") == 0.0
    assert _value(text, "digest_tick_lag_seconds") >= 0.0
    for state in ("pending", "sending", "sent", "failed", "bounced", "empty"):
        assert f'digest_digests_today{{state="{state}"}}' in text


def test_todays_send_timing_is_measured_from_the_first_digest_opened(tmp_path: Path) -> None:
    services = Services.build(make_settings(tmp_path, DIGEST_METRICS_TOKEN=TOKEN))
    try:
        upgrade(services.engine)
        now = utcnow()
        ingest(services, tmp_path, LORA, now - timedelta(hours=2))
        add_subscriber(services, "lora@example.org", "LoRA")
        assert run_day(services, now.date(), InlineDispatcher(services), now=now).sent == 1
        with TestClient(create_app(services, RecordingDispatcher())) as client:
            text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    finally:
        services.close()
    assert _value(text, "digest_digests_today", '{state="sent"}') == 1.0
    first = _value(text, "digest_first_email_seconds")
    last = _value(text, "digest_last_email_seconds")
    assert 0.0 <= first <= last < 120.0


def test_without_a_token_there_is_no_metrics_endpoint(services: Services) -> None:
    with TestClient(create_app(services, RecordingDispatcher())) as client:
        assert client.get("/metrics").status_code == 404


def test_reply_classes_are_read_from_the_quoted_reply_never_from_a_port() -> None:
    assert (
        reply_class_of(
            "temporary delivery failure: 127.0.0.1:2525 refused the recipient a@b.org: 451 4.3.0 busy"
        )
        == "4xx"
    )
    assert (
        reply_class_of("permanent delivery failure: mx:25 refused the message to a@b.org: 554 5.7.1 spam")
        == "5xx"
    )
    assert reply_class_of(
        "temporary delivery failure: could not connect to mail server mx:465: [Errno 111]"
    ) == ("connection")
    assert reply_class_of("could not build the message: not an email address") == "other"


def test_metrics_count_todays_failures_resends_and_suppressions(tmp_path: Path) -> None:
    services = Services.build(make_settings(tmp_path, DIGEST_METRICS_TOKEN=TOKEN))
    try:
        upgrade(services.engine)
        now = utcnow()
        ingest(services, tmp_path, LORA, now - timedelta(hours=2))
        for name in ("ok", "deferred", "gone", "dropped"):
            add_subscriber(services, f"{name}@example.org", "LoRA")
        assert run_day(services, now.date(), InlineDispatcher(services), now=now).sent == 4
        outcomes = {
            "ok@example.org": (DigestStatus.SENT, None, 1),
            "deferred@example.org": (
                DigestStatus.PENDING,
                "temporary delivery failure: mx:25 refused the recipient x: 451 4.2.0 later",
                0,
            ),
            "gone@example.org": (
                DigestStatus.BOUNCED,
                "mx:25 refused the recipient x: 550 5.1.1 no such user",
                0,
            ),
            "dropped@example.org": (
                DigestStatus.PENDING,
                "temporary delivery failure: lost the connection to mx:25",
                2,
            ),
        }
        with transaction(services.sessions) as session:
            for email, (status, error, resends) in outcomes.items():
                subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
                session.execute(
                    update(Digest)
                    .where(Digest.subscriber_id == subscriber.id)
                    .values(status=status, error=error, ambiguous_sends=resends)
                )
                if status is DigestStatus.BOUNCED:
                    suppress_address(subscriber, error or "")
        with TestClient(create_app(services, RecordingDispatcher())) as client:
            text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    finally:
        services.close()
    assert _value(text, "digest_send_failures_today", '{outcome="retrying",reply_class="4xx"}') == 1.0
    assert _value(text, "digest_send_failures_today", '{outcome="retrying",reply_class="connection"}') == 1.0
    assert _value(text, "digest_send_failures_today", '{outcome="bounced",reply_class="5xx"}') == 1.0
    assert _value(text, "digest_ambiguous_resends_today") == 3.0
    assert _value(text, "digest_suppressed_last_day", '{state="bounced"}') == 1.0
