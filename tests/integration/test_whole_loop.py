"""The daily loop end to end on the embedded default, through the same doors a user and an operator use:
the web app for subscribing, confirming and voting, the `digest` CLI for ingesting and running, Celery tasks
run eagerly, and a real SMTP server receiving the emails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import select

from digest.cli import main
from digest.db import upgrade
from digest.ingest.formats import ParsedListing, SourceLine, parse_listing_text
from digest.models import Listing
from digest.services import Services
from digest.web.app import create_app
from tests.support.env import SmtpSink, make_settings
from workers.app import bind
from workers.tasks import CeleryDispatcher

# A paper of the text part: rank and title, its link, then its reason, meta and PDF lines, then the votes.
ITEM = re.compile(
    r"^(?P<rank>\d+)\. (?P<title>.+)\n(?:   (?P<url>https?://\S+)\n)?"
    r"(?:   (?!More like this: |Less like this: ).+\n)*"
    r"   More like this: (?P<more>\S+)\n   Less like this: (?P<less>\S+)$",
    re.MULTILINE,
)
TOPICS = "diffusion models, image generation"


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the email has no text/plain part"
    return str(part.get_content()).replace("\r\n", "\n")


def items_of(message: EmailMessage) -> list[dict[str, str]]:
    return [m.groupdict() for m in ITEM.finditer(text_part(message))]


def digests_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    return [m for m in sink.to(address) if "confirm" not in str(m["Subject"]).lower()]


def csrf_token(page: str) -> str:
    """Forms carry a token tied to this client's cookie; a test posts it back like a browser would."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no form token"
    return match.group(1)


def path_of(url: str) -> str:
    assert url.startswith("https://digest.example.org/"), url
    return url.removeprefix("https://digest.example.org")


class Loop:
    def __init__(self, tmp_path: Path, sink: SmtpSink) -> None:
        self.env = {
            "DIGEST_DATA_DIR": str(tmp_path / "data"),
            "DIGEST_BASE_URL": "https://digest.example.org",
            "DIGEST_FROM": "Paper digest <digest@example.org>",
            "DIGEST_SECRET_KEY": "whole-loop-secret-key-0123456789",
            "DIGEST_SMTP_URL": sink.url,
        }
        self.sink = sink
        self.services = Services.build(make_settings(tmp_path, **self.env))
        self.web = TestClient(
            create_app(self.services, CeleryDispatcher()), base_url="https://digest.example.org"
        )

    def cli(self, *args: str) -> Result:
        result = CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        bind(self.services)  # the CLI bound the Celery app to its own services; the web app keeps ours
        return result

    def subscribe_and_confirm(self, email: str) -> None:
        home = self.web.get("/")
        response = self.web.post(
            "/subscribe", data={"email": email, "topics": TOPICS, "csrf_token": csrf_token(home.text)}
        )
        assert response.status_code == 200, response.text
        (confirmation,) = self.sink.to(email)
        confirm_url = re.search(r"https://\S+/confirm/\S+", text_part(confirmation))
        assert confirm_url, text_part(confirmation)
        path = path_of(confirm_url.group(0))
        page = self.web.get(path)
        assert page.status_code == 200
        confirmed = self.web.post(path, data={"csrf_token": csrf_token(page.text)})
        assert confirmed.status_code == 200
        assert "subscribed" in confirmed.text.lower()


@pytest.fixture
def loop(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[Loop]:
    the_loop = Loop(tmp_path, smtp_sink)
    upgrade(the_loop.services.engine)
    bind(the_loop.services)
    try:
        yield the_loop
    finally:
        the_loop.services.close()


def most_followed_up(items: list[dict[str, str]], later_file: Path, loop: Loop) -> dict[str, str]:
    with later_file.open(encoding="utf-8") as fh:
        lines = (SourceLine(n, text.rstrip("\n")) for n, text in enumerate(fh, 1))
        later = [
            f"{p.title}. {p.abstract}" for p in parse_listing_text(lines) if isinstance(p, ParsedListing)
        ]
    with loop.services.sessions() as session:
        shown = {t: f"{t}. {a}" for t, a in session.execute(select(Listing.title, Listing.abstract))}
    vectorizer = TfidfVectorizer(stop_words="english").fit(later + list(shown.values()))
    tomorrow = vectorizer.transform(later)

    def follow_up(item: dict[str, str]) -> float:
        similarity = np.asarray((tomorrow @ vectorizer.transform([shown[item["title"]]]).T).todense()).ravel()
        return float(np.sort(similarity)[-5:].mean())

    return max(items, key=follow_up)


def ranked_similarity(liked_title: str, titles: list[str], corpus: dict[str, str]) -> float:
    """How much a ranked list leans toward the liked paper: similarity discounted by rank, as in DCG."""
    vectorizer = TfidfVectorizer(stop_words="english").fit(corpus.values())
    liked = vectorizer.transform([corpus[liked_title]])
    others = vectorizer.transform([corpus[t] for t in titles])
    similarity = np.asarray((others @ liked.T).todense()).ravel()
    return float(sum(s / np.log2(rank + 1) for rank, s in enumerate(similarity, start=1)))


def test_subscribe_confirm_ingest_run_vote_and_the_liked_topic_rises(
    loop: Loop, shared_listings: list[Path]
) -> None:
    liker, control = "liker@example.org", "control@example.org"
    loop.subscribe_and_confirm(liker)
    loop.subscribe_and_confirm(control)

    first_files, later_file = shared_listings[:2], shared_listings[2]
    assert "new" in loop.cli("ingest", *map(str, first_files)).output
    day_one = loop.cli("run", "--date", "2026-11-23").output
    assert "2 sent" in day_one, day_one

    (liker_day_one,) = digests_to(loop.sink, liker)
    (control_day_one,) = digests_to(loop.sink, control)
    assert liker_day_one["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    items = items_of(liker_day_one)
    assert len(items) == 10
    assert [i["title"] for i in items] == [i["title"] for i in items_of(control_day_one)]

    # The liker asks for more of a lower-ranked paper that tomorrow's listings have neighbours of, so
    # that the vote has something to pull up.
    liked = most_followed_up(items[3:], later_file, loop)
    feedback_page = loop.web.get(path_of(liked["more"]))
    assert feedback_page.status_code == 200
    voted = loop.web.post(path_of(liked["more"]), data={"csrf_token": csrf_token(feedback_page.text)})
    assert voted.status_code == 200

    loop.cli("ingest", str(later_file))
    rerun = loop.cli("run", "--date", "2026-11-23").output
    assert "0 sent" in rerun and "2 already sent" in rerun, rerun
    day_two = loop.cli("run", "--date", "2026-11-24").output
    assert "2 sent" in day_two, day_two

    liker_digests = digests_to(loop.sink, liker)
    control_digests = digests_to(loop.sink, control)
    assert len(liker_digests) == len(control_digests) == 2
    liker_titles = [i["title"] for i in items_of(liker_digests[1])]
    control_titles = [i["title"] for i in items_of(control_digests[1])]
    assert not set(liker_titles) & {i["title"] for i in items}, "a paper was sent twice"
    assert liker_titles != control_titles, "the vote changed nothing"

    with loop.services.sessions() as session:
        corpus = {t: f"{t}. {a}" for t, a in session.execute(select(Listing.title, Listing.abstract))}
    assert ranked_similarity(liked["title"], liker_titles, corpus) > ranked_similarity(
        liked["title"], control_titles, corpus
    )
