"""A real ten-paper digest, as sent, opened in headless Chromium at a phone's width and a desktop's.

The papers are the shared listing dumps (real titles and abstracts, no URLs: their titles must link to the
service's own paper pages) and the arXiv announcement feed in tests/fixtures (ids, authors, categories,
dates: their titles link to arXiv and carry a PDF link). The digest goes through the whole send path
(plan, batch loader, render, compose, outbox) and the HTML part of the .eml file is what the browser gets.

Screenshots go to test-artifacts/screenshots/email-phone.png and email-desktop.png for a person to look at.
"""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from digest.db import transaction, upgrade
from digest.deliver.day import plan_day
from digest.deliver.sending import send_digests
from digest.ingest.files import ingest_paths
from digest.ingest.formats import ParsedListing
from digest.ingest.parsers.arxiv_rss import parse_arxiv_rss
from digest.ingest.store import Incoming, identify, store_batch
from digest.services import Services
from digest.subscribers.subscriptions import subscribe
from tests.support.browser import ARTIFACTS, screenshot
from tests.support.daily import DAY, T0
from tests.support.env import make_settings
from tests.unit.mail.test_email_html import Document

pytest_plugins = ["tests.support.browser"]

FEED = Path(__file__).resolve().parents[1] / "fixtures" / "feeds" / "arxiv_rss.xml"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
TOPICS = "large language models, pruning, kettles"
# This same digest at 390 px as the template drew it before the phone layout (commit fb0962b, measured
# with this test): 3,455 px for 10 papers, 4.1 screens of 844 px.
OLD_PHONE_HEIGHT_PER_PAPER = 345.5
# What the phone layout reaches: a third, as first hoped for, does not fit a title, the reason, a
# three-line snippet and two 44 px buttons (about 200 px) into 115 px. Now about two thirds (232 px).
PHONE_HEIGHT_RATIO = 0.7
MIN_TAP_PX = 44
MIN_GAP_PX = 8


@pytest.fixture
def digest_html(tmp_path: Path, shared_listings: list[Path]) -> str:
    services = Services.build(make_settings(tmp_path, DIGEST_ORGANISATION="Example Lab"))
    upgrade(services.engine)
    try:
        ingest_paths(services.sessions, shared_listings, now=T0 - timedelta(hours=1))
        parsed = [p for p in parse_arxiv_rss(FEED.read_bytes()) if isinstance(p, ParsedListing)]
        incoming = [i for i in map(identify, parsed) if isinstance(i, Incoming)]
        assert len(incoming) >= 3
        with transaction(services.sessions) as session:
            store_batch(session, incoming, "arxiv-rss-fixture", T0 - timedelta(hours=1))
            subscribe(session, "reader@example.org", TOPICS, confirmed=True)
        plan = plan_day(services, DAY, now=T0)
        send_digests(services, plan.to_send)
        (eml,) = services.settings.outbox_dir.glob("*.eml")
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        part = message.get_body(preferencelist=("html",))
        assert part is not None
        html = str(part.get_content())
        # Kept beside the screenshots, to open in a browser or send to a real mail client.
        (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "screenshots" / "email-digest.html").write_text(html, encoding="utf-8")
        return html
    finally:
        services.close()


def box(element: Any) -> dict[str, float]:
    found = element.bounding_box()
    assert found is not None, "the element is not rendered"
    return dict(found)


def gap_between(a: dict[str, float], b: dict[str, float]) -> float:
    """The empty space between two boxes, side by side or one above the other."""
    horizontal = max(b["x"] - (a["x"] + a["width"]), a["x"] - (b["x"] + b["width"]))
    vertical = max(b["y"] - (a["y"] + a["height"]), a["y"] - (b["y"] + b["height"]))
    return max(horizontal, vertical)


def check_layout(page: Any, width: int) -> None:
    papers = page.locator("td.p:has(a:text-is('More like this'))")
    assert papers.count() == 10

    # Every title opens the paper: an <a> with a web address.
    for heading in page.locator("td.p:has(a:text-is('More like this')) h2").all():
        (title,) = heading.locator("a").all()
        assert title.get_attribute("href").startswith(("https://", "http://"))

    for paper in papers.all():
        more = paper.locator("a:text-is('More like this')")
        less = paper.locator("a:text-is('Less like this')")
        for button in (more, less):
            assert box(button)["height"] >= MIN_TAP_PX, (width, box(button))
            # The coloured cell is the button a reader sees; it is no smaller than the link inside it.
            cell = button.locator("xpath=..")
            assert box(cell)["height"] >= MIN_TAP_PX
            assert cell.get_attribute("bgcolor")
        assert gap_between(box(more.locator("xpath=..")), box(less.locator("xpath=.."))) >= MIN_GAP_PX
        assert gap_between(box(more), box(less)) >= MIN_GAP_PX

    footer_links = page.locator("td.ft a").all()
    assert [link.inner_text() for link in footer_links] == ["Unsubscribe", "Preferences", "Past digests"]
    for link in footer_links:
        assert box(link)["height"] >= MIN_TAP_PX, (width, link.inner_text(), box(link))

    # Nothing is wider than the screen: a phone never scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_digest_on_a_phone_and_a_desktop(chromium: Any, digest_html: str) -> None:
    pages = {}
    for label, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        context = chromium.new_context(viewport=viewport)
        page = context.new_page()
        # The email's HTML as a mail client gets it; it loads nothing from the network.
        page.set_content(digest_html, wait_until="load")
        screenshot(page, f"email-{label}")
        pages[label] = (context, page, viewport["width"])
    height = pages["phone"][1].evaluate("document.documentElement.scrollHeight")
    print(f"\npage height at 390 px: {height} px, {height / 10:.1f} px per paper")
    for context, page, width in pages.values():
        check_layout(page, width)
        context.close()
    assert height / 10 <= OLD_PHONE_HEIGHT_PER_PAPER * PHONE_HEIGHT_RATIO


def test_arxiv_papers_and_the_others_link_where_they_should(digest_html: str) -> None:
    document = Document(digest_html)
    cells = [td for td in document.all("td") if td.attrs.get("class") == "p" and "More like this" in td.text]
    assert len(cells) == 10
    arxiv = linked_elsewhere = 0
    for cell in cells:
        (title,) = [a for a in document.all("a") if a.ancestors[-1].tag == "h2" and cell in a.ancestors]
        pdfs = [a for a in document.links("PDF") if cell in a.ancestors]
        href = title.attrs["href"]
        if href.startswith("https://arxiv.org/abs/"):
            arxiv += 1
            (pdf,) = pdfs
            assert pdf.attrs["href"] == href.replace("/abs/", "/pdf/")
            assert "arXiv:" + href.removeprefix("https://arxiv.org/abs/") in cell.text
        else:
            # The shared dumps give no URL: the title opens the service's own page of the paper.
            assert href.startswith("https://digest.example.org/papers/") and not pdfs
            linked_elsewhere += 1
    assert arxiv >= 1 and linked_elsewhere >= 1
    footer = " ".join(document.links("Unsubscribe")[0].ancestors[-2].text.split())
    assert footer.startswith("Sent by Example Lab’s paper digest.")
