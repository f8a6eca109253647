"""Headless Chromium reaches the live app: the subscribe page renders and its script runs under the CSP."""

from __future__ import annotations

from typing import Any

from tests.support.browser import LiveApp, screenshot

pytest_plugins = ["tests.support.browser"]


def test_the_subscribe_page_loads_in_chromium_without_console_errors(
    live_app: LiveApp, chromium: Any
) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    response = page.goto(live_app.url + "/")
    assert response is not None and response.status == 200
    assert page.locator("input[name=email]").count() == 1
    assert screenshot(page, "smoke-subscribe").stat().st_size > 1000
    assert errors == []
    page.close()
