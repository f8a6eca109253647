"""A subscriber's whole journey in headless Chromium, against the live app: subscribe, confirm from the real
email, edit preferences, open a digest in the archive, vote both ways, see what was learned change, leave.

Screenshots of every page (desktop and phone width) and of the digest email at 600 px and phone width go
to test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from digest.deliver.day import run_day
from digest.ingest.files import ingest_paths
from digest.models import Feedback, Subscriber, SubscriberStatus, utcnow
from tests.support.browser import LiveApp, screenshot

pytest_plugins = ["tests.support.browser"]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None, f"no {kind} part"
    return str(part.get_content())


def link(text: str, path: str) -> str:
    found = re.search(rf"http://127\.0\.0\.1:\d+/{path}/\S+", text)
    assert found, f"no /{path}/ link in:\n{text[:2000]}"
    return found.group(0)


class Journey:
    """One browser page that fails the test on any console error or failed request."""

    def __init__(self, chromium: Any, viewport: dict[str, int], timezone_id: str = "UTC") -> None:
        self.context = chromium.new_context(viewport=viewport, timezone_id=timezone_id)
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


def shoot_both(chromium: Any, url: str, name: str) -> None:
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        journey = Journey(chromium, viewport)
        journey.open(url)
        screenshot(journey.page, f"{name}-{label}")
        journey.close()


def test_a_subscriber_journey_in_a_real_browser(
    live_app: LiveApp, chromium: Any, shared_listings: list[Path]
) -> None:
    services, sink = live_app.services, live_app.sink
    ingest_paths(services.sessions, shared_listings, now=utcnow() - timedelta(hours=2))
    email = "reader@example.org"

    # Subscribe, with topic suggestions while typing and the browser's time zone filled in.
    journey = Journey(chromium, DESKTOP, timezone_id="America/Chicago")
    page = journey.open(live_app.url + "/")
    page.fill("#email", email)
    page.type("#topics", "diffus", delay=20)
    options = page.locator("#topic-suggestions [role=option]")
    options.first.wait_for()
    suggestions = options.all_inner_texts()
    assert "diffusion models" in suggestions, suggestions
    screenshot(page, "subscribe-suggestions-desktop")
    options.filter(has_text=re.compile(r"^diffusion models$")).click()
    assert "diffusion models" in page.input_value("#topics")
    page.fill("#topics", page.input_value("#topics").rstrip(", ") + ", image generation")
    assert page.input_value("#timezone") == "America/Chicago"  # read from the browser by the page's script
    page.select_option("#send_hour", "7")
    screenshot(page, "subscribe-filled-desktop")
    page.click("#subscribe")
    page.wait_for_load_state()
    assert "inbox" in page.inner_text("main").lower()
    screenshot(page, "check-inbox-desktop")
    journey.close()
    shoot_both(chromium, live_app.url + "/", "subscribe")

    # Confirm from the link in the real email.
    (confirmation,) = sink.to(email)
    journey = Journey(chromium, PHONE)
    page = journey.open(link(body(confirmation, "plain"), "confirm"))
    screenshot(page, "confirm-phone")
    page.click("#confirm")
    page.wait_for_load_state()
    assert "subscribed" in page.inner_text("main").lower()
    screenshot(page, "confirmed-phone")
    journey.close()
    with services.sessions() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        assert subscriber.status is SubscriberStatus.ACTIVE
        assert (subscriber.send_hour, subscriber.timezone) == (7, "America/Chicago")
        subscriber_id = subscriber.id

    # Today's digest arrives; look at it as a mail client would, at 600 px and at phone width.
    from workers.tasks import CeleryDispatcher

    summary = run_day(services, utcnow().date(), CeleryDispatcher())
    assert summary.sent == 1, summary
    digest_mail = next(m for m in sink.to(email) if m is not confirmation)
    html = body(digest_mail, "html")
    text = body(digest_mail, "plain")
    for label, width in (("600", 600), ("phone", 375)):
        email_page = chromium.new_page(viewport={"width": width, "height": 900})
        email_page.set_content(html)
        overflow = email_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the email is wider than {width}px by {overflow}px"
        screenshot(email_page, f"email-digest-{label}")
        email_page.close()

    # Preferences: what was learned before any vote, then a schedule change.
    preferences_url = link(text, "preferences")
    journey = Journey(chromium, DESKTOP)
    page = journey.open(preferences_url)
    pulling_before = page.inner_text("#pulling-terms")
    assert "diffusion" in pulling_before.lower()
    page.select_option("#send_hour", "9")
    page.select_option("#timezone", "Europe/Berlin")
    page.fill("#digest_size", "5")
    page.click("#save")
    page.wait_for_load_state()
    assert "Europe/Berlin" in page.inner_text("#schedule-text")
    screenshot(page, "preferences-saved-desktop")
    journey.close()
    with services.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        assert (subscriber.send_hour, subscriber.timezone, subscriber.digest_size) == (9, "Europe/Berlin", 5)
        assert subscriber.next_due_at is not None
        local = subscriber.next_due_at.astimezone(ZoneInfo("Europe/Berlin"))
        assert local.hour == 9

    # The digest in the browser, from the email's "View in browser" link; vote both ways from there.
    journey = Journey(chromium, DESKTOP)
    page = journey.open(link(text, "archive"))
    screenshot(page, "archive-digest-desktop")
    more_links = page.eval_on_selector_all("a[href*='/feedback/']", "els => els.map(e => e.href)")
    assert len(more_links) >= 4, more_links
    journey.close()
    shoot_both(chromium, link(text, "archive"), "archive-digest")
    more_like, less_like = more_links[0], more_links[3]
    for url, name in ((more_like, "more"), (less_like, "less")):
        journey = Journey(chromium, PHONE)
        page = journey.open(url)
        # In a browser the page's script presses the button itself: one click in the email is one vote,
        # while a mail scanner that only fetches the link changes nothing.
        page.get_by_text("Thanks, noted").wait_for()
        screenshot(page, f"feedback-{name}-saved-phone")
        journey.close()
    with services.sessions() as session:
        votes = sorted(
            v
            for (v,) in session.execute(select(Feedback.vote).where(Feedback.subscriber_id == subscriber_id))
        )
    assert votes == [-1, 1]

    # What was learned now includes the liked and disliked papers' terms, and each vote can be undone.
    journey = Journey(chromium, DESKTOP)
    page = journey.open(preferences_url)
    pulling_after = page.inner_text("#pulling-terms")
    assert pulling_after != pulling_before
    assert page.locator("#pushing-terms li").count() > 0
    assert page.locator("#vote-history li").count() == 2
    screenshot(page, "preferences-learned-desktop")
    journey.close()
    shoot_both(chromium, preferences_url, "preferences")

    # Leave, in one click from the email's footer link.
    journey = Journey(chromium, PHONE)
    page = journey.open(link(text, "unsubscribe"))
    screenshot(page, "unsubscribe-phone")
    page.click("#unsubscribe")
    page.wait_for_load_state()
    assert "unsubscribed" in page.inner_text("main").lower()
    screenshot(page, "unsubscribed-phone")
    journey.close()
    with services.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None and subscriber.status is SubscriberStatus.UNSUBSCRIBED

    # The operator's side: the admin overview with its charts, behind the password.
    admin = chromium.new_context(
        viewport=DESKTOP, http_credentials={"username": "admin", "password": "browser-admin-password"}
    )
    admin_page = admin.new_page()
    for path, name in (("/admin", "admin-overview"), ("/admin/sends", "admin-sends")):
        response = admin_page.goto(live_app.url + path)
        assert response is not None and response.status == 200
        assert admin_page.locator("svg[role=img]").count() >= 1
        screenshot(admin_page, f"{name}-desktop")
    admin.close()
