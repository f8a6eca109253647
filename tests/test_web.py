from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from digest.config import Settings
from digest.db import make_sessionmaker, transaction
from digest.feedback import votes_for
from digest.models import Listing, Subscriber, SubscriberStatus, Vote
from digest.services import Services
from digest.subscriptions import subscribe
from digest.web import create_app


@dataclass
class RecordingDispatcher:
    """Our own queueing seam, kept in memory so the tests can see what the app asked to send."""

    confirmations: list[int] = field(default_factory=list)
    digest_batches: list[list[int]] = field(default_factory=list)
    retrains: list[int] = field(default_factory=list)

    def send_confirmation(self, subscriber_id: int) -> None:
        self.confirmations.append(subscriber_id)

    def send_digests(self, digest_ids: Sequence[int]) -> None:
        self.digest_batches.append(list(digest_ids))

    def retrain(self, subscriber_id: int) -> None:
        self.retrains.append(subscriber_id)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def client(services: Services, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    with TestClient(create_app(services, dispatcher), follow_redirects=False) as test_client:
        yield test_client


def add_subscriber(
    services: Services, email: str = "ann@example.org", topics: str = "llms, robotics", confirmed: bool = True
) -> Subscriber:
    with transaction(services.sessions) as session:
        result = subscribe(session, email, topics, confirmed=confirmed)
        subscriber = session.get(Subscriber, result.subscriber_id)
        assert subscriber is not None
        return subscriber


def add_listing(services: Services, title: str = "Sparse attention for long documents") -> Listing:
    with transaction(services.sessions) as session:
        listing = Listing(title_key=title.lower(), title=title, abstract="An abstract.", source="test")
        session.add(listing)
        session.flush()
        return listing


def reload(services: Services, subscriber_id: int) -> Subscriber:
    with services.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return subscriber


def subscriber_count(services: Services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def votes(services: Services, subscriber_id: int) -> dict[int, Vote]:
    with services.sessions() as session:
        return votes_for(session, subscriber_id)


def form_actions(page: str) -> list[str]:
    return [html.unescape(action) for action in re.findall(r'<form[^>]* action="([^"]*)"', page)]


def tampered(token: str) -> str:
    # A character well inside the signature, where every bit counts.
    position = len(token) - 5
    replacement = "A" if token[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1 :]


# Every page -------------------------------------------------------------------------------------


def test_every_response_carries_the_privacy_headers(client: TestClient) -> None:
    for response in (client.get("/"), client.get("/feedback/not-a-token"), client.get("/healthz")):
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_home_page_has_a_labelled_form_and_a_stylesheet(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.text
    assert '<html lang="en">' in page
    assert 'name="viewport"' in page
    assert '<label for="email">' in page and '<label for="topics">' in page
    assert form_actions(page) == ["/subscribe"]
    stylesheet = client.get("/static/style.css")
    assert stylesheet.status_code == 200
    assert stylesheet.headers["content-type"].startswith("text/css")


# Subscribing ------------------------------------------------------------------------------------


def test_subscribing_queues_one_confirmation(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    response = client.post("/subscribe", data={"email": "Ann@Example.org", "topics": "llms\nrobotics"})
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    with services.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.email == "ann@example.org"
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.topics == ["llms", "robotics"]
    assert dispatcher.confirmations == [subscriber.id]


@pytest.mark.parametrize(
    ("email", "topics", "field_error"),
    [
        ("not-an-address", "llms", "email: &#39;not-an-address&#39; is not a valid email address"),
        ("ann@example.org", " , ; ", "topics: at least one topic is needed"),
        ("ann@example.org", "x" * 120, "is longer than 100 characters"),
    ],
)
def test_invalid_subscription_is_shown_again_with_the_field_named(
    client: TestClient,
    services: Services,
    dispatcher: RecordingDispatcher,
    email: str,
    topics: str,
    field_error: str,
) -> None:
    response = client.post("/subscribe", data={"email": email, "topics": topics})
    assert response.status_code == 422
    assert field_error in response.text
    assert f'value="{email}"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert subscriber_count(services) == 0
    assert dispatcher.confirmations == []


def test_missing_form_fields_get_the_form_not_a_json_error(client: TestClient) -> None:
    response = client.post("/subscribe", data={})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "email: an email address is needed" in response.text


def test_answer_is_the_same_for_known_and_unknown_addresses(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    active = add_subscriber(services, "ann@example.org", confirmed=True)
    pending = add_subscriber(services, "bob@example.org", confirmed=False)
    answers = [
        client.post("/subscribe", data={"email": address, "topics": "optics"})
        for address in ("ann@example.org", "bob@example.org", "new@example.org")
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].text == answers[1].text == answers[2].text
    assert reload(services, active.id).status is SubscriberStatus.ACTIVE
    with services.sessions() as session:
        new = session.scalars(select(Subscriber).where(Subscriber.email == "new@example.org")).one()
    assert dispatcher.confirmations == [pending.id, new.id]


def test_a_failing_dispatcher_does_not_change_the_answer(
    services: Services, dispatcher: RecordingDispatcher
) -> None:
    class BrokenDispatcher(RecordingDispatcher):
        def send_confirmation(self, subscriber_id: int) -> None:
            raise ConnectionError("broker down")

    add_subscriber(services, "ann@example.org", confirmed=True)
    with TestClient(create_app(services, BrokenDispatcher())) as broken:
        known = broken.post("/subscribe", data={"email": "ann@example.org", "topics": "optics"})
        unknown = broken.post("/subscribe", data={"email": "new@example.org", "topics": "optics"})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text


# Confirming -------------------------------------------------------------------------------------


def test_confirm_get_changes_nothing_and_post_activates(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, topics="llms, robotics", confirmed=False)
    path = f"/confirm/{services.links.confirm_token(subscriber.public_id)}"

    page = client.get(path)
    assert page.status_code == 200
    assert "a***@example.org" in page.text
    assert form_actions(page.text) == [path]
    assert reload(services, subscriber.id).status is SubscriberStatus.PENDING

    done = client.post(path)
    assert done.status_code == 200
    assert "You&#39;re subscribed" in done.text
    assert "<li>llms</li>" in done.text and "<li>robotics</li>" in done.text
    after = reload(services, subscriber.id)
    assert after.status is SubscriberStatus.ACTIVE
    assert after.confirmed_at is not None

    assert client.post(path).status_code == 200


def test_bad_confirm_token_is_a_400_page_and_changes_nothing(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, confirmed=False)
    token = services.links.confirm_token(subscriber.public_id)
    for bad in (tampered(token), services.links.unsubscribe_token(subscriber.public_id)):
        response = client.post(f"/confirm/{bad}")
        assert response.status_code == 400
        assert "This link is not valid" in response.text
    assert reload(services, subscriber.id).status is SubscriberStatus.PENDING


def test_confirm_link_for_a_deleted_subscriber_is_a_400(client: TestClient, services: Services) -> None:
    response = client.get(f"/confirm/{services.links.confirm_token('nobody')}")
    assert response.status_code == 400
    assert "no longer valid" in response.text


# Feedback ---------------------------------------------------------------------------------------


def test_feedback_get_changes_nothing_and_post_records_the_vote(
    client: TestClient, services: Services
) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services, "Sparse attention for long documents")
    more = f"/feedback/{services.links.feedback_token(subscriber.public_id, paper.id, Vote.MORE)}"

    page = client.get(more)
    assert page.status_code == 200
    assert "More papers like:" in page.text
    assert "Sparse attention for long documents" in page.text
    assert form_actions(page.text) == [more]
    assert "<noscript>" in page.text
    nonce = re.search(r'<script nonce="([^"]+)">', page.text)
    assert nonce is not None
    assert f"'nonce-{nonce.group(1)}'" in page.headers["content-security-policy"]
    assert votes(services, subscriber.id) == {}

    saved = client.post(more)
    assert saved.status_code == 200
    assert "Future digests will rank papers like this higher" in saved.text
    assert votes(services, subscriber.id) == {paper.id: Vote.MORE}


def test_the_last_vote_wins_and_undo_restores_the_one_before(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services)
    links = services.links
    client.post(f"/feedback/{links.feedback_token(subscriber.public_id, paper.id, Vote.MORE)}")
    client.post(f"/feedback/{links.feedback_token(subscriber.public_id, paper.id, Vote.MORE)}")
    assert dispatcher.retrains == [subscriber.id], "a repeated vote changes nothing, so retrains nothing"

    less = client.post(f"/feedback/{links.feedback_token(subscriber.public_id, paper.id, Vote.LESS)}")
    assert less.status_code == 200
    assert "Future digests will rank papers like this lower" in less.text
    assert votes(services, subscriber.id) == {paper.id: Vote.LESS}

    [undo_action] = form_actions(less.text)
    assert undo_action == f"/feedback/undo/{links.undo_token(subscriber.public_id, paper.id, Vote.MORE)}"
    assert client.get(undo_action).status_code == 200
    assert votes(services, subscriber.id) == {paper.id: Vote.LESS}

    undone = client.post(undo_action)
    assert undone.status_code == 200
    assert "Your earlier vote is back" in undone.text
    assert votes(services, subscriber.id) == {paper.id: Vote.MORE}
    assert dispatcher.retrains == [subscriber.id] * 3


def test_undoing_a_first_vote_removes_it(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services)
    saved = client.post(
        f"/feedback/{services.links.feedback_token(subscriber.public_id, paper.id, Vote.LESS)}"
    )
    [undo_action] = form_actions(saved.text)
    undone = client.post(undo_action)
    assert undone.status_code == 200
    assert "Your vote on this paper is removed" in undone.text
    assert votes(services, subscriber.id) == {}


def test_bad_feedback_links_are_400_and_change_nothing(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services)
    links = services.links
    good = links.feedback_token(subscriber.public_id, paper.id, Vote.MORE)
    bad_paths = [
        f"/feedback/{tampered(good)}",
        f"/feedback/{links.unsubscribe_token(subscriber.public_id)}",
        f"/feedback/{links.undo_token(subscriber.public_id, paper.id, Vote.MORE)}",
        f"/feedback/{links.feedback_token(subscriber.public_id, paper.id + 99, Vote.MORE)}",
        f"/feedback/{links.feedback_token('nobody', paper.id, Vote.MORE)}",
        f"/feedback/undo/{tampered(links.undo_token(subscriber.public_id, paper.id, None))}",
        f"/feedback/undo/{good}",
        f"/feedback/undo/{links.undo_token(subscriber.public_id, paper.id + 99, Vote.LESS)}",
    ]
    for path in bad_paths:
        for method in ("GET", "POST"):
            response = client.request(method, path)
            assert response.status_code == 400, (method, path)
            assert "Nothing was changed" in response.text
    assert votes(services, subscriber.id) == {}


def test_paper_titles_are_escaped(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services, "Robust <script>alert(1)</script> parsing")
    path = f"/feedback/{services.links.feedback_token(subscriber.public_id, paper.id, Vote.LESS)}"
    for response in (client.get(path), client.post(path)):
        assert response.status_code == 200
        assert "<script>alert(1)</script>" not in response.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# Unsubscribing ----------------------------------------------------------------------------------


def test_unsubscribe_get_shows_a_button_and_changes_nothing(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    path = f"/unsubscribe/{services.links.unsubscribe_token(subscriber.public_id)}"
    page = client.get(path)
    assert page.status_code == 200
    assert form_actions(page.text) == [path]
    assert reload(services, subscriber.id).status is SubscriberStatus.ACTIVE


def test_one_click_unsubscribe_answers_200_and_is_repeatable(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    path = f"/unsubscribe/{services.links.unsubscribe_token(subscriber.public_id)}"

    first = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert first.status_code == 200
    assert "location" not in first.headers
    assert "set-cookie" not in first.headers
    after = reload(services, subscriber.id)
    assert after.status is SubscriberStatus.UNSUBSCRIBED
    assert after.unsubscribed_at is not None

    boundary = "----digest-test"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    ).encode()
    again = client.post(
        path, content=multipart, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert again.status_code == 200
    assert reload(services, subscriber.id).unsubscribed_at == after.unsubscribed_at
    assert client.post(path).status_code == 200


def test_resubscribe_from_the_unsubscribed_page(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, topics="optics")
    token = services.links.unsubscribe_token(subscriber.public_id)
    unsubscribed = client.post(f"/unsubscribe/{token}")
    assert "You're unsubscribed" in unsubscribed.text
    [resubscribe_action] = form_actions(unsubscribed.text)
    assert resubscribe_action == f"/unsubscribe/{token}/resubscribe"

    back = client.post(resubscribe_action)
    assert back.status_code == 200
    assert "<li>optics</li>" in back.text
    assert reload(services, subscriber.id).status is SubscriberStatus.ACTIVE


def test_bad_unsubscribe_token_is_400(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    token = services.links.unsubscribe_token(subscriber.public_id)
    for path in (
        f"/unsubscribe/{tampered(token)}",
        f"/unsubscribe/{services.links.preferences_token(subscriber.public_id)}",
        f"/unsubscribe/{tampered(token)}/resubscribe",
    ):
        assert client.post(path).status_code == 400
    assert reload(services, subscriber.id).status is SubscriberStatus.ACTIVE


# Preferences ------------------------------------------------------------------------------------


def test_preferences_show_and_update_topics(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, "ann.lee@example.org", topics="llms")
    path = f"/preferences/{services.links.preferences_token(subscriber.public_id)}"

    page = client.get(path)
    assert page.status_code == 200
    assert "a***@example.org" in page.text
    assert "ann.lee@example.org" not in page.text
    assert ">llms</textarea>" in page.text

    assert 'name="show_trending" value="on" checked' in page.text
    saved = client.post(path, data={"topics": "optics, quantum sensing"})
    assert saved.status_code == 200
    assert "Your settings are saved" in saved.text
    assert ">optics\nquantum sensing</textarea>" in saved.text
    assert reload(services, subscriber.id).topics == ["optics", "quantum sensing"]
    assert reload(services, subscriber.id).show_trending is False, "an unticked box switches Trending off"
    client.post(path, data={"topics": "optics", "show_trending": "on"})
    assert reload(services, subscriber.id).show_trending is True


def test_invalid_preferences_are_422_and_keep_the_old_topics(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, topics="llms")
    path = f"/preferences/{services.links.preferences_token(subscriber.public_id)}"
    too_many = ",".join(f"topic {n}" for n in range(25))
    response = client.post(path, data={"topics": too_many})
    assert response.status_code == 422
    assert "topics: at most 20 topics" in response.text
    assert too_many in response.text
    assert reload(services, subscriber.id).topics == ["llms"]
    assert (
        client.get(f"/preferences/{services.links.unsubscribe_token(subscriber.public_id)}").status_code
        == 400
    )


# Health -----------------------------------------------------------------------------------------


def test_healthz_reports_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_reports_an_unreachable_database(
    settings: Settings, tmp_path: Path, dispatcher: RecordingDispatcher
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite3'}")
    broken = Services(settings=settings, engine=engine, sessions=make_sessionmaker(engine))
    with TestClient(create_app(broken, dispatcher)) as test_client:
        response = test_client.get("/healthz")
    engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
