"""Every admin page in headless Chromium at desktop and phone width: axe finds nothing serious, chart text
stays readable on a phone, the lift-suppression button works, and screenshots are kept for a person.

Screenshots: test-artifacts/screenshots/admin-<page>-<desktop|phone>.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe

from digest.models import Subscriber, SubscriberStatus, utcnow
from tests.support.admin_data import World, build_world
from tests.support.browser import LiveApp, screenshot

pytest_plugins = ["tests.support.browser"]

PASSWORD = "browser-admin-password"  # what tests.support.browser's live app is given
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
MIN_CHART_TEXT_PX = 11

# The rendered size of each visible piece of chart text: its CSS font size times the SVG's scale.
CHART_TEXT_SIZES = """
() => [...document.querySelectorAll("svg.chart")].filter(svg => svg.checkVisibility()).flatMap(svg => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll("text")].map(t => ({
    chart: svg.id, text: t.textContent, px: parseFloat(getComputedStyle(t).fontSize) * scale,
  }));
})
"""


def pages(world: World) -> dict[str, str]:
    return {
        "overview": "/admin",
        "subscribers": "/admin/subscribers",
        "search": "/admin/subscribers?q=example",
        "subscriber": f"/admin/subscribers/{world.bounced}",
        "sends": "/admin/sends",
        "sources": "/admin/sources",
        "evaluation": "/admin/evaluation",
    }


def serious(results: Any) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


class Visit:
    """A browser context signed in to the admin area that records console errors and failed requests."""

    def __init__(self, chromium: Any, viewport: dict[str, int], *, signed_in: bool = True) -> None:
        credentials = {"username": "admin", "password": PASSWORD} if signed_in else None
        self.context = chromium.new_context(viewport=viewport, http_credentials=credentials)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def close(self) -> None:
        self.context.close()


def test_every_admin_page_is_accessible_and_readable_at_both_widths(
    live_app: LiveApp, chromium: Any, shared_listings: list[Path]
) -> None:
    world = build_world(live_app.services, utcnow().date(), shared_listings[:3])
    axe = Axe()
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        visit = Visit(chromium, viewport)
        page = visit.page
        for name, path in pages(world).items():
            response = page.goto(live_app.url + path)
            assert response is not None and response.status == 200, (path, response and response.status)
            screenshot(page, f"admin-{name}-{label}")
            problems = serious(axe.run(page))
            assert problems == [], (name, label, problems)
            # Nothing wider than the screen, but for tables that scroll inside their own region.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (name, label, overflow)
            sizes = page.evaluate(CHART_TEXT_SIZES)
            if name in ("overview", "sources", "evaluation"):
                assert sizes, f"no chart visible on {name} at {label} width"
            small = [s for s in sizes if s["px"] < MIN_CHART_TEXT_PX - 0.05]
            assert small == [], (name, label, small[:5])
            # The phone gets the drawings made for it, the desktop the wide ones.
            narrow = {s["chart"].endswith("-narrow") for s in sizes}
            assert narrow <= {label == "phone"}, (name, label, {s["chart"] for s in sizes})
        # The search box is as tall as the button beside it.
        page.goto(live_app.url + "/admin/subscribers")
        box = page.locator("#q").bounding_box()
        button = page.locator("form.search button").bounding_box()
        assert box and button and abs(box["height"] - button["height"]) <= 1, (box, button)
        # The evaluation plot drawn by `digest evaluate` is shown, under the CSP.
        page.goto(live_app.url + "/admin/evaluation")
        assert page.evaluate("document.querySelector('figure.plot img').naturalWidth") == 800
        # A wrong address: the admin's own 404, with its navigation and no subscriber wording.
        response = page.goto(live_app.url + "/admin/no-such-page")
        assert response is not None and response.status == 404
        assert page.locator("nav.admin-nav").count() == 1
        assert "subscribe again" not in page.content()
        screenshot(page, f"admin-404-{label}")
        assert serious(axe.run(page)) == []
        assert [p for p in visit.problems if "404" not in p] == [], visit.problems
        visit.close()

    # Without the password: the admin's own 401 page, which loads nothing that is behind the password.
    # Headless Chromium has no password prompt to cancel, so the page is fetched and then shown as is.
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        visit = Visit(chromium, viewport, signed_in=False)
        refused = visit.context.request.get(live_app.url + "/admin")
        assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Basic")
        visit.page.goto(live_app.url + "/healthz")
        visit.page.set_content(refused.text())
        assert visit.page.locator("h1").inner_text() == "Admin password needed"
        assert "subscribe again" not in visit.page.content()
        screenshot(visit.page, f"admin-401-{label}")
        assert serious(axe.run(visit.page)) == []
        visit.close()


def test_lifting_a_suppression_from_the_subscriber_page(live_app: LiveApp, chromium: Any) -> None:
    world = build_world(live_app.services, utcnow().date())
    visit = Visit(chromium, PHONE)
    page = visit.page
    page.goto(live_app.url + "/admin/subscribers?q=gus")
    page.get_by_role("link", name="gus@example.org").click()
    assert page.locator("#suppression").inner_text().startswith("Suppressed")
    page.locator("#lift-suppression").click()
    page.wait_for_url(f"**/admin/subscribers/{world.bounced}?lifted=1")
    assert "Suppression lifted" in page.locator("#lifted").inner_text()
    assert page.locator("#lift-suppression").count() == 0
    with live_app.services.sessions() as session:
        row = session.get(Subscriber, world.bounced)
        assert row is not None and row.status is SubscriberStatus.UNSUBSCRIBED and row.bounced_at is None
    assert visit.problems == []
    visit.close()
