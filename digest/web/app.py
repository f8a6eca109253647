"""The subscriber-facing web pages: subscribe, confirm, vote on papers, unsubscribe, edit topics.

Links in emails lead here. Mail scanners fetch every link, so a GET only ever shows a page whose button
POSTs; the state changes themselves live in `digest.subscriptions` and `digest.feedback`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest import feedback, subscriptions
from digest.db import transaction
from digest.links import BadLink
from digest.models import Cadence, Listing, Subscriber, SubscriberStatus
from digest.schedule import Schedule
from digest.services import Dispatcher, Services

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "web"
T = TypeVar("T")

STATUS_TEXT = {
    SubscriberStatus.PENDING: "waiting for you to confirm the address",
    SubscriberStatus.ACTIVE: "subscribed",
    SubscriberStatus.UNSUBSCRIBED: "unsubscribed: no digests are sent",
}


class SecurityHeaders:
    """Headers every response carries; the per-response nonce lets the one inline script run, nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                # One-button pages are what clickjacking needs, so no one may frame them.
                headers["X-Frame-Options"] = "DENY"
                headers["Content-Security-Policy"] = (
                    f"default-src 'none'; style-src 'self'; script-src 'nonce-{nonce}'; "
                    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                )
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Pages:
    def __init__(self, templates_dir: Path) -> None:
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            stylesheet=request.url_for("stylesheet").path,
            home=request.url_for("home").path,
            csp_nonce=getattr(request.state, "csp_nonce", ""),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)


def mask_email(address: str) -> str:
    """Enough of the address to recognise it, not enough to harvest it from a forwarded link."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _required(subscriber: Subscriber | None) -> Subscriber:
    if subscriber is None:
        raise BadLink("this link is no longer valid")
    return subscriber


def create_app(services: Services, dispatcher: Dispatcher) -> FastAPI:
    app = FastAPI(title="digest", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    pages = Pages(TEMPLATES_DIR)
    links = services.links
    stylesheet = (TEMPLATES_DIR / "style.css").read_text(encoding="utf-8")
    default_schedule = Schedule(
        Cadence.DAILY, services.settings.default_send_hour, services.settings.default_timezone
    )

    def retrain_after(result: feedback.VoteResult) -> None:
        """The vote is committed; its effect on the profile is worked out in the background."""
        if not result.changed:
            return
        try:
            dispatcher.retrain(result.subscriber_id)
        except Exception:
            # The vote is stored either way; the next run catches the model up.
            log.exception("could not queue retraining for subscriber %s", result.subscriber_id)

    def in_transaction(work: Callable[[Session], T]) -> T:
        """Run `work` in its own transaction, once more if a concurrent request inserted the same row."""
        try:
            with transaction(services.sessions) as session:
                return work(session)
        except IntegrityError:
            log.info("retrying after a concurrent insert", exc_info=True)
        with transaction(services.sessions) as session:
            return work(session)

    def reading(work: Callable[[Session], T]) -> T:
        with transaction(services.sessions) as session:
            return work(session)

    def subscriber_for(public_id: str) -> Subscriber:
        return _required(reading(lambda s: subscriptions.find_by_public_id(s, public_id)))

    def listing_for(public_id: str, listing_id: int) -> Listing:
        def lookup(session: Session) -> Listing | None:
            if subscriptions.find_by_public_id(session, public_id) is None:
                return None
            return session.get(Listing, listing_id)

        listing = reading(lookup)
        if listing is None:
            raise BadLink("this link is no longer valid")
        return listing

    def subscribed_page(request: Request, subscriber: Subscriber, heading: str) -> HTMLResponse:
        return pages.render(
            request,
            "subscribed.html",
            heading=heading,
            topics=subscriber.topics,
            preferences=request.url_for(
                "preferences", token=links.preferences_token(subscriber.public_id)
            ).path,
        )

    @app.exception_handler(BadLink)
    async def bad_link(request: Request, error: BadLink) -> HTMLResponse:
        return pages.render(request, "error.html", status_code=400, message=str(error))

    @app.exception_handler(feedback.UnknownFeedbackTarget)
    async def unknown_target(request: Request, error: feedback.UnknownFeedbackTarget) -> HTMLResponse:
        return pages.render(request, "error.html", status_code=400, message="this link is no longer valid")

    @app.get("/static/style.css", name="stylesheet")
    def style() -> Response:
        return Response(stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            reading(lambda s: s.execute(text("SELECT 1")).scalar_one())
        except SQLAlchemyError:
            log.warning("health check: database unreachable", exc_info=True)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    # Subscribing -------------------------------------------------------------------------------
    @app.get("/", name="home")
    def home(request: Request) -> HTMLResponse:
        return pages.render(
            request,
            "subscribe.html",
            action=request.url_for("subscribe").path,
            email="",
            topics="",
            error=None,
        )

    @app.post("/subscribe", name="subscribe")
    def subscribe(
        request: Request, email: Annotated[str, Form()] = "", topics: Annotated[str, Form()] = ""
    ) -> HTMLResponse:
        try:
            result = in_transaction(
                lambda s: subscriptions.subscribe(s, email, topics, schedule=default_schedule)
            )
        except subscriptions.InvalidSubscription as error:
            return pages.render(
                request,
                "subscribe.html",
                status_code=422,
                action=request.url.path,
                email=email,
                topics=topics,
                error=error,
            )
        if result.needs_confirmation:
            try:
                dispatcher.send_confirmation(result.subscriber_id)
            except Exception:
                # An error page here would only appear for addresses not yet active, telling a stranger
                # which addresses are subscribed; the page already says to submit again if nothing arrives.
                log.exception("could not queue the confirmation for subscriber %s", result.subscriber_id)
        return pages.render(request, "check_inbox.html")

    @app.get("/confirm/{token}", name="confirm")
    def confirm_page(request: Request, token: str) -> HTMLResponse:
        subscriber = subscriber_for(links.read_confirm(token))
        return pages.render(
            request,
            "confirm.html",
            email=mask_email(subscriber.email),
            topics=subscriber.topics,
            action=request.url.path,
        )

    @app.post("/confirm/{token}")
    def confirm(request: Request, token: str) -> HTMLResponse:
        public_id = links.read_confirm(token)
        subscriber = _required(in_transaction(lambda s: subscriptions.confirm(s, public_id)))
        if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
            return pages.render(
                request,
                "error.html",
                status_code=409,
                message="this address unsubscribed after the link was sent; subscribe again to come back",
            )
        return subscribed_page(request, subscriber, "You're subscribed")

    # Votes on papers ---------------------------------------------------------------------------
    @app.get("/feedback/{token}", name="feedback")
    def feedback_page(request: Request, token: str) -> HTMLResponse:
        link = links.read_feedback(token)
        listing = listing_for(link.public_id, link.listing_id)
        return pages.render(
            request, "feedback.html", title=listing.title, vote=link.vote, action=request.url.path
        )

    @app.post("/feedback/{token}")
    def vote(request: Request, token: str) -> HTMLResponse:
        link = links.read_feedback(token)
        result = in_transaction(lambda s: feedback.record_vote(s, link.public_id, link.listing_id, link.vote))
        retrain_after(result)
        undo = links.undo_token(link.public_id, link.listing_id, result.previous)
        return pages.render(
            request,
            "feedback_saved.html",
            title=result.listing.title,
            vote=result.current,
            undo=request.url_for("feedback_undo", token=undo).path,
        )

    @app.get("/feedback/undo/{token}", name="feedback_undo")
    def undo_page(request: Request, token: str) -> HTMLResponse:
        link = links.read_undo(token)
        listing = listing_for(link.public_id, link.listing_id)
        return pages.render(request, "undo.html", title=listing.title, action=request.url.path)

    @app.post("/feedback/undo/{token}")
    def undo(request: Request, token: str) -> HTMLResponse:
        link = links.read_undo(token)
        result = in_transaction(
            lambda s: feedback.restore_vote(s, link.public_id, link.listing_id, link.restore)
        )
        retrain_after(result)
        return pages.render(request, "feedback_undone.html", title=result.listing.title, vote=result.current)

    # Unsubscribing -----------------------------------------------------------------------------
    @app.get("/unsubscribe/{token}", name="unsubscribe")
    def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        subscriber = subscriber_for(links.read_unsubscribe(token))
        return pages.render(
            request,
            "unsubscribe.html",
            email=mask_email(subscriber.email),
            already=subscriber.status is SubscriberStatus.UNSUBSCRIBED,
            action=request.url.path,
        )

    @app.post("/unsubscribe/{token}")
    def unsubscribe(request: Request, token: str) -> HTMLResponse:
        # Reads no form field: RFC 8058 one-click posts arrive as "List-Unsubscribe=One-Click" in either
        # form encoding, and a plain button press sends nothing at all.
        public_id = links.read_unsubscribe(token)
        subscriber = _required(in_transaction(lambda s: subscriptions.unsubscribe(s, public_id)))
        return pages.render(
            request,
            "unsubscribed.html",
            email=mask_email(subscriber.email),
            resubscribe=request.url_for("resubscribe", token=token).path,
        )

    @app.post("/unsubscribe/{token}/resubscribe", name="resubscribe")
    def resubscribe(request: Request, token: str) -> HTMLResponse:
        public_id = links.read_unsubscribe(token)
        subscriber = _required(in_transaction(lambda s: subscriptions.resubscribe(s, public_id)))
        return subscribed_page(request, subscriber, "You're subscribed again")

    # Preferences -------------------------------------------------------------------------------
    def preferences_form(
        request: Request,
        subscriber: Subscriber,
        topics: str,
        *,
        status_code: int = 200,
        error: subscriptions.InvalidSubscription | None = None,
        saved: bool = False,
    ) -> HTMLResponse:
        return pages.render(
            request,
            "preferences.html",
            status_code=status_code,
            email=mask_email(subscriber.email),
            status=STATUS_TEXT[subscriber.status],
            topics=topics,
            show_trending=subscriber.show_trending,
            error=error,
            saved=saved,
            action=request.url.path,
            unsubscribe=request.url_for(
                "unsubscribe", token=links.unsubscribe_token(subscriber.public_id)
            ).path,
        )

    @app.get("/preferences/{token}", name="preferences")
    def preferences_page(request: Request, token: str) -> HTMLResponse:
        subscriber = subscriber_for(links.read_preferences(token))
        return preferences_form(request, subscriber, "\n".join(subscriber.topics))

    @app.post("/preferences/{token}")
    def save_preferences(
        request: Request,
        token: str,
        topics: Annotated[str, Form()] = "",
        show_trending: Annotated[str | None, Form()] = None,
    ) -> HTMLResponse:
        public_id = links.read_preferences(token)
        try:
            subscriber = _required(
                in_transaction(
                    lambda s: subscriptions.update_topics(
                        s, public_id, topics, show_trending=show_trending is not None
                    )
                )
            )
        except subscriptions.InvalidSubscription as error:
            return preferences_form(request, subscriber_for(public_id), topics, status_code=422, error=error)
        return preferences_form(request, subscriber, "\n".join(subscriber.topics), saved=True)

    return app
