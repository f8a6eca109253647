"""Unsubscribing in one click (RFC 8058 included) and coming back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from digest.models import SubscriberStatus
from digest.readers import LinkGone
from digest.subscribers import subscriptions
from digest.web.api import mask_email
from digest.web.pages.common import Web


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/unsubscribe/{token}", name="unsubscribe", include_in_schema=False)
    def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        subscriber = web.core.subscriber(web.links.read_unsubscribe(token))
        return web.pages.page(
            request,
            "unsubscribe.html",
            {
                "email": mask_email(subscriber.email),
                "already": subscriber.status is SubscriberStatus.UNSUBSCRIBED,
                "action": request.url.path,
                "resubscribe": request.url_for("resubscribe", token=token).path,
                "preferences": web.links_for(request, subscriber)["preferences"],
            },
        )

    @router.post("/unsubscribe/{token}", include_in_schema=False)
    def unsubscribe(request: Request, token: str) -> HTMLResponse:
        # No CSRF token and no form field is read: RFC 8058 one-click posts arrive from mail providers as
        # "List-Unsubscribe=One-Click" in either form encoding, and a plain button press sends nothing else.
        # Forging this POST needs the signed link, and its only effect is the one its owner asked for.
        public_id = web.links.read_unsubscribe(token)
        subscriber = web.core.in_transaction(lambda s: subscriptions.unsubscribe(s, public_id))
        if subscriber is None:
            raise LinkGone("this link is no longer valid")
        return web.pages.page(
            request,
            "unsubscribed.html",
            {
                "email": mask_email(subscriber.email),
                "resubscribe": request.url_for("resubscribe", token=token).path,
                "unsubscribe_page": request.url.path,
            },
            issue_csrf=False,
        )

    @router.post(
        "/unsubscribe/{token}/resubscribe",
        name="resubscribe",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def resubscribe(request: Request, token: str) -> HTMLResponse:
        public_id = web.links.read_unsubscribe(token)
        subscriber = web.core.in_transaction(lambda s: subscriptions.resubscribe(s, public_id))
        if subscriber is None:
            raise LinkGone("this link is no longer valid")
        if subscriptions.is_suppressed(subscriber):
            return web.error_page(
                request,
                409,
                "mail to this address was refused by its mail server, or reported as spam, so we no longer "
                "send to it; if that has changed, ask the operator of this service to lift the block",
                heading="Not subscribed",
            )
        return web.subscribed_page(request, subscriber, "You're subscribed again")

    return router
