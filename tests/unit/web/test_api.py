"""The JSON API: round trips through the same core as the pages, field-named errors, and its schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.deliver.schedule import Schedule, next_slot
from digest.limits import MemoryCounter, SubscribeLimits
from digest.models import Cadence, Subscriber, SubscriberStatus, Vote, utcnow
from digest.services import Services
from digest.web import create_app
from tests.support.web import (
    BASE_URL,
    RecordingDispatcher,
    add_listing,
    add_subscriber,
    reload,
    subscriber_count,
    votes,
)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def client(services: Services, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    limits = SubscribeLimits(MemoryCounter(), per_ip=1000, per_address=1000)
    app = create_app(services, dispatcher, subscribe_limits=limits)
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as test_client:
        yield test_client


def field_of(response_json: dict[str, object]) -> str:
    detail = response_json["detail"]
    assert isinstance(detail, list) and detail, response_json
    loc = detail[0]["loc"]
    return str(loc[-1])


# Schema -------------------------------------------------------------------------------------------------


def test_the_openapi_schema_lists_the_api_and_not_the_pages(client: TestClient) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths["/api/subscribe"]) == {"post"}
    assert set(paths["/api/preferences/{token}"]) == {"get", "put"}
    assert set(paths["/api/feedback/{token}"]) == {"post"}
    assert set(paths["/api/feedback/{token}/{listing_id}"]) == {"delete"}
    assert set(paths["/api/suggest"]) == {"get"}
    assert not [p for p in paths if not p.startswith("/api/") and p != "/healthz"], sorted(paths)
    subscribe = paths["/api/subscribe"]["post"]
    assert "202" in subscribe["responses"] and "422" in subscribe["responses"]
    body = schema.json()["components"]["schemas"]["SubscribeIn"]
    assert set(body["required"]) == {"email", "topics"}
    assert client.get("/docs").status_code == 404


# Subscribing --------------------------------------------------------------------------------------------


def test_subscribe_is_accepted_with_the_same_answer_for_any_address(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    active = add_subscriber(services, "ann@example.org")
    body = {
        "topics": ["optics", "quantum sensing"],
        "cadence": "weekly",
        "send_hour": 7,
        "timezone": "Europe/Berlin",
        "weekly_day": 4,
    }
    known = client.post("/api/subscribe", json={"email": "ann@example.org", **body})
    unknown = client.post("/api/subscribe", json={"email": "Bob@Example.org", **body})
    for answer in (known, unknown):
        assert answer.status_code == 202
        assert answer.json() == {"status": "check your inbox"}
        assert "set-cookie" not in answer.headers
    assert known.content == unknown.content
    with services.sessions() as session:
        bob = session.scalars(select(Subscriber).where(Subscriber.email == "bob@example.org")).one()
    assert (bob.status, bob.cadence, bob.send_hour, bob.timezone, bob.weekly_day) == (
        SubscriberStatus.PENDING,
        Cadence.WEEKLY,
        7,
        "Europe/Berlin",
        4,
    )
    assert bob.topics == ["optics", "quantum sensing"]
    assert dispatcher.confirmations == [active.id, bob.id]
    assert reload(services, active.id).cadence is Cadence.DAILY, "an unproven request changes nothing"


def test_subscribe_uses_the_servers_defaults(client: TestClient, services: Services) -> None:
    assert (
        client.post("/api/subscribe", json={"email": "ann@example.org", "topics": ["optics"]}).status_code
        == 202
    )
    with services.sessions() as session:
        ann = session.scalars(select(Subscriber)).one()
    assert (ann.cadence, ann.send_hour, ann.timezone) == (Cadence.DAILY, 6, "UTC")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a" * 400 + "@example.org"}, "email"),
        ({"topics": []}, "topics"),
        ({"topics": [" , "]}, "topics"),
        ({"topics": ["x" * 101]}, 0),
        ({"topics": [f"t{n}" for n in range(21)]}, "topics"),
        ({"cadence": "paused"}, "cadence"),
        ({"send_hour": 24}, "send_hour"),
        ({"weekly_day": 7}, "weekly_day"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_subscribe_422_names_the_field(
    client: TestClient,
    services: Services,
    dispatcher: RecordingDispatcher,
    change: dict[str, object],
    field: str | int,
) -> None:
    body = {"email": "ann@example.org", "topics": ["optics"], **change}
    answer = client.post("/api/subscribe", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert field_of(answer.json()) == str(field)
    if field == 0:
        assert answer.json()["detail"][0]["loc"] == ["body", "topics", 0]
    assert subscriber_count(services) == 0
    assert dispatcher.confirmations == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_api_bodies_must_be_json(client: TestClient, services: Services, headers: dict[str, str]) -> None:
    answer = client.post(
        "/api/subscribe", content=b'{"email": "ann@example.org", "topics": ["optics"]}', headers=headers
    )
    assert answer.status_code == 415
    assert "application/json" in answer.json()["detail"]
    assert subscriber_count(services) == 0


# Preferences --------------------------------------------------------------------------------------------


def test_preferences_round_trip(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services, "ann@example.org", topics="optics")
    paper = add_listing(services, "Optical clocks", url="https://arxiv.org/abs/2401.00001")
    client.post(f"/api/feedback/{services.links.feedback_token(ann.public_id, paper.id, Vote.MORE)}")
    path = f"/api/preferences/{services.links.preferences_token(ann.public_id)}"

    shown = client.get(path)
    assert shown.status_code == 200
    prefs = shown.json()
    assert prefs["email"] == "a***@example.org"
    assert prefs["topics"] == ["optics"]
    assert prefs["schedule"] == "every day at 06:00 UTC"
    assert prefs["votes"][0]["title"] == "Optical clocks" and prefs["votes"][0]["vote"] == "more"
    assert prefs["archive_url"].startswith("https://digest.example.org/archive/")
    assert prefs["learned"] is not None
    assert any(term["term"].startswith("optic") for term in prefs["learned"]["pulling"])

    update = {
        "topics": ["optics", "atomic clocks"],
        "cadence": "weekly",
        "send_hour": 8,
        "timezone": "Asia/Tokyo",
        "weekly_day": 2,
        "digest_size": 5,
        "show_trending": False,
    }
    saved = client.put(path, json=update)
    assert saved.status_code == 200, saved.text
    assert saved.json()["schedule"] == "every Wednesday at 08:00 Asia/Tokyo"
    row = reload(services, ann.id)
    assert (row.topics, row.cadence, row.send_hour, row.timezone, row.weekly_day) == (
        ["optics", "atomic clocks"],
        Cadence.WEEKLY,
        8,
        "Asia/Tokyo",
        2,
    )
    assert (row.digest_size, row.show_trending) == (5, False)
    expected = next_slot(Schedule(Cadence.WEEKLY, 8, "Asia/Tokyo", 2), utcnow())
    assert expected is not None and row.next_due_at == expected.due_at
    assert client.get(path).json()["next_due_at"] is not None

    paused = client.put(path, json={**update, "cadence": "paused"})
    assert paused.status_code == 200
    assert paused.json()["schedule"] == "paused"
    assert reload(services, ann.id).next_due_at is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Nowhere/Town"}, "timezone"),
        ({"send_hour": -1}, "send_hour"),
        ({"digest_size": 0}, "digest_size"),
        ({"digest_size": 51}, "digest_size"),
        ({"cadence": "hourly"}, "cadence"),
        ({"topics": ["", " "]}, "topics"),
    ],
)
def test_bad_preferences_are_422_naming_the_field_and_change_nothing(
    client: TestClient, services: Services, change: dict[str, object], field: str
) -> None:
    ann = add_subscriber(services, topics="optics")
    before = reload(services, ann.id)
    path = f"/api/preferences/{services.links.preferences_token(ann.public_id)}"
    body = {"topics": ["lasers"], "cadence": "weekly", "send_hour": 9, "timezone": "UTC", **change}
    answer = client.put(path, json=body)
    assert answer.status_code == 422
    assert field_of(answer.json()) == field
    after = reload(services, ann.id)
    assert (after.topics, after.cadence, after.send_hour, after.next_due_at) == (
        before.topics,
        before.cadence,
        before.send_hour,
        before.next_due_at,
    )


def test_preferences_of_a_deleted_subscriber_are_404(client: TestClient, services: Services) -> None:
    answer = client.get(f"/api/preferences/{services.links.preferences_token('nobody')}")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "this link is no longer valid"}


# Votes --------------------------------------------------------------------------------------------------


def test_vote_and_remove_round_trip(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    ann = add_subscriber(services)
    paper = add_listing(services)
    links = services.links
    more = client.post(f"/api/feedback/{links.feedback_token(ann.public_id, paper.id, Vote.MORE)}")
    assert more.status_code == 200
    assert more.json() == {
        "listing_id": paper.id,
        "title": paper.title,
        "vote": "more",
        "previous": None,
        "changed": True,
    }
    less = client.post(
        f"/api/feedback/{links.feedback_token(ann.public_id, paper.id, Vote.LESS)}", json={}
    ).json()
    assert (less["vote"], less["previous"]) == ("less", "more")
    assert votes(services, ann.id) == {paper.id: Vote.LESS}

    removed = client.delete(f"/api/feedback/{links.preferences_token(ann.public_id)}/{paper.id}")
    assert removed.status_code == 200
    assert (removed.json()["vote"], removed.json()["previous"], removed.json()["changed"]) == (
        None,
        "less",
        True,
    )
    assert votes(services, ann.id) == {}
    again = client.delete(f"/api/feedback/{links.preferences_token(ann.public_id)}/{paper.id}")
    assert again.json()["changed"] is False
    assert dispatcher.retrains == [ann.id] * 3


def test_votes_on_unknown_papers_are_404(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    links = services.links
    assert (
        client.post(f"/api/feedback/{links.feedback_token(ann.public_id, 999, Vote.MORE)}").status_code == 404
    )
    assert client.delete(f"/api/feedback/{links.preferences_token(ann.public_id)}/999").status_code == 404
    assert client.delete(f"/api/feedback/{links.preferences_token(ann.public_id)}/x").status_code == 422


# Suggestions --------------------------------------------------------------------------------------------


def test_suggestions_come_from_the_stored_titles(client: TestClient, services: Services) -> None:
    for title in ("Diffusion models for images", "Diffusion models for video", "Sparse attention"):
        add_listing(services, title)
    answer = client.get("/api/suggest", params={"q": "diff"})
    assert answer.status_code == 200
    assert answer.json()["query"] == "diff"
    # Each with how many recent papers mention it; "diffusion models" and "Diffusion models" are one.
    assert answer.json()["suggestions"] == [{"topic": "diffusion models", "papers": 2}]
    assert answer.json()["window"] == 2000
    assert client.get("/api/suggest", params={"q": "d"}).json()["suggestions"] == []
    assert client.get("/api/suggest", params={"q": "x" * 101}).status_code == 422


def test_a_whole_topic_gets_its_count_and_zero_when_no_recent_paper_mentions_it(
    client: TestClient, services: Services
) -> None:
    for title in ("Diffusion models for images", "Diffusion-model distillation", "Sparse attention"):
        add_listing(services, title)
    answer = client.get("/api/topics/matches", params={"topic": ["diffusion models", "protein folding"]})
    assert answer.status_code == 200
    assert answer.json() == {
        "topics": [{"topic": "diffusion models", "papers": 2}, {"topic": "protein folding", "papers": 0}],
        "window": 2000,
    }
    # A paper stored after the first answer is counted by the next one.
    add_listing(services, "Protein folding with diffusion models")
    again = client.get("/api/topics/matches", params={"topic": ["Protein Folding"]}).json()
    assert again["topics"] == [{"topic": "Protein Folding", "papers": 1}]
    assert client.get("/api/topics/matches").status_code == 422
    assert client.get("/api/topics/matches", params={"topic": ["x" * 101]}).status_code == 422
    assert (
        client.get("/api/topics/matches", params={"topic": [f"t{n}" for n in range(21)]}).status_code == 422
    )
