"""Past digests: the list, and each one as the email showed it."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest.deliver.schedule import describe, schedule_of
from digest.web.api import mask_email
from digest.web.pages.common import Web

# The email's own HTML needs its inline styles; it runs no script and posts no form.
ARCHIVED_DIGEST_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_LINK_WITHOUT_REL = re.compile(r"<a (?![^>]*\brel=)", re.IGNORECASE)


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/archive/{token}", name="archive", include_in_schema=False)
    def archive(request: Request, token: str) -> Response:
        public_id, digest_id = web.links.read_archive(token)
        if digest_id is not None:
            html = _LINK_WITHOUT_REL.sub(
                '<a rel="noopener noreferrer" ', web.core.archived_digest_html(public_id, digest_id)
            )
            return HTMLResponse(html, headers={"Content-Security-Policy": ARCHIVED_DIGEST_CSP})
        subscriber, entries = web.core.archive(public_id)
        return web.pages.page(
            request,
            "archive.html",
            {
                "email": mask_email(subscriber.email),
                "schedule": describe(schedule_of(subscriber)),
                "entries": [
                    {
                        "date": entry.digest_date,
                        "papers": entry.papers,
                        "url": request.url_for(
                            "archive", token=web.links.archive_token(public_id, entry.digest_id)
                        ).path,
                    }
                    for entry in entries
                ],
                **web.links_for(request, subscriber),
            },
        )

    return router
