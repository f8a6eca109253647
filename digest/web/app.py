"""The web app: the subscriber-facing pages (`digest.web.pages`), the JSON API and the admin pages.

Links in emails lead here. Mail scanners fetch every link, so a GET only ever shows a page whose button
POSTs; every form POST carries a CSRF token (`digest.web.security`), except the RFC 8058 one-click
unsubscribe, which mail providers send without cookies or fields. The state changes themselves live in
`digest.subscribers`, reached through `digest.readers`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from digest.config import Settings
from digest.limits import FailedLogins, SubscribeLimits, default_limits
from digest.readers import Readers
from digest.services import Dispatcher, Services
from digest.web.admin import admin_router
from digest.web.api import api_router, mask_email
from digest.web.errors import install_error_pages
from digest.web.pages import archive, feedback, papers, preferences, preview, site, subscribe, unsubscribe
from digest.web.pages.common import TEMPLATES_DIR, Pages, Web, timezone_choices
from digest.web.security import Csrf, RequestGuards, SecurityHeaders
from digest.web.server import server_options

__all__ = ["TEMPLATES_DIR", "create_app", "mask_email", "server_options", "timezone_choices"]


def trusted_hosts(settings: Settings) -> list[str]:
    """The base URL's host, loopback names for a health check on the machine, and DIGEST_ALLOWED_HOSTS."""
    host = urlsplit(settings.base_url).hostname or "localhost"
    return sorted({host, "localhost", "127.0.0.1", "::1", *settings.allowed_hosts})


def create_app(
    services: Services,
    dispatcher: Dispatcher,
    *,
    subscribe_limits: SubscribeLimits | None = None,
    admin_logins: FailedLogins | None = None,
) -> FastAPI:
    settings = services.settings
    app = FastAPI(
        title="digest",
        summary="Personalized digests of new research papers",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # A trailing-slash redirect would echo the request's Host header into Location.
        redirect_slashes=False,
    )
    app.add_middleware(RequestGuards)
    app.add_middleware(SecurityHeaders, https=settings.base_url.startswith("https://"))
    # Requests naming another host are refused, so no page or link is built from an attacker's Host.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(settings))
    csrf = Csrf(settings.secret_key, secure=settings.base_url.startswith("https://"))
    pages = Pages(TEMPLATES_DIR, csrf)
    core = Readers(services, dispatcher, subscribe_limits or default_limits(settings))
    web = Web(settings=settings, core=core, pages=pages, csrf=csrf)
    app.include_router(api_router(core))
    app.include_router(admin_router(services, pages.render, admin_logins), include_in_schema=False)
    for module in (site, subscribe, feedback, unsubscribe, preview, preferences, archive, papers):
        app.include_router(module.router(web))
    install_error_pages(app, web)
    return app
