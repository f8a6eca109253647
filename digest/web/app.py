"""The subscriber-facing web app: pages for subscribing, confirming, voting, unsubscribing, settings and
past digests, with the JSON API of `digest.web.api` beside them.

Links in emails lead here. Mail scanners fetch every link, so a GET only ever shows a page whose button
POSTs; every form POST carries a CSRF token (`digest.web.security`), except the RFC 8058 one-click
unsubscribe, which mail providers send without cookies or fields. The state changes themselves live in
`digest.subscribers.subscriptions` and `digest.subscribers.feedback`, reached through `digest.web.core`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest.deliver.schedule import WEEKDAYS, InvalidSchedule, describe, known_timezones, schedule_of, zone
from digest.mail.links import BadLink
from digest.mail.render import long_date
from digest.models import Cadence, Listing, Subscriber, SubscriberStatus
from digest.services import Dispatcher, Services
from digest.subscribers import feedback, subscriptions
from digest.web.admin import admin_router
from digest.web.api import api_router, mask_email
from digest.web.core import DigestNotFound, LinkGone, PreferencesView, WebCore
from digest.web.limits import FailedLogins, SubscribeLimits, default_limits
from digest.web.security import API_PREFIX, Csrf, CsrfRejected, FormTokens, RequestGuards, SecurityHeaders

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "web"
STATIC_FILES = {"style.css": "text/css", "app.js": "text/javascript", "icon.svg": "image/svg+xml"}

STATUS_TEXT = {
    SubscriberStatus.PENDING: "waiting for you to confirm the address",
    SubscriberStatus.ACTIVE: "subscribed",
    SubscriberStatus.UNSUBSCRIBED: "unsubscribed: no digests are sent",
    SubscriberStatus.BOUNCED: "stopped: mail to this address bounced",
}
# The email's own HTML needs its inline styles; it runs no script and posts no form.
ARCHIVED_DIGEST_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_LINK_WITHOUT_REL = re.compile(r"<a (?![^>]*\brel=)", re.IGNORECASE)
_BAR_STEPS = 20
# Forms posting below a page's own path: /preferences/{token}/..., /unsubscribe/{token}/resubscribe.
_NESTED_FORM = re.compile(r"(.*/(?:preferences|unsubscribe)/[^/]+)/.+")

__all__ = ["create_app", "mask_email"]


class Pages:
    def __init__(self, templates_dir: Path, csrf: Csrf) -> None:
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["long_date"] = long_date
        self.env.filters["local_time"] = _local_time
        self.env.tests["web_url"] = _is_web_url
        self.csrf = csrf

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return self.page(request, name, context, status_code=status_code)

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        status_code: int = 200,
        issue_csrf: bool = True,
    ) -> HTMLResponse:
        """`issue_csrf=False` for answers that must not set a cookie; their forms then need one already."""
        tokens = FormTokens(self.csrf, request, may_issue=issue_csrf)
        html = self.env.get_template(name).render(
            stylesheet=request.url_for("static", name="style.css").path,
            script=request.url_for("static", name="app.js").path,
            icon=request.url_for("static", name="icon.svg").path,
            home=request.url_for("home").path,
            csp_nonce=getattr(request.state, "csp_nonce", ""),
            csrf=tokens,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if tokens.issued is not None:
            self.csrf.set_cookie(response, tokens.issued)
        return response


@lru_cache(maxsize=1)
def timezone_choices() -> tuple[str, ...]:
    """The zones worth offering in a list: region/city names, not the legacy aliases."""
    legacy = ("Etc/", "SystemV/", "US/", "Canada/", "Mexico/", "Brazil/", "Chile/")
    return (*sorted(z for z in known_timezones() if "/" in z and not z.startswith(legacy)), "UTC")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _bar(weight: float, largest: float) -> int:
    """A bar's length in twentieths of the longest one, for the `bar-N` classes (CSP forbids inline style)."""
    if largest <= 0:
        return 0
    return max(1, round(abs(weight) / largest * _BAR_STEPS))


def _local_time(moment: datetime | None, timezone: str) -> str | None:
    if moment is None:
        return None
    local = moment.astimezone(zone(timezone))
    return f"{long_date(local.date())}, {local:%H:%M} ({timezone})"


def _is_web_url(value: object) -> bool:
    """Only http(s) links to papers are made clickable: a stored URL could be anything."""
    return isinstance(value, str) and value.strip().lower().startswith(("https://", "http://"))


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
    core = WebCore(services, dispatcher, subscribe_limits or default_limits(settings))
    links = services.links
    static = {name: (TEMPLATES_DIR / name).read_text(encoding="utf-8") for name in STATIC_FILES}
    app.include_router(api_router(core))
    app.include_router(admin_router(services, pages.render, admin_logins), include_in_schema=False)

    def links_for(request: Request, subscriber: Subscriber) -> dict[str, str]:
        public_id = subscriber.public_id
        return {
            "preferences": request.url_for("preferences", token=links.preferences_token(public_id)).path,
            "archive": request.url_for("archive", token=links.archive_token(public_id)).path,
            "unsubscribe": request.url_for("unsubscribe", token=links.unsubscribe_token(public_id)).path,
        }

    def require_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
        if csrf.valid(request, csrf_token):
            return
        path = request.url.path
        # The page to reload for a fresh token: the form's own page.
        if path == request.url_for("subscribe").path:
            retry = request.url_for("home").path
        else:
            nested = _NESTED_FORM.fullmatch(path)
            retry = nested.group(1) if nested else path
        log.info("refused a form POST without a matching CSRF token")
        raise CsrfRejected(retry)

    form_checked = [Depends(require_csrf)]

    # Errors ---------------------------------------------------------------------------------------------
    def error_page(request: Request, status_code: int, message: str, **extra: Any) -> HTMLResponse:
        context = {"message": message, "retry": None, "heading": None, **extra}
        return pages.page(request, "error.html", context, status_code=status_code)

    def field_error(field: str, problem: str) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"loc": ["body", field], "msg": problem, "type": "value_error"}]}, status_code=422
        )

    @app.exception_handler(BadLink)
    async def bad_link(request: Request, error: BadLink) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=400)
        return error_page(request, 400, str(error))

    @app.exception_handler(LinkGone)
    async def link_gone(request: Request, error: LinkGone) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=404)
        return error_page(request, 400, "this link is no longer valid")

    @app.exception_handler(feedback.UnknownFeedbackTarget)
    async def unknown_target(request: Request, error: feedback.UnknownFeedbackTarget) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=404)
        return error_page(request, 400, "this link is no longer valid")

    @app.exception_handler(DigestNotFound)
    async def digest_not_found(request: Request, error: DigestNotFound) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(error)}, status_code=404)
        return error_page(request, 404, "there is no such digest for you", heading="Digest not found")

    @app.exception_handler(subscriptions.InvalidSubscription)
    async def invalid_subscription(request: Request, error: subscriptions.InvalidSubscription) -> Response:
        if _is_api(request):
            return field_error(error.field, error.problem)
        return error_page(request, 422, str(error))

    @app.exception_handler(InvalidSchedule)
    async def invalid_schedule(request: Request, error: InvalidSchedule) -> Response:
        if _is_api(request):
            return field_error(error.field, error.problem)
        return error_page(request, 422, str(error))

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, error: CsrfRejected) -> Response:
        return error_page(
            request,
            403,
            "this form was not sent from a page of ours, or the page was open too long",
            heading="Please try again",
            retry=error.retry_path,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        if _is_api(request):
            return await request_validation_exception_handler(request, error)
        return error_page(request, 400, "this link is not valid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if _is_api(request) or error.status_code not in (404, 405):
            return await http_exception_handler(request, error)
        if error.status_code == 404:
            page = error_page(request, 404, "there is no page at this address", heading="Page not found")
        else:
            page = error_page(request, 405, "this address does not take that kind of request")
        if error.headers:
            page.headers.update(error.headers)
        return page

    # Plumbing -------------------------------------------------------------------------------------------
    @app.get("/static/{name}", name="static", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC_FILES:
            raise StarletteHTTPException(404)
        return Response(
            static[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "public, max-age=3600"}
        )

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """200 while the database answers, 503 when it does not."""
        try:
            core.reading(lambda s: s.execute(text("SELECT 1")).scalar_one())
        except SQLAlchemyError:
            log.warning("health check: database unreachable", exc_info=True)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    # Subscribing ----------------------------------------------------------------------------------------
    def subscribe_form(request: Request, status_code: int = 200, **values: Any) -> HTMLResponse:
        context: dict[str, Any] = {
            "action": request.url_for("subscribe").path,
            "suggest_url": request.url_for("suggest").path,
            "email": "",
            "topics": "",
            "cadence": "daily",
            "send_hour": settings.default_send_hour,
            "weekly_day": 0,
            "timezone": settings.default_timezone,
            "error": None,
            "weekdays": WEEKDAYS,
        }
        context.update(values)
        return pages.page(request, "subscribe.html", context, status_code=status_code)

    @app.get("/", name="home", include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        return subscribe_form(request)

    @app.post("/subscribe", name="subscribe", include_in_schema=False, dependencies=form_checked)
    def subscribe(
        request: Request,
        email: Annotated[str, Form()] = "",
        topics: Annotated[str, Form()] = "",
        cadence: Annotated[str, Form()] = "daily",
        send_hour: Annotated[str, Form()] = "",
        weekly_day: Annotated[str, Form()] = "0",
        timezone: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        # The zone comes from the browser, not from the person: one it cannot name falls back quietly.
        zone_name = timezone.strip() if timezone.strip() in known_timezones() else settings.default_timezone
        hour = send_hour.strip() or str(settings.default_send_hour)
        try:
            core.request_subscription(
                email=email,
                topics=topics,
                cadence=cadence,
                send_hour=hour,
                timezone=zone_name,
                weekly_day=weekly_day,
                client_ip=_client_ip(request),
            )
        except (subscriptions.InvalidSubscription, InvalidSchedule) as error:
            return subscribe_form(
                request,
                status_code=422,
                email=email[: subscriptions.MAX_EMAIL_LENGTH],
                topics=topics,
                cadence=cadence if cadence in ("daily", "weekly") else "daily",
                send_hour=int(hour) if hour.isdigit() and int(hour) < 24 else settings.default_send_hour,
                weekly_day=int(weekly_day) if weekly_day in ("0", "1", "2", "3", "4", "5", "6") else 0,
                timezone=zone_name,
                error=error,
            )
        return pages.page(request, "check_inbox.html", {})

    @app.get("/confirm/{token}", name="confirm", include_in_schema=False)
    def confirm_page(request: Request, token: str) -> HTMLResponse:
        subscriber = core.subscriber(links.read_confirm(token))
        return pages.page(
            request,
            "confirm.html",
            {
                "email": mask_email(subscriber.email),
                "topics": subscriber.topics,
                "schedule": describe(schedule_of(subscriber)),
                "action": request.url.path,
            },
        )

    @app.post("/confirm/{token}", include_in_schema=False, dependencies=form_checked)
    def confirm(request: Request, token: str) -> HTMLResponse:
        public_id = links.read_confirm(token)
        subscriber = core.in_transaction(lambda s: subscriptions.confirm(s, public_id))
        if subscriber is None:
            raise LinkGone("this link is no longer valid")
        if subscriber.status is not SubscriberStatus.ACTIVE:
            return error_page(
                request,
                409,
                "this address stopped getting digests after the link was sent; subscribe again to come back",
                heading="Not subscribed",
            )
        return subscribed_page(request, subscriber, "You're subscribed")

    def subscribed_page(request: Request, subscriber: Subscriber, heading: str) -> HTMLResponse:
        schedule = schedule_of(subscriber)
        return pages.page(
            request,
            "subscribed.html",
            {
                "heading": heading,
                "topics": subscriber.topics,
                "schedule": describe(schedule),
                "paused": schedule.cadence is Cadence.PAUSED,
                "next_digest": _local_time(subscriber.next_due_at, schedule.timezone),
                **links_for(request, subscriber),
            },
        )

    # Votes on papers ------------------------------------------------------------------------------------
    def paper_title(public_id: str, listing_id: int) -> str:
        core.subscriber(public_id)
        listing = core.reading(lambda s: s.get(Listing, listing_id))
        if listing is None:
            raise LinkGone("this link is no longer valid")
        return listing.title

    @app.get("/feedback/{token}", name="feedback", include_in_schema=False)
    def feedback_page(request: Request, token: str) -> HTMLResponse:
        link = links.read_feedback(token)
        title = paper_title(link.public_id, link.listing_id)
        return pages.page(
            request, "feedback.html", {"title": title, "vote": link.vote, "action": request.url.path}
        )

    @app.post("/feedback/{token}", include_in_schema=False, dependencies=form_checked)
    def vote(request: Request, token: str) -> HTMLResponse:
        link = links.read_feedback(token)
        result = core.vote(link.public_id, link.listing_id, link.vote)
        undo = links.undo_token(link.public_id, link.listing_id, result.previous)
        return pages.page(
            request,
            "feedback_saved.html",
            {
                "title": result.listing.title,
                "vote": result.current,
                "undo": request.url_for("feedback_undo", token=undo).path,
                "preferences": request.url_for(
                    "preferences", token=links.preferences_token(link.public_id)
                ).path,
            },
        )

    @app.get("/feedback/undo/{token}", name="feedback_undo", include_in_schema=False)
    def undo_page(request: Request, token: str) -> HTMLResponse:
        link = links.read_undo(token)
        title = paper_title(link.public_id, link.listing_id)
        return pages.page(request, "undo.html", {"title": title, "action": request.url.path})

    @app.post("/feedback/undo/{token}", include_in_schema=False, dependencies=form_checked)
    def undo(request: Request, token: str) -> HTMLResponse:
        link = links.read_undo(token)
        result = core.restore_vote(link.public_id, link.listing_id, link.restore)
        return pages.page(
            request,
            "feedback_undone.html",
            {
                "title": result.listing.title,
                "vote": result.current,
                "preferences": request.url_for(
                    "preferences", token=links.preferences_token(link.public_id)
                ).path,
            },
        )

    # Unsubscribing --------------------------------------------------------------------------------------
    @app.get("/unsubscribe/{token}", name="unsubscribe", include_in_schema=False)
    def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        subscriber = core.subscriber(links.read_unsubscribe(token))
        return pages.page(
            request,
            "unsubscribe.html",
            {
                "email": mask_email(subscriber.email),
                "already": subscriber.status is SubscriberStatus.UNSUBSCRIBED,
                "action": request.url.path,
                "resubscribe": request.url_for("resubscribe", token=token).path,
                "preferences": links_for(request, subscriber)["preferences"],
            },
        )

    @app.post("/unsubscribe/{token}", include_in_schema=False)
    def unsubscribe(request: Request, token: str) -> HTMLResponse:
        # No CSRF token and no form field is read: RFC 8058 one-click posts arrive from mail providers as
        # "List-Unsubscribe=One-Click" in either form encoding, and a plain button press sends nothing else.
        # Forging this POST needs the signed link, and its only effect is the one its owner asked for.
        public_id = links.read_unsubscribe(token)
        subscriber = core.in_transaction(lambda s: subscriptions.unsubscribe(s, public_id))
        if subscriber is None:
            raise LinkGone("this link is no longer valid")
        return pages.page(
            request,
            "unsubscribed.html",
            {
                "email": mask_email(subscriber.email),
                "resubscribe": request.url_for("resubscribe", token=token).path,
                "unsubscribe_page": request.url.path,
            },
            issue_csrf=False,
        )

    @app.post(
        "/unsubscribe/{token}/resubscribe",
        name="resubscribe",
        include_in_schema=False,
        dependencies=form_checked,
    )
    def resubscribe(request: Request, token: str) -> HTMLResponse:
        public_id = links.read_unsubscribe(token)
        subscriber = core.in_transaction(lambda s: subscriptions.resubscribe(s, public_id))
        if subscriber is None:
            raise LinkGone("this link is no longer valid")
        return subscribed_page(request, subscriber, "You're subscribed again")

    # Preferences ----------------------------------------------------------------------------------------
    def preferences_page(
        request: Request,
        token: str,
        view: PreferencesView,
        *,
        status_code: int = 200,
        error: subscriptions.InvalidSubscription | InvalidSchedule | None = None,
        notice: str | None = None,
        form: dict[str, Any] | None = None,
    ) -> HTMLResponse:
        subscriber, schedule, learned = view.subscriber, view.schedule, view.learned
        values: dict[str, Any] = {
            "topics": "\n".join(subscriber.topics),
            "cadence": schedule.cadence.value,
            "send_hour": schedule.send_hour,
            "weekly_day": schedule.weekly_day,
            "timezone": schedule.timezone,
            "digest_size": subscriber.digest_size or settings.digest_size,
            "show_trending": subscriber.show_trending,
        }
        values.update(form or {})
        zones = timezone_choices()
        if values["timezone"] not in zones:
            zones = (values["timezone"], *zones)
        terms: dict[str, list[dict[str, Any]]] = {"pulling": [], "pushing": []}
        if learned is not None:
            largest = max((abs(w) for _, w in [*learned.pulling, *learned.pushing]), default=0.0)
            for kind, pairs in (("pulling", learned.pulling), ("pushing", learned.pushing)):
                terms[kind] = [{"term": t, "weight": w, "bar": _bar(w, largest)} for t, w in pairs]
        return pages.page(
            request,
            "preferences.html",
            {
                "email": mask_email(subscriber.email),
                "status": STATUS_TEXT[subscriber.status],
                "active": subscriber.status is SubscriberStatus.ACTIVE,
                "schedule": describe(schedule),
                "paused": schedule.cadence is Cadence.PAUSED,
                "next_digest": _local_time(subscriber.next_due_at, schedule.timezone),
                "schedule_weekday": WEEKDAYS[schedule.weekly_day],
                "tz": schedule.timezone,
                "values": values,
                "error": error,
                "notice": notice,
                "action": request.url_for("preferences", token=token).path,
                "cadence_action": request.url_for("preferences_cadence", token=token).path,
                "remove_action": lambda listing_id: (
                    request.url_for("preferences_remove_vote", token=token, listing_id=str(listing_id)).path
                ),
                "suggest_url": request.url_for("suggest").path,
                "weekdays": WEEKDAYS,
                "zones": zones,
                "max_digest_size": subscriptions.MAX_DIGEST_SIZE,
                "learned_available": learned is not None,
                "learned_votes": learned.votes if learned is not None else 0,
                "terms": terms,
                "history": view.history,
                **links_for(request, subscriber),
            },
            status_code=status_code,
        )

    @app.get("/preferences/{token}", name="preferences", include_in_schema=False)
    def show_preferences(request: Request, token: str) -> HTMLResponse:
        return preferences_page(request, token, core.preferences(links.read_preferences(token)))

    @app.post("/preferences/{token}", include_in_schema=False, dependencies=form_checked)
    def save_preferences(
        request: Request,
        token: str,
        topics: Annotated[str, Form()] = "",
        show_trending: Annotated[str | None, Form()] = None,
        cadence: Annotated[str | None, Form()] = None,
        send_hour: Annotated[str | None, Form()] = None,
        weekly_day: Annotated[str | None, Form()] = None,
        timezone: Annotated[str | None, Form()] = None,
        digest_size: Annotated[str | None, Form()] = None,
    ) -> HTMLResponse:
        public_id = links.read_preferences(token)
        current = schedule_of(core.subscriber(public_id))
        # A field left out keeps its value; an unticked checkbox is left out by the browser, so it means off.
        chosen: dict[str, Any] = {
            "topics": topics,
            "cadence": cadence if cadence is not None else current.cadence.value,
            "send_hour": send_hour if send_hour is not None else current.send_hour,
            "weekly_day": weekly_day if weekly_day is not None else current.weekly_day,
            "timezone": timezone if timezone is not None else current.timezone,
            "show_trending": show_trending is not None,
        }
        try:
            size = None
            if digest_size is not None and digest_size.strip():
                if not digest_size.strip().isdigit():
                    raise subscriptions.InvalidSubscription(
                        "digest_size", f"must be a whole number of papers, not {digest_size[:10]!r}"
                    )
                size = int(digest_size.strip())
            core.save_preferences(public_id, digest_size=size, **chosen)
        except (subscriptions.InvalidSubscription, InvalidSchedule) as error:
            form = {**chosen, "digest_size": (digest_size or "")[:10]}
            return preferences_page(
                request, token, core.preferences(public_id), status_code=422, error=error, form=form
            )
        return preferences_page(
            request, token, core.preferences(public_id), notice="Your settings are saved."
        )

    @app.post(
        "/preferences/{token}/cadence",
        name="preferences_cadence",
        include_in_schema=False,
        dependencies=form_checked,
    )
    def change_cadence(request: Request, token: str, cadence: Annotated[str, Form()] = "") -> HTMLResponse:
        public_id = links.read_preferences(token)
        try:
            subscriber = core.set_cadence(public_id, cadence)
        except InvalidSchedule as error:
            return preferences_page(request, token, core.preferences(public_id), status_code=422, error=error)
        notice = (
            "Your digests are paused. Nothing is sent until you resume."
            if subscriber.cadence is Cadence.PAUSED
            else f"Your digests are back on: {describe(schedule_of(subscriber))}."
        )
        return preferences_page(request, token, core.preferences(public_id), notice=notice)

    @app.post(
        "/preferences/{token}/votes/{listing_id}/remove",
        name="preferences_remove_vote",
        include_in_schema=False,
        dependencies=form_checked,
    )
    def remove_vote(request: Request, token: str, listing_id: int) -> HTMLResponse:
        public_id = links.read_preferences(token)
        result = core.remove_vote(public_id, listing_id)
        notice = (
            f"Your vote on “{result.listing.title}” is removed."
            if result.changed
            else f"There was no vote on “{result.listing.title}” to remove."
        )
        return preferences_page(request, token, core.preferences(public_id), notice=notice)

    # Past digests ---------------------------------------------------------------------------------------
    @app.get("/archive/{token}", name="archive", include_in_schema=False)
    def archive(request: Request, token: str) -> Response:
        public_id, digest_id = links.read_archive(token)
        if digest_id is not None:
            html = _LINK_WITHOUT_REL.sub(
                '<a rel="noopener noreferrer" ', core.archived_digest_html(public_id, digest_id)
            )
            return HTMLResponse(html, headers={"Content-Security-Policy": ARCHIVED_DIGEST_CSP})
        subscriber, entries = core.archive(public_id)
        return pages.page(
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
                            "archive", token=links.archive_token(public_id, entry.digest_id)
                        ).path,
                    }
                    for entry in entries
                ],
                **links_for(request, subscriber),
            },
        )

    return app
