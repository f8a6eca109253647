"""Subscribing and confirming: the form, its answer, and the confirmation link's page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from digest.deliver.schedule import WEEKDAYS, InvalidSchedule, describe, known_timezones, schedule_of
from digest.models import SubscriberStatus
from digest.readers import LinkGone
from digest.subscribers import subscriptions
from digest.subscribers.suggestions import RECENT_PAPERS
from digest.web.api import mask_email
from digest.web.pages.common import FIRST_DAY_PREVIEW, Web, client_ip
from digest.web.pages.fields import FieldError, check_fields, reader_message, typed_topic_matches
from digest.web.pages.preview import preview_items


def _choices_again(cadence: str, hour: str, weekly_day: str, default_hour: int) -> dict[str, Any]:
    """The form's choices as sent, where the form offers them; its defaults where it does not."""
    return {
        "cadence": cadence if cadence in ("daily", "weekly") else "daily",
        "send_hour": int(hour) if hour.isdigit() and int(hour) < 24 else default_hour,
        "weekly_day": int(weekly_day) if weekly_day in ("0", "1", "2", "3", "4", "5", "6") else 0,
    }


# Over 60 lines: a router factory; its handlers are nested here, each a few lines.
def router(web: Web) -> APIRouter:  # noqa: C901 - a router factory: the count is its small nested handlers together
    router = APIRouter(include_in_schema=False)

    def subscribe_form(request: Request, status_code: int = 200, **values: Any) -> HTMLResponse:
        context: dict[str, Any] = {
            "action": request.url_for("subscribe").path,
            "suggest_url": request.url_for("suggest").path,
            "matches_url": request.url_for("topic_matches").path,
            "matches": None,
            "window": RECENT_PAPERS,
            "email": "",
            "topics": "",
            "cadence": "daily",
            "send_hour": web.settings.default_send_hour,
            "weekly_day": 0,
            "timezone": web.settings.default_timezone,
            "errors": {},
            "weekdays": WEEKDAYS,
        }
        context.update(values)
        return web.pages.page(request, "subscribe.html", context, status_code=status_code)

    @router.get("/", name="home", include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        return subscribe_form(request)

    @router.post("/subscribe", name="subscribe", include_in_schema=False, dependencies=web.form_checked)
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
        zone_name = (
            timezone.strip() if timezone.strip() in known_timezones() else web.settings.default_timezone
        )
        hour = send_hour.strip() or str(web.settings.default_send_hour)

        def form_again(errors: dict[str, FieldError]) -> HTMLResponse:
            return subscribe_form(
                request,
                status_code=422,
                email=email[: subscriptions.MAX_EMAIL_LENGTH],
                topics=topics,
                timezone=zone_name,
                errors=errors,
                matches=typed_topic_matches(web.core, topics),
                **_choices_again(cadence, hour, weekly_day, web.settings.default_send_hour),
            )

        refused = check_fields(
            email=email,
            topics=topics,
            cadence=cadence,
            send_hour=hour,
            timezone=zone_name,
            weekly_day=weekly_day,
        )
        if refused:
            return form_again(refused)
        try:
            web.core.request_subscription(
                email=email,
                topics=topics,
                cadence=cadence,
                send_hour=hour,
                timezone=zone_name,
                weekly_day=weekly_day,
                client_ip=client_ip(request),
            )
        except (subscriptions.InvalidSubscription, InvalidSchedule) as error:
            refusal = reader_message(error)
            return form_again({refusal.field: refusal})
        # The address as typed, normalised, and nothing read from storage: the answer must not differ
        # between a new, an active and a suppressed address (or a throttled request).
        return web.pages.page(
            request,
            "check_inbox.html",
            {"address": subscriptions.normalize_email(email)},
        )

    def stale(request: Request, error: subscriptions.StaleConfirmation) -> HTMLResponse:
        return web.error_page(request, 409, str(error), heading="A newer request replaced this link")

    @router.get("/confirm/{token}", name="confirm", include_in_schema=False)
    def confirm_page(request: Request, token: str) -> HTMLResponse:
        public_id, nonce = web.links.read_confirm_request(token)
        subscriber = web.core.subscriber(public_id)
        try:
            subscriptions.check_confirmation(subscriber, nonce)
        except subscriptions.StaleConfirmation as error:
            return stale(request, error)
        return web.pages.page(
            request,
            "confirm.html",
            {
                "email": mask_email(subscriber.email),
                "topics": subscriber.topics,
                "schedule": describe(schedule_of(subscriber)),
                "action": request.url.path,
                "preview": preview_items(request, web.core.preview(public_id, size=FIRST_DAY_PREVIEW)),
            },
        )

    @router.post("/confirm/{token}", include_in_schema=False, dependencies=web.form_checked)
    def confirm(request: Request, token: str) -> HTMLResponse:
        public_id, nonce = web.links.read_confirm_request(token)
        try:
            subscriber = web.core.in_transaction(lambda s: subscriptions.confirm(s, public_id, nonce))
        except subscriptions.StaleConfirmation as error:
            return stale(request, error)
        if subscriber is None:
            raise LinkGone("this link is no longer valid")
        if subscriber.status is not SubscriberStatus.ACTIVE:
            return web.error_page(
                request,
                409,
                "this address stopped getting digests after the link was sent; subscribe again to come back",
                heading="Not subscribed",
            )
        return web.subscribed_page(request, subscriber, "You're subscribed")

    return router
