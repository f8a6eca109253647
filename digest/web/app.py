"""The web app: the subscriber-facing pages (`digest.web.pages`), the JSON API and the admin pages.

Links in emails lead here. Mail scanners fetch every link, so a GET only ever shows a page whose button
POSTs; every form POST carries a CSRF token (`digest.web.security`), except the RFC 8058 one-click
unsubscribe, which mail providers send without cookies or fields. The state changes themselves live in
`digest.subscribers`, reached through `digest.readers`.
"""

from __future__ import annotations

from fastapi import FastAPI

from digest.limits import FailedLogins, SubscribeLimits, default_limits
from digest.readers import Readers
from digest.services import Dispatcher, Services
from digest.web.admin import admin_router
from digest.web.api import api_router, mask_email
from digest.web.errors import install_error_pages
from digest.web.pages import archive, feedback, preferences, site, subscribe, unsubscribe
from digest.web.pages.common import TEMPLATES_DIR, Pages, Web, timezone_choices
from digest.web.security import Csrf, RequestGuards, SecurityHeaders

__all__ = ["TEMPLATES_DIR", "create_app", "mask_email", "timezone_choices"]


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
    )
    app.add_middleware(RequestGuards)
    app.add_middleware(SecurityHeaders)
    csrf = Csrf(settings.secret_key, secure=settings.base_url.startswith("https://"))
    pages = Pages(TEMPLATES_DIR, csrf)
    core = Readers(services, dispatcher, subscribe_limits or default_limits(settings))
    web = Web(settings=settings, core=core, pages=pages, csrf=csrf)
    app.include_router(api_router(core))
    app.include_router(admin_router(services, pages.render, admin_logins), include_in_schema=False)
    for module in (site, subscribe, feedback, unsubscribe, preferences, archive):
        app.include_router(module.router(web))
    install_error_pages(app, web)
    return app
