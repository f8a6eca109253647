"""The topic box in headless Chromium against the live app and the shared listings: suggestions show how
many recent papers mention them, and a typed topic no recent paper mentions gets a note saying so; the
error summary of a refused form links to its fields."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe

from digest.ingest.files import ingest_paths
from digest.models import utcnow
from tests.support.browser import LiveApp, screenshot

pytest_plugins = ["tests.support.browser"]


def test_suggestions_show_counts_and_an_unmatched_topic_gets_a_note(
    live_app: LiveApp, chromium: Any, shared_listings: list[Path]
) -> None:
    ingest_paths(live_app.services.sessions, shared_listings, now=utcnow() - timedelta(hours=2))
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(live_app.url + "/")

    page.type("#topics", "diffus", delay=20)
    options = page.locator("#topic-suggestions [role=option]")
    options.first.wait_for()
    first = options.first
    assert first.inner_text() == "diffusion models"
    count = first.get_attribute("data-papers") or ""
    assert re.fullmatch(r"\d+ papers", count), count
    drawn = page.evaluate(
        "el => getComputedStyle(el, '::after').content", first.element_handle()
    )  # the count is on screen, beside the topic
    assert drawn.strip('"') == count
    assert first.get_attribute("aria-label") == f"diffusion models, {count} recently"
    screenshot(page, "subscribe-suggestion-counts-desktop")
    audit = Axe().run(page)
    assert audit.violations_count == 0, audit.generate_snapshot()

    first.click()
    page.type("#topics", "protein folding", delay=10)
    page.click("#email")  # leaving the box counts every topic in it
    note = page.locator("#topic-matches .no-match")
    note.wait_for()
    assert note.inner_text() == (
        "No recent paper mentions “protein folding” yet: you'll get papers on it once some arrive."
    )
    assert re.search(r"diffusion models: \d+ papers", page.inner_text("#topic-matches"))
    screenshot(page, "subscribe-topic-matches-desktop")

    assert problems == [], problems

    # A refused form (the browser logs its 422): the summary's link takes the reader to the field.
    page.fill("#email", "ann@")
    page.evaluate("document.getElementById('email').type = 'text'")  # past the browser's own check
    page.click("#subscribe")
    page.wait_for_load_state()
    summary = page.locator("#form-error")
    assert "“ann@” is not an email address we can send to." in summary.inner_text()
    summary.locator("a[href='#email']").click()
    assert page.evaluate("document.activeElement.id") == "email"
    assert page.get_attribute("#email", "aria-invalid") == "true"
    assert "No recent paper mentions “protein folding” yet" in page.inner_text("#topic-matches")
    screenshot(page, "subscribe-errors-desktop")
    audit = Axe().run(page)
    assert audit.violations_count == 0, audit.generate_snapshot()
    assert [p for p in problems if "422" not in p] == [], problems
    context.close()
