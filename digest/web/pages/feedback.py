"""Votes from the digests' links: a GET shows the vote's page, its button POSTs it; undo."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from digest.web.pages.common import Web


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/feedback/{token}", name="feedback", include_in_schema=False)
    def feedback_page(request: Request, token: str) -> HTMLResponse:
        link = web.links.read_feedback(token)
        title = web.paper_title(link.public_id, link.listing_id)
        return web.pages.page(
            request, "feedback.html", {"title": title, "vote": link.vote, "action": request.url.path}
        )

    @router.post("/feedback/{token}", include_in_schema=False, dependencies=web.form_checked)
    def vote(request: Request, token: str) -> HTMLResponse:
        link = web.links.read_feedback(token)
        result = web.core.vote(link.public_id, link.listing_id, link.vote)
        undo = web.links.undo_token(link.public_id, link.listing_id, result.previous)
        carried = web.core.digest_with(link.public_id, link.listing_id)
        return web.pages.page(
            request,
            "feedback_saved.html",
            {
                "digest": None
                if carried is None
                else request.url_for(
                    "archive", token=web.links.archive_token(link.public_id, carried[0])
                ).path,
                "others": 0 if carried is None else max(carried[1] - 1, 0),
                "title": result.listing.title,
                "vote": result.current,
                "undo": request.url_for("feedback_undo", token=undo).path,
                "preferences": request.url_for(
                    "preferences", token=web.links.preferences_token(link.public_id)
                ).path,
            },
        )

    @router.get("/feedback/undo/{token}", name="feedback_undo", include_in_schema=False)
    def undo_page(request: Request, token: str) -> HTMLResponse:
        link = web.links.read_undo(token)
        title = web.paper_title(link.public_id, link.listing_id)
        return web.pages.page(request, "undo.html", {"title": title, "action": request.url.path})

    @router.post("/feedback/undo/{token}", include_in_schema=False, dependencies=web.form_checked)
    def undo(request: Request, token: str) -> HTMLResponse:
        link = web.links.read_undo(token)
        result = web.core.restore_vote(link.public_id, link.listing_id, link.restore)
        return web.pages.page(
            request,
            "feedback_undone.html",
            {
                "title": result.listing.title,
                "vote": result.current,
                "preferences": request.url_for(
                    "preferences", token=web.links.preferences_token(link.public_id)
                ).path,
            },
        )

    return router
