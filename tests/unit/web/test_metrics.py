"""/metrics: Prometheus' text format from the database, served only to a scraper that bears the token."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from digest.db import upgrade
from digest.deliver.day import run_day
from digest.models import utcnow
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
