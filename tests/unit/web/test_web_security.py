"""Abuse of the public pages: floods of one address, probing who is subscribed, forged forms, bad links,
oversized bodies. Each refusal must leave the database as it was."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from itsdangerous.timed import TimestampSigner
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select

from digest.db import transaction
from digest.limits import MemoryCounter, RedisCounter, SubscribeLimits, default_limits
from digest.mail.links import CONFIRM_MAX_AGE_SECONDS
from digest.models import Subscriber, SubscriberStatus, Vote
from digest.readers import Readers, SubscriptionRequestData
from digest.services import Services
from digest.web import create_app
from tests.support.env import REDIS_URL, free_port, make_settings
from tests.support.web import (
    BASE_URL,
    RecordingDispatcher,
    add_digest,
    add_listing,
    add_subscriber,
    csrf_for,
    csrf_tokens,
    post_with_csrf,
    reload,
    submit,
    subscriber_count,
    tampered,
    votes,
    without_nonce,
    without_typed_address,
)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


def make_client(
    services: Services, dispatcher: RecordingDispatcher, limits: SubscribeLimits | None = None
) -> TestClient:
    return TestClient(
        create_app(services, dispatcher, subscribe_limits=limits), base_url=BASE_URL, follow_redirects=False
    )


@pytest.fixture
def client(services: Services, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    with make_client(services, dispatcher) as test_client:
        yield test_client


def generous() -> SubscribeLimits:
    return SubscribeLimits(MemoryCounter(), per_ip=10_000, per_address=10_000)


def snapshot(services: Services) -> list[tuple[object, ...]]:
    """Every subscriber's state and votes, to show a refused request changed nothing."""
    with services.sessions() as session:
        rows = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
        return [
            (
                s.email,
                s.status,
                tuple(s.topics),
                s.cadence,
                s.send_hour,
                s.timezone,
                s.weekly_day,
                s.next_due_at,
                s.show_trending,
                s.digest_size,
                s.confirmation_sent_at,
                tuple(sorted(votes(services, s.id).items())),
            )
            for s in rows
        ]


def set_status(services: Services, subscriber_id: int, status: SubscriberStatus) -> None:
    with transaction(services.sessions) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        subscriber.status = status


# Floods and probing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [None, generous()], ids=["default-limits", "throttle-only"])
def test_a_hundred_subscribes_of_one_address_queue_one_email(
    services: Services, dispatcher: RecordingDispatcher, limits: SubscribeLimits | None
) -> None:
    with make_client(services, dispatcher, limits) as client:
        token = csrf_tokens(client.get("/").text)["/subscribe"]
        answers = [
            client.post(
                "/subscribe", data={"email": "ann@example.org", "topics": "optics", "csrf_token": token}
            )
            for _ in range(100)
        ]
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert len(dispatcher.confirmations) == 1
    assert subscriber_count(services) == 1


def test_an_active_address_is_mailed_at_most_once_an_hour_too(
    services: Services, dispatcher: RecordingDispatcher
) -> None:
    active = add_subscriber(services, "ann@example.org", confirmed=True)
    with make_client(services, dispatcher, generous()) as client:
        for _ in range(20):
            submit(client, "/", "/subscribe", {"email": "ann@example.org", "topics": "optics"})
    assert dispatcher.confirmations == [active.id]
    assert reload(services, active.id).confirmation_sent_at is not None
    assert reload(services, active.id).topics == ["llms", "robotics"]


def test_the_answer_is_byte_identical_whatever_the_address_state(
    services: Services, dispatcher: RecordingDispatcher
) -> None:
    add_subscriber(services, "active@example.org", confirmed=True)
    add_subscriber(services, "pending@example.org", confirmed=False)
    gone = add_subscriber(services, "gone@example.org", confirmed=True)
    set_status(services, gone.id, SubscriberStatus.UNSUBSCRIBED)
    bounced = add_subscriber(services, "bounced@example.org", confirmed=True)
    set_status(services, bounced.id, SubscriberStatus.BOUNCED)
    addresses = [f"{state}@example.org" for state in ("new", "pending", "active", "gone", "bounced")]
    with make_client(services, dispatcher, generous()) as client:
        answers = [
            submit(client, "/", "/subscribe", {"email": address, "topics": "optics"}) for address in addresses
        ]
        # Asking again within the hour (nothing is mailed now) answers the same as well.
        answers += [submit(client, "/", "/subscribe", {"email": "active@example.org", "topics": "optics"})]
    first = answers[0]
    assert first.status_code == 200
    # The answer repeats the address typed, and differs in nothing else.
    addresses.append("active@example.org")
    for answer, address in zip(answers[1:], addresses[1:], strict=True):
        assert answer.status_code == first.status_code
        assert without_typed_address(answer, address) == without_typed_address(first, addresses[0])
        # Only the length differs, by the addresses' lengths.
        assert int(answer.headers["content-length"]) - len(address) == int(
            first.headers["content-length"]
        ) - len(addresses[0])
        assert without_nonce(answer.headers) | {"content-length": ""} == without_nonce(first.headers) | {
            "content-length": ""
        }
    assert "set-cookie" not in first.headers
    # The suppressed (bounced) address answers the same and is not mailed.
    assert len(dispatcher.confirmations) == 4 and bounced.id not in dispatcher.confirmations


def test_the_per_ip_limit_stops_the_emails_but_not_the_answer(
    services: Services, dispatcher: RecordingDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    limits = SubscribeLimits(MemoryCounter(), per_ip=3, per_address=100)
    with make_client(services, dispatcher, limits) as client:
        answers = [
            submit(client, "/", "/subscribe", {"email": f"user{n}@example.org", "topics": "optics"})
            for n in range(6)
        ]
    blanked = {
        (a.status_code, without_typed_address(a, f"user{n}@example.org")) for n, a in enumerate(answers)
    }
    assert len(blanked) == 1
    assert len(dispatcher.confirmations) == 3
    assert subscriber_count(services) == 3, "a limited request stores nothing"
    assert "subscribe limit" in caplog.text


def test_the_per_address_limit_applies_across_clients(
    services: Services, dispatcher: RecordingDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    limits = SubscribeLimits(MemoryCounter(), per_ip=100, per_address=2)
    with make_client(services, dispatcher, limits) as client:
        for _ in range(4):
            answer = submit(client, "/", "/subscribe", {"email": "ann@example.org", "topics": "optics"})
            assert answer.status_code == 200
    assert "requests this hour for one mailbox" in caplog.text
    assert len(dispatcher.confirmations) == 1


def test_the_json_api_shares_the_limits_and_the_throttle(
    services: Services, dispatcher: RecordingDispatcher
) -> None:
    with make_client(services, dispatcher) as client:
        answers = [
            client.post("/api/subscribe", json={"email": "ann@example.org", "topics": ["optics"]})
            for _ in range(30)
        ]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"check your inbox"}')}
    assert len(dispatcher.confirmations) == 1


def test_memory_counter_starts_a_new_window() -> None:
    now = [1000.0]
    counter = MemoryCounter(clock=lambda: now[0])
    assert [counter.hit("k", 3600) for _ in range(3)] == [1, 2, 3]
    now[0] += 3600
    assert counter.hit("k", 3600) == 1


# CSRF ---------------------------------------------------------------------------------------------------

FormCase = Callable[[Services], tuple[str, str, dict[str, str]]]


def _subscribe_form(services: Services) -> tuple[str, str, dict[str, str]]:
    return "/", "/subscribe", {"email": "new@example.org", "topics": "optics"}


def _confirm_form(services: Services) -> tuple[str, str, dict[str, str]]:
    pending = add_subscriber(services, "pending@example.org", confirmed=False)
    path = f"/confirm/{services.links.confirm_token(pending.public_id)}"
    return path, path, {}


def _feedback_form(services: Services) -> tuple[str, str, dict[str, str]]:
    paper = add_listing(services)
    path = f"/feedback/{services.links.feedback_token(_ann(services).public_id, paper.id, Vote.MORE)}"
    return path, path, {}


def _undo_form(services: Services) -> tuple[str, str, dict[str, str]]:
    paper = add_listing(services)
    path = f"/feedback/undo/{services.links.undo_token(_ann(services).public_id, paper.id, Vote.LESS)}"
    return path, path, {}


def _resubscribe_form(services: Services) -> tuple[str, str, dict[str, str]]:
    gone = add_subscriber(services, "gone@example.org")
    set_status(services, gone.id, SubscriberStatus.UNSUBSCRIBED)
    page = f"/unsubscribe/{services.links.unsubscribe_token(gone.public_id)}"
    return page, f"{page}/resubscribe", {}


def _preferences_form(services: Services) -> tuple[str, str, dict[str, str]]:
    path = f"/preferences/{services.links.preferences_token(_ann(services).public_id)}"
    return path, path, {"topics": "changed", "cadence": "weekly", "send_hour": "9", "timezone": "Asia/Tokyo"}


def _pause_form(services: Services) -> tuple[str, str, dict[str, str]]:
    path = f"/preferences/{services.links.preferences_token(_ann(services).public_id)}"
    return path, f"{path}/cadence", {"cadence": "paused"}


def _remove_vote_form(services: Services) -> tuple[str, str, dict[str, str]]:
    ann = _ann(services)
    paper = add_listing(services, "A voted paper")
    from digest.subscribers.feedback import record_vote

    with transaction(services.sessions) as session:
        record_vote(session, ann.public_id, paper.id, Vote.MORE)
    path = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    return path, f"{path}/votes/{paper.id}/remove", {}


def _ann(services: Services) -> Subscriber:
    with services.sessions() as session:
        found = session.scalars(select(Subscriber).where(Subscriber.email == "ann@example.org")).one_or_none()
    return found or add_subscriber(services, "ann@example.org")


FORMS = {
    "subscribe": _subscribe_form,
    "confirm": _confirm_form,
    "feedback": _feedback_form,
    "undo": _undo_form,
    "resubscribe": _resubscribe_form,
    "preferences": _preferences_form,
    "pause": _pause_form,
    "remove-vote": _remove_vote_form,
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_every_form_post_needs_its_own_pages_token(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher, form: FormCase
) -> None:
    add_subscriber(services, "ann@example.org")
    page_path, action, data = form(services)
    page = client.get(page_path)
    assert page.status_code == 200
    good = csrf_tokens(page.text)[action]
    other_path_token = csrf_for(client, services, "/subscribe" if action != "/subscribe" else "/elsewhere")
    before = snapshot(services)

    attempts = {
        "missing": client.post(action, data=data),
        "empty": client.post(action, data={**data, "csrf_token": ""}),
        "wrong": client.post(action, data={**data, "csrf_token": tampered(good)}),
        "for another form": client.post(action, data={**data, "csrf_token": other_path_token}),
    }
    # The page's token without the cookie it belongs to: what another site's form would send.
    with make_client(services, dispatcher) as stranger:
        attempts["without the cookie"] = stranger.post(action, data={**data, "csrf_token": good})
    for name, response in attempts.items():
        assert response.status_code == 403, name
        assert "Nothing was changed" in response.text, name
        assert response.headers["content-type"].startswith("text/html"), name
    assert snapshot(services) == before
    assert dispatcher.confirmations == [] and dispatcher.retrains == []

    accepted = client.post(action, data={**data, "csrf_token": good})
    assert accepted.status_code == 200, accepted.text


def test_the_refusal_page_links_back_to_the_form(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    prefs = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    refused = client.post(f"{prefs}/cadence", data={"cadence": "paused"})
    assert refused.status_code == 403
    assert f'href="{prefs}" id="retry"' in refused.text
    assert 'href="/" id="retry"' in client.post("/subscribe", data={}).text


def test_the_csrf_cookie_is_host_only_secure_httponly_and_lax(client: TestClient) -> None:
    cookie = client.get("/").headers["set-cookie"]
    assert cookie.startswith("__Host-digest_csrf=")
    for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
        assert attribute.lower() in cookie.lower()
    assert "domain=" not in cookie.lower()
    assert "set-cookie" not in client.get("/").headers, "an existing cookie is kept"


def test_one_click_unsubscribe_needs_no_cookie_or_token(
    services: Services, dispatcher: RecordingDispatcher
) -> None:
    subscriber = add_subscriber(services)
    path = f"/unsubscribe/{services.links.unsubscribe_token(subscriber.public_id)}"
    with make_client(services, dispatcher) as mail_provider:
        answers = [
            mail_provider.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            for _ in range(2)
        ]
        assert not mail_provider.cookies
    for answer in answers:
        assert answer.status_code == 200
        assert "location" not in answer.headers
        assert "set-cookie" not in answer.headers
        assert "You're unsubscribed" in answer.text
    after = reload(services, subscriber.id)
    assert after.status is SubscriberStatus.UNSUBSCRIBED


# Bad links ----------------------------------------------------------------------------------------------


def expired_confirm_token(services: Services, public_id: str, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as patch:
        long_ago = int(time.time()) - CONFIRM_MAX_AGE_SECONDS - 60
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: long_ago)
        return services.links.confirm_token(public_id)


def test_an_expired_confirmation_link_is_refused(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = add_subscriber(services, confirmed=False)
    path = f"/confirm/{expired_confirm_token(services, pending.public_id, monkeypatch)}"
    before = snapshot(services)
    for response in (client.get(path), post_with_csrf(client, services, path)):
        assert response.status_code == 400
        assert "expired" in response.text
    assert snapshot(services) == before


def test_tampered_and_cross_purpose_tokens_change_nothing(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    paper = add_listing(services)
    add_digest(services, ann.id, [paper.id], date(2026, 11, 20))
    links = services.links
    pid = ann.public_id
    tokens = {
        "feedback": links.feedback_token(pid, paper.id, Vote.MORE),
        "undo": links.undo_token(pid, paper.id, None),
        "unsubscribe": links.unsubscribe_token(pid),
        "preferences": links.preferences_token(pid),
        "confirm": links.confirm_token(pid),
        "archive": links.archive_token(pid),
    }
    # Each route with the methods it answers: pages GET and POST, the forms below them POST only.
    routes = {
        "feedback": [("/feedback/{}", "GET POST")],
        "undo": [("/feedback/undo/{}", "GET POST")],
        "unsubscribe": [("/unsubscribe/{}", "GET POST"), ("/unsubscribe/{}/resubscribe", "POST")],
        "preferences": [("/preferences/{}", "GET POST"), ("/preferences/{}/cadence", "POST")],
        "confirm": [("/confirm/{}", "GET POST")],
        "archive": [("/archive/{}", "GET")],
    }
    before = snapshot(services)
    for purpose, templates in routes.items():
        wrong = [token for other, token in tokens.items() if other != purpose]
        wrong.append(tampered(tokens[purpose]))
        for template, methods in templates:
            for token in wrong:
                path = template.format(token)
                responses = []
                if "POST" in methods:
                    responses.append(post_with_csrf(client, services, path, {"cadence": "paused"}))
                if "GET" in methods:
                    responses.append(client.get(path))
                for response in responses:
                    assert response.status_code == 400, path
                    assert "Nothing was changed" in response.text
    api_paths = [
        ("GET", f"/api/preferences/{tokens['unsubscribe']}"),
        ("GET", f"/api/preferences/{tampered(tokens['preferences'])}"),
        ("POST", f"/api/feedback/{tokens['undo']}"),
        ("DELETE", f"/api/feedback/{tokens['feedback']}/{paper.id}"),
    ]
    for method, path in api_paths:
        response = client.request(method, path)
        assert response.status_code == 400, path
        assert "detail" in response.json()
    assert snapshot(services) == before


# Headers and limits -------------------------------------------------------------------------------------


def test_pages_carry_the_security_headers(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    for path in ("/", f"/preferences/{services.links.preferences_token(ann.public_id)}", "/api/suggest?q=x"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


def test_scripts_run_only_with_the_responses_nonce(client: TestClient) -> None:
    page = client.get("/")
    nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}" src="/static/app.js" defer></script>' in page.text
    assert page.text.count("<script") == 1
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")


def test_bodies_over_64_kb_are_refused_before_parsing(client: TestClient, services: Services) -> None:
    token = csrf_for(client, services, "/subscribe")
    big = {"email": "ann@example.org", "topics": "x" * 70_000, "csrf_token": token}
    assert client.post("/subscribe", data=big).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield f"csrf_token={token}&email=ann%40example.org&topics=".encode()
        for _ in range(80):
            yield b"y" * 1024

    chunked = client.post(
        "/subscribe", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert chunked.status_code == 413
    api = client.post(
        "/api/subscribe", content=b"[" + b"1," * 40_000 + b"1]", headers={"Content-Type": "application/json"}
    )
    assert api.status_code == 413
    assert api.json() == {"detail": "the request body is larger than 64 KB"}
    assert subscriber_count(services) == 0


def test_a_small_chunked_body_still_arrives(client: TestClient, services: Services) -> None:
    token = csrf_for(client, services, "/subscribe")

    def chunks() -> Iterator[bytes]:
        yield f"csrf_token={token}&email=ann%40example.org".encode()
        yield b"&topics=optics"

    answer = client.post(
        "/subscribe", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 200
    assert subscriber_count(services) == 1


def test_an_overlong_email_is_refused(client: TestClient, services: Services) -> None:
    answer = submit(client, "/", "/subscribe", {"email": "a" * 400 + "@example.org", "topics": "optics"})
    assert answer.status_code == 422
    assert "at most 320 characters" in answer.text
    assert subscriber_count(services) == 0


def test_an_unreachable_counter_store_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on the port: every hit fails, and the throttle on the row still protects the mailbox.
    client = redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    limits = SubscribeLimits(RedisCounter(client, prefix="digest-test"), per_ip=1, per_address=1)
    assert all(limits.allow("192.0.2.1", "ann@example.org") for _ in range(3))
    assert "rate limit unavailable" in caplog.text


@pytest.mark.integration
def test_redis_counters_are_shared_and_expire() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"digest-test:{uuid.uuid4().hex}"
    try:
        first = SubscribeLimits(RedisCounter(client, prefix=prefix), per_ip=2, per_address=100)
        second = SubscribeLimits(RedisCounter(client, prefix=prefix), per_ip=2, per_address=100)
        assert first.allow("192.0.2.1", "a@example.org")
        assert second.allow("192.0.2.1", "b@example.org")
        assert not first.allow("192.0.2.1", "c@example.org"), "the second process's hit counted"
        assert first.allow("192.0.2.2", "d@example.org")
        keys = list(client.scan_iter(f"{prefix}:*"))
        assert keys and all(0 < int(client.ttl(key)) <= 3600 + 60 for key in keys)
        assert not any(b"192.0.2" in key or b"example.org" in key for key in keys), "no address in the clear"
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def test_default_limits_use_redis_when_the_broker_is_redis(tmp_path: Path) -> None:
    assert isinstance(default_limits(make_settings(tmp_path)).counter, MemoryCounter)
    with_redis = default_limits(make_settings(tmp_path, DIGEST_BROKER_URL="redis://127.0.0.1:1/0"))
    assert isinstance(with_redis.counter, RedisCounter)


def test_an_ipv6_client_is_its_slash_48_and_a_mapped_ipv4_its_ipv4() -> None:
    limits = SubscribeLimits(MemoryCounter(), per_ip=2, per_address=100)
    assert limits.allow("2001:db8:1:2::1", "a@example.org")
    assert limits.allow("2001:db8:1:ffff::9", "b@example.org")
    assert not limits.allow("2001:db8:1:abcd::1", "c@example.org"), "another /64 of the same /48"
    assert limits.allow("2001:db8:2::1", "d@example.org")
    assert limits.allow("192.0.2.1", "e@example.org") and limits.allow("::ffff:192.0.2.1", "f@example.org")
    assert not limits.allow("192.0.2.1", "g@example.org"), "the mapped address was the same client"
    assert limits.allow("::ffff:192.0.2.2", "h@example.org"), "mapped addresses do not share one bucket"


@dataclass
class DeferringDispatcher(RecordingDispatcher):
    """Like the production Celery dispatcher: a subscribe request is handed to a worker as it came."""

    requests: list[SubscriptionRequestData] = field(default_factory=list)

    def answer_subscription(self, request: SubscriptionRequestData) -> None:
        self.requests.append(request)


def test_the_answer_is_sent_before_anything_about_the_address_is_read_or_written(services: Services) -> None:
    active = add_subscriber(services, "active@example.org", confirmed=True)
    bounced = add_subscriber(services, "bounced@example.org", confirmed=True)
    set_status(services, bounced.id, SubscriberStatus.BOUNCED)
    dispatcher = DeferringDispatcher()
    before = snapshot(services)
    with make_client(services, dispatcher, generous()) as client:
        answers = [
            submit(client, "/", "/subscribe", {"email": f"{state}@example.org", "topics": "optics"})
            for state in ("new", "active", "bounced")
        ]
    blanked = {
        (a.status_code, without_typed_address(a, f"{state}@example.org"))
        for a, state in zip(answers, ("new", "active", "bounced"), strict=True)
    }
    assert len(blanked) == 1
    # Nothing was stored or mailed by the requests themselves: their timing has nothing to depend on.
    assert snapshot(services) == before and subscriber_count(services) == 2
    assert dispatcher.confirmations == []
    assert [r["email"] for r in dispatcher.requests] == [
        "new@example.org",
        "active@example.org",
        "bounced@example.org",
    ]
    # The worker's half stores the request and queues the email each address calls for.
    worker = Readers(services, dispatcher, generous())
    for request in dispatcher.requests:
        worker.answer_subscription(request)
    assert subscriber_count(services) == 3
    assert len(dispatcher.confirmations) == 2 and active.id in dispatcher.confirmations
    assert bounced.id not in dispatcher.confirmations
