"""What the pages that carry vote buttons share (a digest's page, the first-day preview): the answer to a
vote, as JSON for the page's script or as a redirect back for a plain form post, and the banner after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from digest.mail.links import BadLink
from digest.models import Vote
from digest.subscribers.feedback import VoteResult
from digest.web.pages.common import Web, is_web_url

VOTE_CHOICES: dict[str, Vote | None] = {"more": Vote.MORE, "less": Vote.LESS, "clear": None}
VOTE_WORDS = {Vote.MORE: "More like this", Vote.LESS: "Less like this"}
NOT_UNDERSTOOD = "That vote was not understood: choose “More like this” or “Less like this”."


def vote_name(vote: Vote | None) -> str:
    return "more" if vote is Vote.MORE else "less" if vote is Vote.LESS else ""


def paper_href(request: Request, listing_id: int, url: object) -> str:
    """A title's link: the paper's own page when it has one, else the paper's page on this site."""
    return str(url) if is_web_url(url) else request.url_for("paper", listing_id=str(listing_id)).path


def vote_answer(request: Request, page: str, listing_id: int, current: Vote | None, **extra: Any) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(
            {
                "listing_id": listing_id,
                "vote": vote_name(current) or None,
                "words": VOTE_WORDS.get(current) if current else None,
                **extra,
            }
        )
    query = f"?saved={extra['undo']}" if "undo" in extra else f"?undone={listing_id}"
    return RedirectResponse(f"{page}{query}#paper-{listing_id}", status_code=303)


def vote_notice(web: Web, public_id: str, saved: str | None, undone: str | None) -> dict[str, Any] | None:
    """The banner after a vote without JavaScript: what was saved, with its undo, or what was undone."""
    if saved:
        try:
            link = web.links.read_undo(saved)
        except BadLink:
            return None
        listing = web.core.paper(link.listing_id) if link.public_id == public_id else None
        if listing is None:
            return None
        return {"title": listing.title, "undo": saved, "undone": False, "listing_id": listing.id}
    if undone and undone.isdigit() and len(undone) < 12:
        listing = web.core.paper(int(undone))
        if listing is None:
            return None
        return {"title": listing.title, "undone": True, "listing_id": listing.id}
    return None


Record = Callable[[int, Vote | None], VoteResult]


def cast_vote(
    web: Web, request: Request, page: str, public_id: str, listing_id: str, vote: str, record: Record
) -> Response:
    """A vote button's POST: `record` stores it (or takes the vote back for "clear")."""
    if vote not in VOTE_CHOICES or not listing_id.isdigit() or len(listing_id) > 11:
        return web.error_page(request, 422, NOT_UNDERSTOOD)
    result = record(int(listing_id), VOTE_CHOICES[vote])
    undo = web.links.undo_token(public_id, result.listing.id, result.previous)
    return vote_answer(
        request, page, result.listing.id, result.current, undo=undo, title=result.listing.title
    )


def undo_vote(web: Web, request: Request, page: str, public_id: str, token: str, record: Record) -> Response:
    """The undo after a vote: puts back what the vote replaced, for this reader's own votes only."""
    link = web.links.read_undo(token)
    if link.public_id != public_id:
        raise BadLink("this link is not valid")
    result = record(link.listing_id, link.restore)
    return vote_answer(
        request, page, result.listing.id, result.current, undone=True, title=result.listing.title
    )
