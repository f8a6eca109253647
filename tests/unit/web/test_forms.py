"""The subscribe and settings forms in a reader's words, over HTTP through the real app: each refused entry
is said next to its field, the answer repeats the address typed, topics show how many recent papers
mention them, the unsubscribe pages say what is kept, and votes have one name everywhere."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from digest.limits import MemoryCounter, SubscribeLimits
from digest.models import SubscriberStatus, Vote
from digest.services import Services
from digest.web import create_app
from tests.support.web import (
    BASE_URL,
    RecordingDispatcher,
    add_listing,
    add_subscriber,
    csrf_tokens,
    reload,
    submit,
    subscriber_count,
    votes,
)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def client(services: Services, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    limits = SubscribeLimits(MemoryCounter(), per_ip=10_000, per_address=10_000)
    app = create_app(services, dispatcher, subscribe_limits=limits)
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as test_client:
        yield test_client


def text_of(page: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', page, re.DOTALL)
    assert found is not None, f"no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())


def tag_of(page: str, element_id: str) -> str:
    found = re.search(rf'<(?:input|select|textarea|fieldset)\b[^>]*\bid="{element_id}"[^>]*>', page)
    assert found is not None, f"no field #{element_id}"
    return found.group(0)


# Check your inbox ---------------------------------------------------------------------------------------


def test_the_answer_repeats_the_address_typed_normalised_and_the_same_when_throttled(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    first = submit(client, "/", "/subscribe", {"email": "  Ann@Example.ORG ", "topics": "optics"})
    again = submit(client, "/", "/subscribe", {"email": "ann@example.org", "topics": "optics"})
    assert first.status_code == again.status_code == 200
    assert text_of(first.text, "typed-address") == "ann@example.org"
    assert first.content == again.content, "mailed or throttled, the answer is the same"
    assert len(dispatcher.confirmations) == 1
    assert 'id="retype-link"' in first.text


# Errors at the field -----------------------------------------------------------------------------------


def test_every_refused_entry_is_said_next_to_its_field_and_summarised_above(
    client: TestClient, services: Services
) -> None:
    answer = submit(
        client, "/", "/subscribe", {"email": "ann@", "topics": " , ", "send_hour": "25", "weekly_day": "9"}
    )
    assert answer.status_code == 422
    page = answer.text
    assert "<title>Fix the form: Subscribe" in page
    expected = {
        "email": "“ann@” is not an email address we can send to.",
        "topics": "Add at least one topic",
        "send_hour": "Choose a delivery time from the list.",
        "weekly_day": "Choose a day of the week from the list.",
    }
    for field, words in expected.items():
        assert words in text_of(page, f"{field}-error"), field
        tag = tag_of(page, field)
        assert 'aria-invalid="true"' in tag and f"{field}-error" in tag.split("aria-describedby=")[1], tag
        assert f'<a href="#{field}">' in page
    assert "4 things to fix" in text_of(page, "form-error")
    # The hour's own note is still described too, and no field of ours is named.
    assert "timezone-note send_hour-error" in tag_of(page, "send_hour")
    assert not re.search(r"\b(send_hour|weekly_day|email|topics):", html.unescape(page))
    assert subscriber_count(services) == 0
    # A field that was fine is not marked.
    assert 'aria-invalid="true"' not in tag_of(page, "cadence-daily")


def test_a_settings_form_with_two_bad_entries_says_both_in_the_readers_words(
    client: TestClient, services: Services
) -> None:
    ann = add_subscriber(services, topics="optics")
    before = reload(services, ann.id)
    path = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    answer = submit(client, path, data={"topics": "lasers", "digest_size": "500", "timezone": "Nowhere/Town"})
    assert answer.status_code == 422
    assert text_of(answer.text, "digest_size-error") == "Error: Choose between 1 and 50 papers."
    assert "“Nowhere/Town” is not a time zone we know." in text_of(answer.text, "timezone-error")
    assert "digest-size-hint digest_size-error" in tag_of(answer.text, "digest_size")
    assert 'aria-invalid="true"' in tag_of(answer.text, "timezone")
    assert "digest_size" not in text_of(answer.text, "form-error")
    assert 'value="500"' in answer.text, "what was typed is shown again"
    after = reload(services, ann.id)
    unchanged = (before.topics, before.digest_size, before.timezone)
    assert (after.topics, after.digest_size, after.timezone) == unchanged


# Topics and their counts -------------------------------------------------------------------------------


def test_the_settings_page_says_how_many_recent_papers_mention_each_topic(
    client: TestClient, services: Services
) -> None:
    for title in ("Diffusion models for images", "Diffusion-models for audio", "Sparse attention"):
        add_listing(services, title)
    ann = add_subscriber(services, topics="diffusion models, protein folding")
    page = client.get(f"/preferences/{services.links.preferences_token(ann.public_id)}").text
    matches = text_of(page, "topic-matches")
    assert "diffusion models: 2 papers" in matches
    note = "No recent paper mentions “protein folding” yet: you'll get papers on it once some arrive."
    assert note in matches
    assert "topic-matches" in tag_of(page, "topics")
    assert 'data-matches="/api/topics/matches"' in page


def test_a_form_shown_again_says_which_typed_topic_no_recent_paper_mentions(
    client: TestClient, services: Services
) -> None:
    add_listing(services, "Reinforcement learning for robots")
    answer = submit(
        client, "/", "/subscribe", {"email": "nobody", "topics": "reinforcement learning, protein folding"}
    )
    assert answer.status_code == 422
    matches = text_of(answer.text, "topic-matches")
    assert "reinforcement learning: 1 paper" in matches
    assert "No recent paper mentions “protein folding” yet" in matches


def test_the_hint_gives_examples_and_says_what_typing_shows(client: TestClient) -> None:
    hint = text_of(client.get("/").text, "topics-hint")
    assert "“diffusion models, reinforcement learning”" in hint
    assert "protein folding" not in hint
    assert "how many of them mention each" in hint


def test_suggestions_over_http_have_counts_and_no_fragments(client: TestClient, services: Services) -> None:
    for title in (
        "Graph neural networks using attention",
        "Graph neural networks for molecules",
        "Scaling graph neural networks",
    ):
        add_listing(services, title)
    body = client.get("/api/suggest", params={"q": "graph"}).json()
    assert body["suggestions"] == [{"topic": "graph neural networks", "papers": 3}]


# Unsubscribing: what is kept ---------------------------------------------------------------------------


def test_the_unsubscribe_pages_say_topics_and_votes_are_kept_and_they_are(
    client: TestClient, services: Services
) -> None:
    ann = add_subscriber(services, topics="optics, lasers")
    paper = add_listing(services)
    submit(client, f"/feedback/{services.links.feedback_token(ann.public_id, paper.id, Vote.MORE)}")
    path = f"/unsubscribe/{services.links.unsubscribe_token(ann.public_id)}"
    before = client.get(path)
    kept = "Unsubscribing keeps your topics, settings and votes, with no time limit"
    assert kept in text_of(before.text, "kept-note")
    assert "no button to delete them" in text_of(before.text, "kept-note")

    done = client.post(path, data={"csrf_token": csrf_tokens(before.text)[path]})
    assert done.status_code == 200
    assert kept in text_of(done.text, "kept-note")
    assert reload(services, ann.id).status is SubscriberStatus.UNSUBSCRIBED
    assert kept in text_of(client.get(path).text, "kept-note"), "the page for one already unsubscribed"

    resubscribe = f"{path}/resubscribe"
    back = client.post(resubscribe, data={"csrf_token": csrf_tokens(done.text)[resubscribe]})
    assert back.status_code == 200
    row = reload(services, ann.id)
    assert (row.status, row.topics) == (SubscriberStatus.ACTIVE, ["optics", "lasers"])
    assert votes(services, ann.id) == {paper.id: Vote.MORE}, "where they left off, as the page said"


# One name for votes -------------------------------------------------------------------------------------


def test_votes_are_called_more_like_this_and_less_like_this_on_every_page(
    client: TestClient, services: Services
) -> None:
    ann = add_subscriber(services)
    paper = add_listing(services)
    less = f"/feedback/{services.links.feedback_token(ann.public_id, paper.id, Vote.LESS)}"
    shown = client.get(less)
    saved = submit(client, less)
    [undo] = [a for a in csrf_tokens(saved.text) if "/undo/" in a]
    undo_page = client.get(undo)
    undone = client.post(undo, data={"csrf_token": csrf_tokens(saved.text)[undo]})
    pages = [shown.text, saved.text, undo_page.text, undone.text, client.get("/").text]
    assert "<h1>Less like this</h1>" in shown.text
    assert text_of(saved.text, "vote-label") == "Less like this"
    for page in pages:
        assert not re.search(r"fewer|papers like:|show me", page, re.IGNORECASE)
    assert "“More like this” and “Less like this”" in html.unescape(client.get("/").text)
