"""A reader's whole journey in headless Chromium, against the live app, checked the way a reader sees it:
subscribe, see the first-day preview, confirm from the real email, read the digest email, open a paper,
vote on three papers on the digest's own page, read the merged profile and its explanation, mute a term,
and find the next digest changed by it; then change the schedule and leave.

axe-core (bundled by axe-playwright-python) runs on every page and on the digest email, and the test fails
on any serious or critical violation. Screenshots of each page at desktop and phone width go to
test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from digest.db import transaction
from digest.deliver.day import run_day
from digest.ingest.files import ingest_paths
from digest.models import Digest, DigestItem, Feedback, Listing, Subscriber, SubscriberStatus, Vote, utcnow
from digest.rank.learned import retrain
from digest.subscribers.feedback import record_vote
from digest.subscribers.subscriptions import subscribe
from tests.support.browser import LiveApp, screenshot

pytest_plugins = ["tests.support.browser"]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BAD_IMPACTS = ("serious", "critical")
# What the first day's digest is made from; the second file arrives the next day.
FIRST_DAY_FILES = ("001_", "003_")


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None, f"no {kind} part"
    return str(part.get_content())


def link(text: str, path: str) -> str:
    found = re.search(rf"http://127\.0\.0\.1:\d+/{path}/\S+", text)
    assert found, f"no /{path}/ link in:\n{text[:2000]}"
    return found.group(0)


def accessible(page: Any, name: str) -> None:
    """axe-core on the page as rendered: no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in violations
        if v["impact"] in BAD_IMPACTS
    ]
    assert bad == [], f"axe on {name}: {bad}"


class Journey:
    """One browser page that fails the test on any console error or failed request."""

    def __init__(
        self, chromium: Any, viewport: dict[str, int], timezone_id: str = "UTC", *, javascript: bool = True
    ) -> None:
        self.context = chromium.new_context(
            viewport=viewport, timezone_id=timezone_id, java_script_enabled=javascript
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on(
            "response", lambda r: self.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )

    def open(self, url: str) -> Any:
        response = self.page.goto(url)
        assert response is not None and response.status == 200, (url, response and response.status)
        return self.page

    def close(self) -> None:
        assert self.problems == [], self.problems
        self.context.close()


def look(chromium: Any, url: str, name: str) -> None:
    """The page at both widths: screenshots, axe, and no sideways scrolling on the phone."""
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        journey = Journey(chromium, viewport)
        page = journey.open(url)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is wider than the {label} screen by {overflow}px"
        accessible(page, f"{name} ({label})")
        screenshot(page, f"{name}-{label}")
        journey.close()


def digest_titles(services: Any, subscriber_id: int, digest_date: Any) -> list[str]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(Listing.title)
                .join(DigestItem, DigestItem.listing_id == Listing.id)
                .join(Digest, Digest.id == DigestItem.digest_id)
                .where(
                    Digest.subscriber_id == subscriber_id,
                    Digest.digest_date == digest_date,
                    DigestItem.section == "picks",
                )
            )
        )


def mentions(label: str, title: str) -> bool:
    words = [w for w in re.findall(r"[a-z0-9]+", label.lower()) if len(w) > 2]
    lowered = title.lower()
    return bool(words) and all(w.rstrip("s") in lowered for w in words)


def test_a_reader_journey_in_a_real_browser(
    live_app: LiveApp, chromium: Any, shared_listings: list[Path]
) -> None:
    services, sink = live_app.services, live_app.sink
    first_day = [p for p in shared_listings if p.name.startswith(FIRST_DAY_FILES)]
    next_day = [p for p in shared_listings if p not in first_day]
    assert first_day and next_day
    ingest_paths(services.sessions, first_day, now=utcnow() - timedelta(hours=2))
    email = "reader@example.org"
    topics = "diffusion models, image generation"

    # Subscribe, with topic suggestions while typing and the browser's time zone filled in.
    look(chromium, live_app.url + "/", "subscribe")
    journey = Journey(chromium, DESKTOP, timezone_id="America/Chicago")
    page = journey.open(live_app.url + "/")
    page.fill("#email", email)
    page.type("#topics", "diffus", delay=20)
    options = page.locator("#topic-suggestions [role=option]")
    options.first.wait_for()
    suggestions = options.all_inner_texts()
    assert any(s.startswith("diffusion models") for s in suggestions), suggestions
    accessible(page, "subscribe with suggestions")
    screenshot(page, "subscribe-suggestions-desktop")
    options.filter(has_text=re.compile(r"^diffusion models\b")).first.click()
    assert "diffusion models" in page.input_value("#topics")
    page.fill("#topics", topics)
    assert page.input_value("#timezone") == "America/Chicago"  # read from the browser by the page's script
    page.select_option("#send_hour", "7")
    page.click("#subscribe")
    page.wait_for_load_state()
    assert "inbox" in page.inner_text("main").lower()
    accessible(page, "check your inbox")
    screenshot(page, "check-inbox-desktop")
    journey.close()

    # The confirmation email's link: a first-day preview of the digest, then the confirm button.
    (confirmation,) = sink.to(email)
    confirm_url = link(body(confirmation, "plain"), "confirm")
    look(chromium, confirm_url, "confirm")
    journey = Journey(chromium, PHONE)
    page = journey.open(confirm_url)
    preview = page.locator("#first-day-preview li")
    assert preview.count() == 5, page.inner_text("#first-day-preview")
    assert "diffusion" in page.inner_text("#first-day-preview").lower()
    page.click("#confirm")
    page.wait_for_load_state()
    assert "subscribed" in page.inner_text("main").lower()
    assert page.locator("#first-day-preview form[data-vote]").count() == 5
    accessible(page, "subscribed, with the preview to vote on")
    screenshot(page, "confirmed-phone")
    journey.close()
    with services.sessions() as session:
        reader = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        assert reader.status is SubscriberStatus.ACTIVE
        assert (reader.send_hour, reader.timezone) == (7, "America/Chicago")
        reader_id = reader.id
    # A twin with the same topics and (below) the same votes, who will not mute anything: what the
    # reader's next digest would have been without the mute.
    with transaction(services.sessions) as session:
        twin_id = subscribe(session, "twin@example.org", topics, confirmed=True).subscriber_id

    # Today's digest arrives; look at it as a mail client would, at 600 px and at phone width.
    from workers.tasks import CeleryDispatcher

    today = utcnow().date()
    summary = run_day(services, today, CeleryDispatcher())
    assert summary.sent == 2, summary
    digest_mail = next(m for m in sink.to(email) if m is not confirmation)
    html, text = body(digest_mail, "html"), body(digest_mail, "plain")
    for label, width in (("600", 600), ("phone", PHONE["width"])):
        email_page = chromium.new_page(viewport={"width": width, "height": 900})
        email_page.set_content(html)
        overflow = email_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the email is wider than {width}px by {overflow}px"
        accessible(email_page, f"digest email ({label})")
        screenshot(email_page, f"email-digest-{label}")
        email_page.close()

    # Open a paper from the email. A title leads to the paper's own page when it has one, else to the
    # paper's page here. arXiv is on the public internet, which this machine cannot reach, so the browser
    # is answered for arxiv.org by a stand-in page; what is checked there is where the title leads.
    email_page = chromium.new_page(viewport=DESKTOP)
    opened: list[str] = []

    def stand_in(route: Any) -> None:
        opened.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<title>arXiv stand-in</title><h1>abs</h1>")

    email_page.route(re.compile(r"https://arxiv\.org/.*"), stand_in)
    email_page.set_content(html)
    titles = email_page.locator("h2 a")
    hrefs = titles.evaluate_all("links => links.map(a => a.href)")
    assert len(hrefs) >= 5 and all(
        re.fullmatch(r"https://arxiv\.org/abs/[\w./-]+", h) or h.startswith(f"{live_app.url}/papers/")
        for h in hrefs
    ), hrefs
    first_title = titles.first.inner_text()
    titles.first.click()
    email_page.wait_for_url(hrefs[0])
    if hrefs[0].startswith(live_app.url):
        assert email_page.locator("h1").inner_text() == first_title
        assert email_page.locator("#paper-abstract").inner_text()
        paper_url = hrefs[0]
    else:
        assert opened == [hrefs[0]]
        with services.sessions() as session:
            found = session.scalars(select(Listing.id).where(Listing.url == hrefs[0])).first()
        assert found is not None
        paper_url = f"{live_app.url}/papers/{found}"
    email_page.close()
    look(chromium, paper_url, "paper")

    # "View in browser": the digest as a page of the site. Vote on three papers there without leaving it.
    digest_url = link(text, "archive")
    journey = Journey(chromium, DESKTOP)
    page = journey.open(digest_url)
    cards = page.locator("ol.papers").first.locator("li.paper-card")
    assert cards.count() >= 4
    for position, button in ((0, "More like this"), (1, "More like this"), (2, "Less like this")):
        card = cards.nth(position)
        card.get_by_role("button", name=button).click()
        card.get_by_role("button", name=button, pressed=True).wait_for()
        assert "Saved" in card.locator(".vote-state").inner_text()
    assert page.url == digest_url  # never left the page
    # Undo the last vote from its own Undo button, then cast it again.
    cards.nth(2).locator(".vote-undo").click()
    cards.nth(2).get_by_text("Undone.").wait_for()
    assert cards.nth(2).get_by_role("button", pressed=True).count() == 0
    cards.nth(2).get_by_role("button", name="Less like this").click()
    cards.nth(2).get_by_role("button", name="Less like this", pressed=True).wait_for()
    accessible(page, "digest page after votes")
    screenshot(page, "digest-page-voted-desktop")
    journey.close()
    with services.sessions() as session:
        votes = dict(
            session.execute(
                select(Feedback.listing_id, Feedback.vote).where(Feedback.subscriber_id == reader_id)
            ).all()
        )
    assert sorted(votes.values()) == [-1, 1, 1], votes
    look(chromium, digest_url, "digest-page")

    # Without JavaScript the same buttons are plain forms: the page comes back with the vote and an undo.
    journey = Journey(chromium, PHONE, javascript=False)
    page = journey.open(digest_url)
    page.locator("li.paper-card").nth(3).get_by_role("button", name="Less like this").click()
    page.wait_for_load_state()
    assert page.locator("#vote-notice").count() == 1 and page.locator("#undo-vote").count() == 1
    screenshot(page, "digest-page-no-script-phone")
    page.click("#undo-vote")
    page.wait_for_load_state()
    assert "is undone" in page.inner_text("#vote-notice")
    journey.close()

    # The twin votes the same way, so only the mute below tells the two apart.
    with transaction(services.sessions) as session:
        twin = session.get(Subscriber, twin_id)
        assert twin is not None
        for voted_id, vote in votes.items():
            record_vote(session, twin.public_id, voted_id, Vote(vote))
    retrain(services, twin_id)

    # Preferences: the merged profile, the explanation, and a mute.
    preferences_url = link(text, "preferences")
    journey = Journey(chromium, DESKTOP)
    page = journey.open(preferences_url)
    explanation = page.inner_text("#how-it-works")
    assert "1 more vote until your personal model starts" in explanation, explanation
    assert "never blocks a topic" in explanation
    likes = [t.strip() for t in page.locator("#pulling-terms .term").all_inner_texts()]
    assert any(t.startswith("diffusion models") and "(your topic)" in t for t in likes), likes
    labels = [t.replace("(your topic)", "").strip().lower() for t in likes]
    assert len(labels) == len(set(labels)), labels
    assert not {"diffusion", "models", "model", "based", "existing"} & set(labels), labels
    assert page.locator("#pushing-terms li").count() > 0
    # The term to mute: a learned one that tomorrow's papers use in their titles, else the typed topic.
    ingest_paths(services.sessions, next_day, now=utcnow())
    with services.sessions() as session:
        tomorrow_titles = list(
            session.scalars(
                select(Listing.title).where(Listing.first_seen_at > utcnow() - timedelta(minutes=30))
            )
        )
    learned = [t for t in likes if "(your topic)" not in t]
    frequent = [t for t in learned if sum(mentions(t, title) for title in tomorrow_titles) >= 3]
    muted = frequent[0] if frequent else "diffusion models"
    page.locator("#pulling-terms li").filter(has_text=muted).first.get_by_role(
        "button", name=f"Mute {muted}"
    ).click()
    page.wait_for_load_state()
    assert f"Muted “{muted}”" in page.inner_text("#learned-notice")
    assert muted in page.inner_text("#adjusted-terms")
    accessible(page, "preferences after a mute")
    screenshot(page, "preferences-muted-desktop")
    journey.close()
    look(chromium, preferences_url, "preferences")

    # The next digest reflects the mute: fewer of its papers on the muted term than the twin's.
    tomorrow = today + timedelta(days=1)
    assert run_day(services, tomorrow, CeleryDispatcher()).sent == 2
    reader_titles = digest_titles(services, reader_id, tomorrow)
    twin_titles = digest_titles(services, twin_id, tomorrow)
    on_muted = sum(mentions(muted, t) for t in reader_titles)
    twin_on_muted = sum(mentions(muted, t) for t in twin_titles)
    assert twin_on_muted >= 1 and on_muted < twin_on_muted, (muted, reader_titles, twin_titles)

    # A schedule change from the settings form.
    journey = Journey(chromium, DESKTOP)
    page = journey.open(preferences_url)
    page.select_option("#send_hour", "9")
    page.select_option("#timezone", "Europe/Berlin")
    page.click("#save")
    page.wait_for_load_state()
    assert "Europe/Berlin" in page.inner_text("#schedule-text")
    journey.close()
    with services.sessions() as session:
        reader = session.get(Subscriber, reader_id)
        assert reader is not None and reader.next_due_at is not None
        assert reader.next_due_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 9

    # The feedback link in the email still works in one click, and leads back to the digest's page.
    feedback_url = link(text, "feedback")
    journey = Journey(chromium, PHONE)
    page = journey.open(feedback_url)
    page.get_by_text("Thanks, noted").wait_for()
    assert page.locator("#digest-link").count() == 1
    accessible(page, "feedback saved")
    screenshot(page, "feedback-saved-phone")
    journey.close()
    look(
        chromium,
        link(text, "archive").split("/archive/")[0] + "/archive/" + _archive_list_token(services, reader_id),
        "archive",
    )
    look(chromium, preferences_url.replace("/preferences/", "/preferences/", 1) + "/preview", "preview")

    # Leave, in one click from the email's footer link.
    look(chromium, link(text, "unsubscribe"), "unsubscribe")
    journey = Journey(chromium, PHONE)
    page = journey.open(link(text, "unsubscribe"))
    page.click("#unsubscribe")
    page.wait_for_load_state()
    assert "unsubscribed" in page.inner_text("main").lower()
    accessible(page, "unsubscribed")
    screenshot(page, "unsubscribed-phone")
    journey.close()
    with services.sessions() as session:
        reader = session.get(Subscriber, reader_id)
        assert reader is not None and reader.status is SubscriberStatus.UNSUBSCRIBED


def _archive_list_token(services: Any, subscriber_id: int) -> str:
    with services.sessions() as session:
        reader = session.get(Subscriber, subscriber_id)
        assert reader is not None
        return str(services.links.archive_token(reader.public_id))
