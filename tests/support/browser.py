"""A live server and headless Chromium for the browser tests.

The app runs under uvicorn on a loopback port with its own data dir, Celery tasks run eagerly, and mail goes
to an in-process SMTP server, so a test can read a confirmation link from a real email and open it in the
browser. Chromium is Debian's (`/usr/bin/chromium`), driven by Playwright; `make test` installs it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller

from digest.db import upgrade
from digest.services import Services
from digest.web.app import create_app
from tests.support.env import SmtpSink, free_port, make_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("DIGEST_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
# Without the networking flags Chromium keeps trying to reach Google's hosts, which this machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class LiveApp:
    url: str
    services: Services
    sink: SmtpSink


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[LiveApp]:
    from workers.app import bind
    from workers.tasks import CeleryDispatcher

    sink = SmtpSink(host="127.0.0.1", port=free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    port = free_port()
    settings = make_settings(
        tmp_path,
        DIGEST_BASE_URL=f"http://127.0.0.1:{port}",
        DIGEST_SMTP_URL=sink.url,
        DIGEST_ADMIN_PASSWORD="browser-admin-password",
    )
    services = Services.build(settings)
    upgrade(services.engine)
    bind(services)
    app = create_app(services, CeleryDispatcher())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app server did not start")
        time.sleep(0.05)
    try:
        yield LiveApp(f"http://127.0.0.1:{port}", services, sink)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        controller.stop()
        services.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is needed for the browser tests and is not at {CHROMIUM} "
            "(`make test` installs it: tools/test-services.sh)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    """Full-page PNG under test-artifacts/screenshots, kept for a person to look at."""
    directory = ARTIFACTS / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
