"""A sent digest as a page of the site: every paper opens, every paper can be voted on there, with undo,
by plain form posts or by the page's script; and the profile a reader can steer from the settings page."""

from __future__ import annotations

import html
import re
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient

from digest.db import transaction
from digest.ingest.files import ingest_paths
from digest.models import Listing, Vote
from digest.services import Services
from tests.support.web import (
    BASE_URL,
    RecordingDispatcher,
    add_digest,
    add_listing,
    add_subscriber,
    csrf_tokens,
    reload,
    votes,
)


def _digest(services: Services, n: int = 3) -> tuple[str, list[Listing], str]:
    ann = add_subscriber(services)
    papers = [
        add_listing(services, f"Paper {i}", url=f"https://arxiv.org/abs/2601.0000{i}") for i in range(n)
    ]
    digest_id = add_digest(services, ann.id, [p.id for p in papers], date(2026, 11, 20))
    path = f"/archive/{services.links.archive_token(ann.public_id, digest_id)}"
    return ann.public_id, papers, path


def _vote_form(page: str) -> tuple[str, str]:
    tokens = csrf_tokens(page)
    action = next(a for a in tokens if a.endswith("/vote"))
    return action, tokens[action]


def test_three_votes_on_one_page_without_javascript(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher
) -> None:
    public_id, papers, path = _digest(services)
    page = client.get(path)
    assert page.status_code == 200
    assert page.text.count('aria-pressed="false"') == 2 * len(papers)
    action, token = _vote_form(page.text)
    for paper, choice in zip(papers, ("more", "less", "more"), strict=True):
        answer = client.post(action, data={"csrf_token": token, "listing_id": str(paper.id), "vote": choice})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith(f"{path}?saved=")
        assert answer.headers["location"].endswith(f"#paper-{paper.id}")
    subscriber_id = reload_id(services, public_id)
    assert votes(services, subscriber_id) == {
        papers[0].id: Vote.MORE,
        papers[1].id: Vote.LESS,
        papers[2].id: Vote.MORE,
    }
    assert dispatcher.retrains == [subscriber_id] * 3

    # The page after the last vote: every vote shown, a notice naming the paper, and an undo that works.
    shown = client.get(answer.headers["location"].split("#")[0])
    assert shown.text.count('aria-pressed="true"') == 3 and "You have voted on 3 of these 3" in shown.text
    assert "Saved your vote on “<a" in shown.text and "Paper 2" in shown.text
    tokens = csrf_tokens(shown.text)
    undo_action = next(a for a in tokens if a.endswith("/undo"))
    undo_value = html.unescape(re.search(r'name="undo" value="([^"]+)"', shown.text).group(1))  # type: ignore[union-attr]
    undone = client.post(undo_action, data={"csrf_token": tokens[undo_action], "undo": undo_value})
    assert undone.status_code == 303 and "undone=" in undone.headers["location"]
    assert papers[2].id not in votes(services, subscriber_id)
    assert "is undone" in client.get(undone.headers["location"].split("#")[0]).text

    # Pressing a pressed button takes the vote back.
    again = client.get(path)
    assert 'value="clear" class="vote-more" aria-pressed="true"' in again.text
    client.post(action, data={"csrf_token": token, "listing_id": str(papers[0].id), "vote": "clear"})
    assert papers[0].id not in votes(services, subscriber_id)


def reload_id(services: Services, public_id: str) -> int:
    with services.sessions() as session:
        from digest.subscribers.subscriptions import find_by_public_id

        found = find_by_public_id(session, public_id)
        assert found is not None
        return found.id


def test_the_script_gets_json_and_an_undo_token(client: TestClient, services: Services) -> None:
    public_id, papers, path = _digest(services, 2)
    action, token = _vote_form(client.get(path).text)
    answer = client.post(
        action,
        data={"csrf_token": token, "listing_id": str(papers[1].id), "vote": "less"},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["vote"], body["words"], body["title"]) == ("less", "Less like this", "Paper 1")
    undo_action = action.removesuffix("/vote") + "/undo"
    undone = client.post(
        undo_action,
        data={"csrf_token": csrf_tokens(client.get(path).text)[undo_action], "undo": body["undo"]},
        headers={"Accept": "application/json"},
    )
    assert undone.status_code == 200 and undone.json()["vote"] is None
    assert votes(services, reload_id(services, public_id)) == {}


def test_page_votes_refuse_what_the_digest_did_not_carry(client: TestClient, services: Services) -> None:
    public_id, papers, path = _digest(services, 1)
    stranger = add_listing(services, "Not in this digest")
    action, token = _vote_form(client.get(path).text)
    outside = client.post(action, data={"csrf_token": token, "listing_id": str(stranger.id), "vote": "more"})
    assert outside.status_code == 404
    nonsense = client.post(
        action, data={"csrf_token": token, "listing_id": str(papers[0].id), "vote": "maybe"}
    )
    assert nonsense.status_code == 422 and "More like this" in nonsense.text
    no_token = client.post(action, data={"listing_id": str(papers[0].id), "vote": "more"})
    assert no_token.status_code == 403
    assert votes(services, reload_id(services, public_id)) == {}


def test_a_paper_without_a_link_has_its_own_page(client: TestClient, services: Services) -> None:
    ann = add_subscriber(services)
    bare = add_listing(services, "A paper with no URL")
    with transaction(services.sessions) as session:
        row = session.get(Listing, bare.id)
        assert row is not None
        row.authors = ["Ada Lovelace", "Alan Turing"]
        row.arxiv_id = "2601.01234"
        row.categories = ["cs.LG"]
    digest_id = add_digest(services, ann.id, [bare.id], date(2026, 11, 20))
    page = client.get(f"/archive/{services.links.archive_token(ann.public_id, digest_id)}").text
    assert f'<a href="{BASE_URL}/papers/{bare.id}" rel="noopener noreferrer">A paper with no URL</a>' in page
    paper = client.get(f"/papers/{bare.id}")
    assert paper.status_code == 200
    assert (
        "Ada Lovelace, Alan Turing" in paper.text
        and "arXiv:2601.01234" in paper.text
        and "cs.LG" in paper.text
    )
    assert 'href="https://arxiv.org/pdf/2601.01234"' in paper.text
    assert "https://www.semanticscholar.org/search?q=A+paper+with+no+URL" in paper.text
    assert client.get("/papers/999999").status_code == 404
    assert client.get("/papers/abc").status_code == 404


def test_the_feedback_page_leads_to_the_rest_of_the_digest(client: TestClient, services: Services) -> None:
    public_id, papers, path = _digest(services, 10)
    link = services.links.feedback_url(public_id, papers[4].id, Vote.MORE).removeprefix(BASE_URL)
    landing = client.get(link)
    saved = client.post(link, data={"csrf_token": csrf_tokens(landing.text)[link]})
    assert saved.status_code == 200
    assert (
        f'<a href="{path}" id="digest-link" class="lead">Vote on the other 9 papers of this digest</a>'
        in saved.text
    )


def test_mute_boost_lift_reset_and_undo_from_the_settings_page(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher, shared_listings: list[Path]
) -> None:
    ingest_paths(services.sessions, shared_listings)
    ann = add_subscriber(services, topics="LoRA, diffusion models")
    with services.sessions() as session:
        lora = [i for i, t in session.query(Listing.id, Listing.title).all() if "lora" in t.lower()][:3]
    from digest.rank.learned import current_space

    current_space(services)
    path = f"/preferences/{services.links.preferences_token(ann.public_id)}"
    page = client.get(path)
    assert page.status_code == 200
    assert "4 more votes until your personal model starts" in page.text
    assert '>LoRA <span class="hint">(your topic)</span>' in page.text
    steer = f"{path}/terms"
    token = csrf_tokens(page.text)[steer]
    muted = client.post(steer, data={"csrf_token": token, "term": "diffusion models", "action": "mute"})
    assert muted.status_code == 200 and "Muted “diffusion models”" in muted.text
    assert reload(services, ann.id).term_adjustments["diffusion models"]["action"] == "mute"  # type: ignore[index]
    assert 'id="adjusted-terms"' in muted.text
    unknown = client.post(steer, data={"csrf_token": token, "term": "no such thing", "action": "boost"})
    assert unknown.status_code == 422 and "is not in your profile" in unknown.text
    lifted = client.post(steer, data={"csrf_token": token, "term": "diffusion models", "action": "lift"})
    assert lifted.status_code == 200 and not reload(services, ann.id).term_adjustments

    for listing_id in lora:
        client.post(
            services.links.feedback_url(ann.public_id, listing_id, Vote.MORE).removeprefix(BASE_URL),
            data={
                "csrf_token": csrf_tokens(
                    client.get(
                        services.links.feedback_url(ann.public_id, listing_id, Vote.MORE).removeprefix(
                            BASE_URL
                        )
                    ).text
                )[services.links.feedback_url(ann.public_id, listing_id, Vote.MORE).removeprefix(BASE_URL)]
            },
        )
    assert len(votes(services, ann.id)) == 3
    assert "1 more vote until your personal model starts" in client.get(path).text
    reset = client.post(
        f"{path}/reset", data={"csrf_token": csrf_tokens(client.get(path).text)[f"{path}/reset"]}
    )
    assert reset.status_code == 200 and "Forgot your 3 votes" in reset.text and votes(services, ann.id) == {}
    back = client.post(
        f"{path}/reset/undo", data={"csrf_token": csrf_tokens(reset.text)[f"{path}/reset/undo"]}
    )
    assert back.status_code == 200 and "Your 3 votes are back" in back.text
    assert len(votes(services, ann.id)) == 3 and reload(services, ann.id).reset_votes is None


def test_a_new_reader_sees_and_votes_on_the_first_day_preview(
    client: TestClient, services: Services, dispatcher: RecordingDispatcher, tmp_path: Path
) -> None:
    from datetime import timedelta

    from digest.models import utcnow
    from tests.support.daily import LORA, OTHER, ingest

    ingest(services, tmp_path, LORA + OTHER, utcnow() - timedelta(hours=3))
    pending = add_subscriber(services, "new@example.org", topics="LoRA", confirmed=False)
    confirm_path = services.links.confirm_url(pending.public_id, pending.confirm_nonce).removeprefix(BASE_URL)
    before = client.get(confirm_path)
    assert before.status_code == 200 and "Here is what today's digest would have been" in before.text
    assert all(title in before.text for title, _ in LORA) and "Protein folding" not in before.text

    confirmed = client.post(confirm_path, data={"csrf_token": csrf_tokens(before.text)[confirm_path]})
    assert confirmed.status_code == 200 and 'id="first-day-preview"' in confirmed.text
    action, token = _vote_form(confirmed.text)
    assert action.endswith("/preview/vote")
    with services.sessions() as session:
        first = session.query(Listing).filter(Listing.title == LORA[0][0]).one()
    answer = client.post(action, data={"csrf_token": token, "listing_id": str(first.id), "vote": "more"})
    assert answer.status_code == 303 and "/preview?saved=" in answer.headers["location"]
    assert votes(services, pending.id) == {first.id: Vote.MORE} and dispatcher.retrains == [pending.id]
    page = client.get(answer.headers["location"].split("#")[0])
    assert (
        page.status_code == 200
        and page.text.count('aria-pressed="true"') == 1
        and 'id="undo-vote"' in page.text
    )


def test_a_topic_nothing_matches_says_so_on_the_preview(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    from datetime import timedelta

    from digest.models import utcnow
    from tests.support.daily import LORA, ingest

    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=3))
    ann = add_subscriber(services, topics="quantum gravity")
    page = client.get(f"/preferences/{services.links.preferences_token(ann.public_id)}/preview")
    assert page.status_code == 200 and 'id="preview-empty"' in page.text
