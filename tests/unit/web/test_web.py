from __future__ import annotations

import html
import re
from datetime import UTC, date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from digest.config import Settings
from digest.db import make_sessionmaker
from digest.deliver.schedule import Schedule, next_slot
from digest.models import Cadence, DigestStatus, Subscriber, SubscriberStatus, Vote, utcnow
from digest.services import Services
from digest.web import create_app
from tests.support.web import (
    BASE_URL,
    RecordingDispatcher,
    add_digest,
    add_listing,
    add_subscriber,
    csrf_tokens,
    form_actions,
    post_with_csrf,
    reload,
    submit,
    subscriber_count,
    tampered,
    votes,
    without_typed_address,
)

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
    response = submit(client, "/", "/subscribe", {"email": "Ann@Example.org", "topics": "llms\nrobotics"})
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
        ("not-an-address", "llms", "“not-an-address” is not an email address we can send to."),
        ("ann@example.org", " , ; ", "Add at least one topic, such as “diffusion models”."),
        ("ann@example.org", "x" * 120, "is longer than 100 characters."),
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
    response = submit(client, "/", "/subscribe", {"email": email, "topics": topics})
    assert response.status_code == 422
    field = "email" if email != "ann@example.org" else "topics"
    # The message is next to its field, which points at it; the summary above links to the field.
    message = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', response.text, re.DOTALL)
    assert message is not None and field_error in html.unescape(message.group(1))
    own = re.search(rf'<(?:input|textarea) id="{field}"[^>]*>', response.text, re.DOTALL)
    assert own is not None and 'aria-invalid="true"' in own.group(0)
    assert f"{field}-error" in own.group(0)
    assert f'<a href="#{field}">' in response.text
    assert "email:" not in response.text and "topics:" not in response.text, "no field names of ours"
    assert f'value="{email}"' in response.text
    assert subscriber_count(services) == 0
    assert dispatcher.confirmations == []


def test_missing_form_fields_get_the_form_not_a_json_error(client: TestClient) -> None:
    response = submit(client, "/", "/subscribe", {})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "Enter your email address" in response.text
    assert "Add at least one topic" in html.unescape(response.text)
    assert "2 things to fix" in response.text


def test_answer_is_the_same_for_known_and_unknown_addresses(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    active = add_subscriber(services, "ann@example.org", confirmed=True)
    pending = add_subscriber(services, "bob@example.org", confirmed=False)
    answers = [
        submit(client, "/", "/subscribe", {"email": address, "topics": "optics"})
        for address in ("ann@example.org", "bob@example.org", "new@example.org")
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    blanked = {
        without_typed_address(a, address)
        for a, address in zip(answers, ("ann@example.org", "bob@example.org", "new@example.org"), strict=True)
    }
    assert len(blanked) == 1
    assert reload(services, active.id).status is SubscriberStatus.ACTIVE
    assert reload(services, active.id).topics == ["llms", "robotics"], "a stranger cannot change them"
    with services.sessions() as session:
        new = session.scalars(select(Subscriber).where(Subscriber.email == "new@example.org")).one()
    # The active address is mailed too: the task sends it the "already subscribed" note.
    assert dispatcher.confirmations == [active.id, pending.id, new.id]


def test_a_failing_dispatcher_does_not_change_the_answer(
    services: Services, dispatcher: RecordingDispatcher
) -> None:
    class BrokenDispatcher(RecordingDispatcher):
        def send_confirmation(self, subscriber_id: int) -> None:
            raise ConnectionError("broker down")

    add_subscriber(services, "ann@example.org", confirmed=True)
    with TestClient(create_app(services, BrokenDispatcher()), base_url=BASE_URL) as broken:
        known = submit(broken, "/", "/subscribe", {"email": "ann@example.org", "topics": "optics"})
        unknown = submit(broken, "/", "/subscribe", {"email": "new@example.org", "topics": "optics"})
    assert known.status_code == unknown.status_code == 200
    assert without_typed_address(known, "ann@example.org") == without_typed_address(
        unknown, "new@example.org"
    )


# Confirming -------------------------------------------------------------------------------------


def test_confirm_get_changes_nothing_and_post_activates(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, topics="llms, robotics", confirmed=False)
    path = f"/confirm/{services.links.confirm_token(subscriber.public_id)}"

    page = client.get(path)
    assert page.status_code == 200
    assert "a***@example.org" in page.text
    assert form_actions(page.text) == [path]
    assert reload(services, subscriber.id).status is SubscriberStatus.PENDING

    done = submit(client, path)
    assert done.status_code == 200
    assert "You&#39;re subscribed" in done.text
    assert "<li>llms</li>" in done.text and "<li>robotics</li>" in done.text
    assert "every day at 06:00 UTC" in done.text
    after = reload(services, subscriber.id)
    assert after.status is SubscriberStatus.ACTIVE
    assert after.confirmed_at is not None
    assert after.next_due_at is not None

    assert submit(client, path).status_code == 200


def test_bad_confirm_token_is_a_400_page_and_changes_nothing(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, confirmed=False)
    token = services.links.confirm_token(subscriber.public_id)
    for bad in (tampered(token), services.links.unsubscribe_token(subscriber.public_id)):
        response = post_with_csrf(client, services, f"/confirm/{bad}")
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
    assert "<h1>More like this</h1>" in page.text
    assert "Sparse attention for long documents" in page.text
    assert form_actions(page.text) == [more]
    assert "<noscript>" in page.text
    nonce = re.search(r'<script nonce="([^"]+)">', page.text)
    assert nonce is not None
    assert f"'nonce-{nonce.group(1)}'" in page.headers["content-security-policy"]
    assert votes(services, subscriber.id) == {}

    saved = submit(client, more)
    assert saved.status_code == 200
    assert "Future digests will rank papers like this higher" in saved.text
    assert '<strong id="vote-label">More like this</strong>' in saved.text
    assert votes(services, subscriber.id) == {paper.id: Vote.MORE}


def test_the_last_vote_wins_and_undo_restores_the_one_before(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services)
    links = services.links
    submit(client, f"/feedback/{links.feedback_token(subscriber.public_id, paper.id, Vote.MORE)}")
    submit(client, f"/feedback/{links.feedback_token(subscriber.public_id, paper.id, Vote.MORE)}")
    assert dispatcher.retrains == [subscriber.id], "a repeated vote changes nothing, so retrains nothing"

    less = submit(client, f"/feedback/{links.feedback_token(subscriber.public_id, paper.id, Vote.LESS)}")
    assert less.status_code == 200
    assert "Future digests will rank papers like this lower" in less.text
    assert votes(services, subscriber.id) == {paper.id: Vote.LESS}

    [undo_action] = form_actions(less.text)
    assert undo_action == f"/feedback/undo/{links.undo_token(subscriber.public_id, paper.id, Vote.MORE)}"
    assert client.get(undo_action).status_code == 200
    assert votes(services, subscriber.id) == {paper.id: Vote.LESS}

    undone = client.post(undo_action, data={"csrf_token": csrf_tokens(less.text)[undo_action]})
    assert undone.status_code == 200
    assert "Your earlier choice is back" in undone.text
    assert '<strong id="vote-label">More like this</strong>' in undone.text
    assert votes(services, subscriber.id) == {paper.id: Vote.MORE}
    assert dispatcher.retrains == [subscriber.id] * 3


def test_undoing_a_first_vote_removes_it(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services)
    saved = submit(
        client, f"/feedback/{services.links.feedback_token(subscriber.public_id, paper.id, Vote.LESS)}"
    )
    [undo_action] = form_actions(saved.text)
    undone = submit(client, undo_action)
    assert undone.status_code == 200
    assert "on this paper is removed" in undone.text
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
        for response in (client.get(path), post_with_csrf(client, services, path)):
            assert response.status_code == 400, path
            assert "Nothing was changed" in response.text
    assert votes(services, subscriber.id) == {}


def test_paper_titles_are_escaped(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services)
    paper = add_listing(services, "Robust <script>alert(1)</script> parsing")
    path = f"/feedback/{services.links.feedback_token(subscriber.public_id, paper.id, Vote.LESS)}"
    for response in (client.get(path), submit(client, path)):
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
    assert client.get(f"/unsubscribe/{token}").status_code == 200
    # The button posts nothing but the press: no token, as for a one-click unsubscribe.
    unsubscribed = client.post(f"/unsubscribe/{token}")
    assert "You're unsubscribed" in unsubscribed.text
    [resubscribe_action] = form_actions(unsubscribed.text)
    assert resubscribe_action == f"/unsubscribe/{token}/resubscribe"

    back = client.post(
        resubscribe_action, data={"csrf_token": csrf_tokens(unsubscribed.text)[resubscribe_action]}
    )
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
        assert post_with_csrf(client, services, path).status_code == 400
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
    saved = submit(client, path, data={"topics": "optics, quantum sensing"})
    assert saved.status_code == 200
    assert "Your settings are saved" in saved.text
    assert ">optics\nquantum sensing</textarea>" in saved.text
    assert reload(services, subscriber.id).topics == ["optics", "quantum sensing"]
    assert reload(services, subscriber.id).show_trending is False, "an unticked box switches Trending off"
    submit(client, path, data={"topics": "optics", "show_trending": "on"})
    assert reload(services, subscriber.id).show_trending is True


def test_invalid_preferences_are_422_and_keep_the_old_topics(client: TestClient, services: Services) -> None:
    subscriber = add_subscriber(services, topics="llms")
    path = f"/preferences/{services.links.preferences_token(subscriber.public_id)}"
    too_many = ",".join(f"topic {n}" for n in range(25))
    response = submit(client, path, data={"topics": too_many})
    assert response.status_code == 422
    assert "Choose at most 20 topics; 25 were entered." in response.text
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
    with TestClient(create_app(broken, dispatcher), base_url=BASE_URL) as test_client:
        response = test_client.get("/healthz")
    engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


# Subscribing with a schedule ----------------------------------------------------------------------------


def test_subscribing_weekly_in_the_browsers_zone(client: TestClient, services: Services) -> None:
    page = client.get("/")
    for field in (
        'id="email"',
        'id="topics"',
        'id="cadence-daily"',
        'id="cadence-weekly"',
        'id="weekly_day"',
    ):
        assert field in page.text
    assert 'id="send_hour"' in page.text and 'name="timezone" value="UTC" data-browser-timezone' in page.text
    assert 'id="cadence-paused"' not in page.text, "nobody signs up to receive nothing"
    data = {
        "email": "ann@example.org",
        "topics": "optics",
        "cadence": "weekly",
        "weekly_day": "4",
        "send_hour": "7",
        "timezone": "America/New_York",
    }
    assert submit(client, "/", "/subscribe", data).status_code == 200
    with services.sessions() as session:
        ann = session.scalars(select(Subscriber)).one()
    assert (ann.cadence, ann.weekly_day, ann.send_hour, ann.timezone) == ("weekly", 4, 7, "America/New_York")


def test_a_time_zone_the_browser_made_up_falls_back_to_the_default(
    client: TestClient, services: Services
) -> None:
    data = {"email": "ann@example.org", "topics": "optics", "timezone": "Nowhere/Town"}
    assert submit(client, "/", "/subscribe", data).status_code == 200
    with services.sessions() as session:
        assert session.scalars(select(Subscriber.timezone)).one() == "UTC"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("cadence", "paused", "Choose how often: every day or once a week."),
        ("send_hour", "25", "Choose a delivery time from the list."),
    ],
)
def test_a_bad_schedule_is_shown_again_with_the_field_named(
    client: TestClient, services: Services, field: str, value: str, problem: str
) -> None:
    answer = submit(client, "/", "/subscribe", {"email": "ann@example.org", "topics": "optics", field: value})
    assert answer.status_code == 422
    assert problem in answer.text
    assert subscriber_count(services) == 0


# Preferences: schedule, pause, votes, what was learned --------------------------------------------------


def test_schedule_edits_move_the_next_delivery(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services, topics="optics")
    daily_due = reload(services, ann.id).next_due_at
    assert daily_due is not None
    path = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    page = client.get(path)
    assert "every day at 06:00 UTC" in page.text
    assert "<option selected>UTC</option>" in page.text

    data = {
        "topics": "optics",
        "cadence": "weekly",
        "weekly_day": "6",
        "send_hour": "18",
        "timezone": "Australia/Sydney",
        "digest_size": "7",
        "show_trending": "on",
    }
    saved = submit(client, path, data=data)
    assert saved.status_code == 200
    assert "Your settings are saved" in saved.text
    assert 'id="schedule-text">every Sunday at 18:00 Australia/Sydney<' in saved.text
    row = reload(services, ann.id)
    assert (row.cadence, row.weekly_day, row.send_hour, row.timezone, row.digest_size) == (
        "weekly",
        6,
        18,
        "Australia/Sydney",
        7,
    )
    expected = next_slot(Schedule(Cadence.WEEKLY, 18, "Australia/Sydney", 6), utcnow())
    assert expected is not None and row.next_due_at == expected.due_at != daily_due


def test_pause_clears_the_next_delivery_and_resume_sets_it(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    path = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    paused = submit(client, path, f"{path}/cadence", {"cadence": "paused"})
    assert paused.status_code == 200
    assert "Your digests are paused" in paused.text
    assert 'id="resume-daily"' in paused.text and 'id="resume-weekly"' in paused.text
    row = reload(services, ann.id)
    assert (row.cadence, row.next_due_at) == (Cadence.PAUSED, None)

    resumed = submit(client, path, f"{path}/cadence", {"cadence": "weekly"})
    assert "Your digests are back on: every Monday at 06:00 UTC" in resumed.text
    row = reload(services, ann.id)
    assert row.cadence is Cadence.WEEKLY and row.next_due_at is not None
    assert row.next_due_at.astimezone(UTC).weekday() == 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"timezone": "Nowhere/Town"}, "“Nowhere/Town” is not a time zone we know."),
        ({"digest_size": "0"}, "Choose between 1 and 50 papers."),
        ({"digest_size": "many"}, "Choose between 1 and 50 papers."),
        ({"send_hour": "24"}, "Choose a delivery time from the list."),
    ],
)
def test_a_bad_setting_is_422_and_changes_nothing(
    client: TestClient, services: Services, change: dict[str, str], problem: str
) -> None:
    ann = add_subscriber(services, topics="optics")
    before = reload(services, ann.id)
    path = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    answer = submit(client, path, data={"topics": "lasers", "cadence": "weekly", **change})
    assert answer.status_code == 422
    [field] = change
    message = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', answer.text, re.DOTALL)
    assert message is not None and problem in html.unescape(message.group(1))
    own = re.search(rf'<(?:input|select) [^>]*id="{field}"[^>]*>', answer.text)
    assert own is not None and 'aria-invalid="true"' in own.group(0) and f"{field}-error" in own.group(0)
    assert f"{field}:" not in answer.text, "no field names of ours"
    after = reload(services, ann.id)
    assert (after.topics, after.cadence, after.timezone, after.digest_size, after.next_due_at) == (
        before.topics,
        before.cadence,
        before.timezone,
        before.digest_size,
        before.next_due_at,
    )


def test_the_vote_history_can_be_undone_one_vote_at_a_time(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    ann = add_subscriber(services, topics="optics")
    kept = add_listing(services, "Optical clocks", url="https://arxiv.org/abs/2401.00001")
    dropped = add_listing(services, "Bad <b>paper</b>", url="javascript:alert(1)")
    links = services.links
    submit(client, f"/feedback/{links.feedback_token(ann.public_id, kept.id, Vote.MORE)}")
    submit(client, f"/feedback/{links.feedback_token(ann.public_id, dropped.id, Vote.LESS)}")
    path = f"/preferences/{links.preferences_token(ann.public_id)}"
    page = client.get(path).text
    assert '<a href="https://arxiv.org/abs/2401.00001" rel="noopener noreferrer">Optical clocks</a>' in page
    assert "javascript:" not in page and "Bad &lt;b&gt;paper&lt;/b&gt;" in page
    assert "More like this" in page and "Less like this" in page
    assert page.index("Bad &lt;b&gt;") < page.index("Optical clocks"), "the newest vote comes first"

    undone = submit(client, path, f"{path}/votes/{dropped.id}/remove")
    assert undone.status_code == 200
    assert "Your vote on “Bad &lt;b&gt;paper&lt;/b&gt;” is removed" in undone.text
    assert votes(services, ann.id) == {kept.id: Vote.MORE}
    assert dispatcher.retrains == [ann.id] * 3


def test_what_was_learned_is_shown_with_bars(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services, topics="optical clocks")
    disliked = add_listing(services, "Protein folding with transformers")
    add_listing(services, "Optical clocks in orbit")
    submit(client, f"/feedback/{services.links.feedback_token(ann.public_id, disliked.id, Vote.LESS)}")
    page = client.get(f"/preferences/{services.links.preferences_token(ann.public_id)}").text
    pulling = page[page.index('id="pulling-terms"') : page.index('id="pushing-heading"')]
    pushing = page[page.index('id="pushing-heading"') : page.index('id="votes-heading"')]
    assert "optical" in pulling and re.search(r'class="bar pull bar-(\d+)"', pulling)
    assert "protein" in pushing and "bar push bar-" in pushing


def test_preferences_link_to_the_archive_and_unsubscribe(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    page = client.get(f"/preferences/{services.links.preferences_token(ann.public_id)}").text
    assert f'href="/archive/{services.links.archive_token(ann.public_id)}" id="archive-link"' in page
    assert (
        f'href="/unsubscribe/{services.links.unsubscribe_token(ann.public_id)}" id="unsubscribe-link"' in page
    )


# Archive ------------------------------------------------------------------------------------------------


def test_the_archive_lists_sent_digests_and_shows_one(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    papers = [add_listing(services, f"Paper {n}", url=f"https://arxiv.org/abs/{n}") for n in range(4)]
    sent = add_digest(services, ann.id, [papers[0].id, papers[1].id], date(2026, 11, 20))
    newer = add_digest(services, ann.id, [papers[2].id], date(2026, 11, 21))
    add_digest(services, ann.id, [papers[3].id], date(2026, 11, 22), status=DigestStatus.PENDING)
    links = services.links

    listing = client.get(f"/archive/{links.archive_token(ann.public_id)}")
    assert listing.status_code == 200
    entries = re.findall(
        r'<li><a href="(/archive/[^"]+)">([^<]+)</a> <span class="hint">(\d+) papers?', listing.text
    )
    assert entries == [
        (f"/archive/{links.archive_token(ann.public_id, newer)}", "Sat 21 Nov 2026", "1"),
        (f"/archive/{links.archive_token(ann.public_id, sent)}", "Fri 20 Nov 2026", "2"),
    ]

    shown = client.get(entries[1][0])
    assert shown.status_code == 200
    assert "Paper 0" in shown.text and "Paper 1" in shown.text and "Paper 2" not in shown.text
    # A page of the site (its own strict CSP, no inline styles), each title opening the paper.
    assert '<a href="https://arxiv.org/abs/0" rel="noopener noreferrer">Paper 0</a>' in shown.text
    assert "unsafe-inline" not in shown.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]


def test_an_empty_archive_says_so(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    page = client.get(f"/archive/{services.links.archive_token(ann.public_id)}")
    assert page.status_code == 200 and 'id="archive-empty"' in page.text


def test_nobody_reaches_another_subscribers_digest(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services, "ann@example.org")
    bob = add_subscriber(services, "bob@example.org")
    paper = add_listing(services)
    unsent = add_listing(services, "Not sent yet")
    bobs = add_digest(services, bob.id, [paper.id], date(2026, 11, 20))
    anns_pending = add_digest(services, ann.id, [unsent.id], date(2026, 11, 20), status=DigestStatus.FAILED)
    links = services.links
    assert client.get(f"/archive/{links.archive_token(bob.public_id, bobs)}").status_code == 200
    for path in (
        f"/archive/{links.archive_token(ann.public_id, bobs)}",
        f"/archive/{links.archive_token(ann.public_id, anns_pending)}",
        f"/archive/{links.archive_token(ann.public_id, 9999)}",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "Sparse attention" not in answer.text
    forged = tampered(links.archive_token(bob.public_id, bobs))
    assert client.get(f"/archive/{forged}").status_code == 400
    assert client.get(f"/archive/{links.archive_token('nobody')}").status_code == 400
