"""Past digests: the list, and each one as a page of the site where every paper can be voted on."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from digest.deliver.schedule import describe, schedule_of
from digest.mail.links import BadLink
from digest.readers import DigestPage
from digest.web.api import mask_email
from digest.web.pages.common import Web
from digest.web.pages.votes import (
    cast_vote,
    paper_href,
    undo_vote,
    vote_name,
    vote_notice,
)


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def digest_view(
        request: Request, token: str, page: DigestPage, notice: dict[str, Any] | None
    ) -> HTMLResponse:
        context = page.context

        def papers(section: str) -> list[dict[str, Any]]:
            entries = context["trending" if section == "trending" else "items"]
            assert isinstance(entries, list)
            return [
                {
                    **entry,
                    "listing_id": listing_id,
                    "href": paper_href(request, listing_id, entry.get("url")),
                    "vote": vote_name(page.votes.get(listing_id)),
                }
                for entry, listing_id in zip(entries, page.listing_ids[section], strict=True)
            ]

        picks = papers("picks")
        return web.pages.page(
            request,
            "digest.html",
            {
                "digest_date": context["digest_date"],
                "topics": context["topics"],
                "schedule": context["schedule"],
                "email": mask_email(page.subscriber.email),
                "picks": picks,
                "trending": papers("trending"),
                "quiet_topics": context.get("quiet_topics") or [],
                "voted": sum(1 for p in picks if p["vote"]),
                "vote_action": request.url_for("digest_vote", token=token).path,
                "undo_action": request.url_for("digest_vote_undo", token=token).path,
                "notice": notice,
                "all_digests": request.url_for(
                    "archive", token=web.links.archive_token(page.subscriber.public_id)
                ).path,
                **web.links_for(request, page.subscriber),
            },
        )

    @router.get("/archive/{token}", name="archive", include_in_schema=False)
    def archive(
        request: Request, token: str, saved: str | None = None, undone: str | None = None
    ) -> Response:
        public_id, digest_id = web.links.read_archive(token)
        if digest_id is not None:
            page = web.core.digest_page(public_id, digest_id)
            return digest_view(request, token, page, vote_notice(web, public_id, saved, undone))
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

    def one_digest(token: str) -> tuple[str, int]:
        public_id, digest_id = web.links.read_archive(token)
        if digest_id is None:
            raise BadLink("this link is not valid")
        return public_id, digest_id

    @router.post(
        "/archive/{token}/vote", name="digest_vote", include_in_schema=False, dependencies=web.form_checked
    )
    def vote(
        request: Request,
        token: str,
        listing_id: Annotated[str, Form()] = "",
        vote: Annotated[str, Form()] = "",
    ) -> Response:
        public_id, digest_id = one_digest(token)
        page = request.url_for("archive", token=token).path
        return cast_vote(
            web,
            request,
            page,
            public_id,
            listing_id,
            vote,
            partial(web.core.vote_in_digest, public_id, digest_id),
        )

    @router.post(
        "/archive/{token}/undo",
        name="digest_vote_undo",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def undo(request: Request, token: str, undo: Annotated[str, Form()] = "") -> Response:
        public_id, digest_id = one_digest(token)
        page = request.url_for("archive", token=token).path
        return undo_vote(
            web, request, page, public_id, undo, partial(web.core.vote_in_digest, public_id, digest_id)
        )

    return router
