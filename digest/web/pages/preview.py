"""The first-day preview: what the reader's digest would hold now, with vote buttons, so a new subscriber
has something to read and to steer before their first email."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from digest.models import Subscriber
from digest.readers import PreviewPaper
from digest.web.pages.common import Web
from digest.web.pages.votes import (
    cast_vote,
    paper_href,
    undo_vote,
    vote_name,
    vote_notice,
)

PREVIEW_PAGE_SIZE = 10


def preview_items(request: Request, papers: list[PreviewPaper]) -> list[dict[str, Any]]:
    return [
        {
            "listing_id": p.listing_id,
            "title": p.title,
            "href": paper_href(request, p.listing_id, p.url),
            "authors": p.authors,
            "abstract": p.abstract,
            "reason": p.reason,
            "vote": vote_name(p.vote),
            "meta": p.meta,
            "pdf_url": p.pdf_url,
        }
        for p in papers
    ]


def preview_forms(web: Web, request: Request, subscriber: Subscriber) -> dict[str, str]:
    token = web.links.preferences_token(subscriber.public_id)
    return {
        "vote_action": request.url_for("preview_vote", token=token).path,
        "undo_action": request.url_for("preview_undo", token=token).path,
        "preview_page": request.url_for("preview", token=token).path,
    }


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/preferences/{token}/preview", name="preview", include_in_schema=False)
    def preview_page(
        request: Request, token: str, saved: str | None = None, undone: str | None = None
    ) -> HTMLResponse:
        public_id = web.links.read_preferences(token)
        subscriber = web.core.subscriber(public_id)
        papers = web.core.preview(public_id, size=subscriber.digest_size or web.settings.digest_size)
        return web.pages.page(
            request,
            "preview.html",
            {
                "picks": preview_items(request, papers),
                "topics": subscriber.topics,
                "notice": vote_notice(web, public_id, saved, undone),
                "lookback": web.settings.first_digest_lookback_days,
                **preview_forms(web, request, subscriber),
                **web.links_for(request, subscriber),
            },
        )

    @router.post(
        "/preferences/{token}/preview/vote",
        name="preview_vote",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def vote(
        request: Request,
        token: str,
        listing_id: Annotated[str, Form()] = "",
        vote: Annotated[str, Form()] = "",
    ) -> Response:
        public_id = web.links.read_preferences(token)
        page = request.url_for("preview", token=token).path
        return cast_vote(
            web, request, page, public_id, listing_id, vote, partial(web.core.restore_vote, public_id)
        )

    @router.post(
        "/preferences/{token}/preview/undo",
        name="preview_undo",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def undo(request: Request, token: str, undo: Annotated[str, Form()] = "") -> Response:
        public_id = web.links.read_preferences(token)
        page = request.url_for("preview", token=token).path
        return undo_vote(web, request, page, public_id, undo, partial(web.core.restore_vote, public_id))

    return router
