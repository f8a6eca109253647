"""The public surface tried as an attacker would: the real app under uvicorn on loopback, configured the way
`digest serve` runs it, PostgreSQL for the data and Redis for the limits.

The test client plays both the attacker and, where a proxy is in the story, the proxy on loopback that
appends the address it saw to X-Forwarded-For. Each test is one attack and asserts it now fails.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import select

from digest.db import transaction, upgrade
from digest.limits import FailedLogins, MemoryCounter, SubscribeLimits
from digest.models import Subscriber, SubscriberStatus
from digest.services import Services
from digest.subscribers.confirmation import send_confirmation
from digest.web import create_app
from digest.web.app import server_options
from tests.support.env import REDIS_URL, free_port, make_settings
from tests.support.web import RecordingDispatcher, csrf_tokens

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "abuse-test-admin-password"


@dataclass
class Live:
    url: str
    services: Services
    dispatcher: RecordingDispatcher

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, follow_redirects=False)

    def subscribe(self, email: str, topics: list[str], *, forwarded_for: str | None = None) -> httpx.Response:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        with self.client(**headers) as client:
            return client.post("/api/subscribe", json={"email": email, "topics": topics})

    def emailed(self) -> list[str]:
        """The addresses a confirmation (or already-subscribed) email was queued for, in order."""
        with self.services.sessions() as session:
            emails = dict(session.execute(select(Subscriber.id, Subscriber.email)).all())
        return [emails[i] for i in self.dispatcher.confirmations]


@pytest.fixture
def live(tmp_path: Path, postgres_url: str) -> Iterator[Live]:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed for this test (`make test` starts it): {exc}")
    port = free_port()
    settings = make_settings(
        tmp_path,
        DIGEST_DATABASE_URL=postgres_url,
        DIGEST_BROKER_URL=REDIS_URL,
        DIGEST_QUEUE=f"digest-abuse-{uuid.uuid4().hex[:8]}",  # the limits' Redis keys are this run's own
        DIGEST_BASE_URL=f"http://127.0.0.1:{port}",
        DIGEST_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    services = Services.build(settings)
    upgrade(services.engine)
    dispatcher = RecordingDispatcher()
    app = create_app(services, dispatcher)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **server_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app server did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", services, dispatcher)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        services.close()


def test_a_forwarded_for_header_the_client_writes_does_not_make_it_a_new_client(live: Live) -> None:
    # The proxy on loopback appends the address it saw; whatever the client wrote before it is ignored.
    answers = [
        live.subscribe(f"reader{n}@example.org", ["optics"], forwarded_for=f"10.9.{n}.1, 203.0.113.7")
        for n in range(20)
    ]
    assert {a.status_code for a in answers} == {202}
    assert len(live.emailed()) == 10, "the per-client limit counted 203.0.113.7, not the forged entries"


def test_one_mailbox_gets_at_most_three_emails_a_day_however_spelled_and_from_any_number_of_clients(
    live: Live,
) -> None:
    spellings = [
        "victim@gmail.com",
        "Victim@Gmail.com",
        "v.i.c.t.i.m@gmail.com",
        "victim+1@gmail.com",
        "victim+news@googlemail.com",
        "vic.tim+x@gmail.com",
    ]
    for n in range(30):
        answer = live.subscribe(
            spellings[n % len(spellings)], ["optics"], forwarded_for=f"198.51.100.{n + 1}"
        )
        assert answer.status_code == 202
    assert 1 <= len(live.emailed()) <= 3


def test_the_daily_email_budget_holds_even_where_the_request_limits_would_not() -> None:
    limits = SubscribeLimits(MemoryCounter(), per_ip=1000, per_address=1000)
    spellings = ["victim@gmail.com", "v.ictim@gmail.com", "victim+a@googlemail.com", "VICTIM+b@gmail.com"]
    sent = [limits.allow_email(spellings[n % len(spellings)]) for n in range(40)]
    assert sent.count(True) == 3 and sent[:3] == [True, True, True]
    assert limits.allow_email("someone.else@gmail.com")


def test_limits_slide_so_a_burst_across_a_window_boundary_gets_no_second_allowance() -> None:
    now = [3599.0]
    counter = MemoryCounter(clock=lambda: now[0])
    limits = SubscribeLimits(counter, per_ip=10, per_address=1000)
    assert all(limits.allow("192.0.2.1", f"a{n}@example.org") for n in range(10))
    now[0] = 3600.5  # a fixed hourly window would have started afresh here
    assert not limits.allow("192.0.2.1", "late@example.org")
    now[0] = 3599.0 + 3600.5
    assert limits.allow("192.0.2.1", "later@example.org")


def test_retry_after_says_when_the_oldest_failure_ages_out() -> None:
    now = [1000.0]
    logins = FailedLogins(MemoryCounter(clock=lambda: now[0]), allowed=3, window_seconds=60)
    for step in (0, 10, 20):
        now[0] = 1000.0 + step
        logins.failed("192.0.2.5")
    now[0] = 1030.0
    assert logins.blocked("192.0.2.5") and logins.retry_after("192.0.2.5") == 30
    now[0] = 1060.5  # the first failure has aged out: two in the window, under the limit
    assert not logins.blocked("192.0.2.5")
    assert not logins.blocked("192.0.2.6")


def test_clients_rotating_through_one_ipv6_48_share_one_budget(live: Live) -> None:
    for n in range(20):
        live.subscribe(f"six{n}@example.org", ["optics"], forwarded_for=f"2001:db8:77:{n:x}::1")
    assert len(live.emailed()) == 10


def test_requests_refused_for_their_client_do_not_use_up_the_address(live: Live) -> None:
    flooder = "192.0.2.66"
    for n in range(10):
        live.subscribe(f"filler{n}@example.org", ["optics"], forwarded_for=flooder)
    for _ in range(5):  # over the client's limit: refused, and not counted against the address
        live.subscribe("owner@example.org", ["optics"], forwarded_for=flooder)
    assert "owner@example.org" not in live.emailed()
    live.subscribe("owner@example.org", ["optics"], forwarded_for="192.0.2.7")
    assert live.emailed()[-1] == "owner@example.org"


def test_the_confirmation_email_carries_no_text_or_link_a_stranger_typed(live: Live) -> None:
    lure = ["URGENT: re-verify your account now at https://evil.example/login", "call +1 555 0100"]
    assert live.subscribe("target@example.org", lure).status_code == 202
    (subscriber_id,) = live.dispatcher.confirmations
    send_confirmation(live.services, subscriber_id)
    (eml,) = live.services.settings.outbox_dir.glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    for part in ("plain", "html"):
        body = message.get_body((part,))
        assert body is not None
        content = body.get_content()
        assert "evil.example" not in content and "URGENT" not in content and "555" not in content
        assert "2 topics" in content
        links = re.findall(r"https?://[^\s\"'<>]+", content)
        assert links and all(link.startswith(live.url) for link in links), links


def test_suppressed_addresses_are_never_mailed_from_the_form(live: Live) -> None:
    with transaction(live.services.sessions) as session:
        session.add_all(
            [
                Subscriber(email="bounced@example.org", topics=["optics"], status=SubscriberStatus.BOUNCED),
                Subscriber(
                    email="complained@example.org",
                    topics=["optics"],
                    status=SubscriberStatus.UNSUBSCRIBED,
                    bounce_reason="complaint: abuse report",
                ),
            ]
        )
    answers = {
        email: live.subscribe(email, ["optics"], forwarded_for=f"192.0.2.{n}")
        for n, email in enumerate(["bounced@example.org", "complained@example.org", "fresh@example.org"], 1)
    }
    assert len({(a.status_code, a.text) for a in answers.values()}) == 1, "the same answer for all three"
    assert live.emailed() == ["fresh@example.org"]


def test_an_old_confirmation_link_cannot_confirm_a_strangers_newer_request(live: Live) -> None:
    live.subscribe("ann@example.org", ["optics"], forwarded_for="192.0.2.1")
    with live.services.sessions() as session:
        ann = session.scalars(select(Subscriber).where(Subscriber.email == "ann@example.org")).one()
    old_link = f"/confirm/{live.services.links.confirm_token(ann.public_id, ann.confirm_nonce)}"
    # A stranger asks again for the same address with their own topics before Ann clicks.
    live.subscribe("ann@example.org", ["cryptocurrency giveaways"], forwarded_for="203.0.113.9")
    with live.services.sessions() as session:
        newer = session.scalars(select(Subscriber).where(Subscriber.email == "ann@example.org")).one()
    assert newer.confirm_nonce != ann.confirm_nonce
    with live.client() as client:
        page = client.get(old_link)
        assert page.status_code == 409 and "replaced by a newer subscribe request" in page.text
        home = client.get("/")
        token = next(iter(csrf_tokens(home.text).values()))
        assert client.post(old_link, data={"csrf_token": token}).status_code in (403, 409)
        new_link = f"/confirm/{live.services.links.confirm_token(newer.public_id, newer.confirm_nonce)}"
        confirm_page = client.get(new_link)
        assert confirm_page.status_code == 200
        confirmed = client.post(new_link, data={"csrf_token": csrf_tokens(confirm_page.text)[new_link]})
        assert confirmed.status_code == 200
    with live.services.sessions() as session:
        assert session.scalars(
            select(Subscriber.status).where(Subscriber.email == "ann@example.org")
        ).one() is (SubscriberStatus.ACTIVE)


def test_the_admin_cannot_be_locked_out_by_another_client_naming_its_address(live: Live) -> None:
    admin_ip, attacker_ip = "192.0.2.10", "203.0.113.66"
    with live.client() as client:
        for n in range(40):
            # The attacker puts the admin's address first; the proxy appends the attacker's real one.
            client.get(
                "/admin",
                auth=("admin", f"guess-{n}"),
                headers={"X-Forwarded-For": f"{admin_ip}, {attacker_ip}"},
            )
        locked = client.get(
            "/admin",
            auth=("admin", ADMIN_PASSWORD),
            headers={"X-Forwarded-For": f"{admin_ip}, {attacker_ip}"},
        )
        assert locked.status_code == 429, "the guessing client itself is locked out"
        assert 0 < int(locked.headers["Retry-After"]) <= 900
        admin = client.get("/admin", auth=("admin", ADMIN_PASSWORD), headers={"X-Forwarded-For": admin_ip})
        assert admin.status_code == 200


def test_control_characters_get_a_422_naming_the_field_and_never_a_500(live: Live) -> None:
    with live.client() as client:
        nul_topic = client.post("/api/subscribe", json={"email": "ann@example.org", "topics": ["optics\x00"]})
        assert (
            nul_topic.status_code == 422
            and "topics" in nul_topic.text
            and "control character" in nul_topic.text
        )
        nul_email = client.post("/api/subscribe", json={"email": "ann\x00@example.org", "topics": ["optics"]})
        assert nul_email.status_code == 422 and "email" in nul_email.text
        wide = client.post("/api/subscribe", json={"email": "\uff56ictim@example.org", "topics": ["optics"]})
        assert wide.status_code == 422 and "plain ASCII" in wide.text
        search = client.get("/admin/subscribers", params={"q": "a\x00b"}, auth=("admin", ADMIN_PASSWORD))
        assert search.status_code == 200
    with live.services.sessions() as session:
        assert session.scalars(select(Subscriber)).all() == []


def test_hsts_over_https_and_no_page_built_from_a_strangers_host_header(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    services = Services.build(make_settings(tmp_path, DIGEST_BASE_URL="https://digest.example.org"))
    upgrade(services.engine)
    limits = SubscribeLimits(MemoryCounter())
    try:
        with TestClient(create_app(services, RecordingDispatcher(), subscribe_limits=limits)) as client:
            home = client.get("/", headers={"Host": "digest.example.org"})
            assert home.status_code == 200
            assert home.headers["Strict-Transport-Security"] == "max-age=31536000"
            evil = client.get("/", headers={"Host": "evil.example"})
            assert evil.status_code == 400
            slash = client.get("/subscribe/", headers={"Host": "digest.example.org"}, follow_redirects=False)
            assert slash.status_code != 307 and "location" not in slash.headers
    finally:
        services.close()


def test_slow_clients_are_cut_off_instead_of_holding_connections(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import digest.web.security as security
    import digest.web.server as server

    # The deadlines are read when a connection opens and when a body is read; short ones keep the test quick.
    monkeypatch.setattr(server, "HEADER_SECONDS", 1.0)
    monkeypatch.setattr(security, "BODY_READ_SECONDS", 1.0)
    host, port = live.url.removeprefix("http://").split(":")
    slow_heads = []
    for _ in range(50):
        connection = socket.create_connection((host, int(port)), timeout=5)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        slow_heads.append(connection)
    slow_body = socket.create_connection((host, int(port)), timeout=5)
    slow_body.sendall(
        b"POST /api/subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 60\r\n\r\n{"email": '
    )
    time.sleep(2.5)
    try:
        assert all(c.recv(1024) == b"" for c in slow_heads), "a slow request head kept its connection"
        answer = slow_body.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
        # Meanwhile the server still answers everyone else.
        assert live.subscribe("prompt@example.org", ["optics"]).status_code == 202
    finally:
        for connection in [*slow_heads, slow_body]:
            connection.close()
