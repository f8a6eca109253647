"""The preferences page: topics, schedule, digest size, what the ranking learned, and past votes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from digest.deliver.schedule import WEEKDAYS, InvalidSchedule, describe, schedule_of
from digest.models import Cadence, SubscriberStatus
from digest.readers import PreferencesView
from digest.subscribers import subscriptions
from digest.subscribers.steering import NothingToUndo
from digest.subscribers.suggestions import RECENT_PAPERS
from digest.web.api import mask_email
from digest.web.pages.common import Web, local_time, timezone_choices
from digest.web.pages.fields import FieldError, check_fields, reader_message, typed_topic_matches

STATUS_TEXT = {
    SubscriberStatus.PENDING: "waiting for you to confirm the address",
    SubscriberStatus.ACTIVE: "subscribed",
    SubscriberStatus.UNSUBSCRIBED: "unsubscribed: no digests are sent",
    SubscriberStatus.BOUNCED: "stopped: mail to this address bounced",
}


def router(web: Web) -> APIRouter:  # noqa: C901 - a router factory: the count is its small nested handlers together
    router = APIRouter(include_in_schema=False)

    # Over 60 lines: the page's whole context in one place, one line per value the template shows.
    def preferences_page(
        request: Request,
        token: str,
        view: PreferencesView,
        *,
        status_code: int = 200,
        errors: dict[str, FieldError] | None = None,
        notice: str | None = None,
        form: dict[str, Any] | None = None,
        notice_learned: str | None = None,
        offer_undo_reset: bool = False,
    ) -> HTMLResponse:
        subscriber, schedule, learned = view.subscriber, view.schedule, view.learned
        values: dict[str, Any] = {
            "topics": "\n".join(subscriber.topics),
            "cadence": schedule.cadence.value,
            "send_hour": schedule.send_hour,
            "weekly_day": schedule.weekly_day,
            "timezone": schedule.timezone,
            "digest_size": subscriber.digest_size or web.settings.digest_size,
            "show_trending": subscriber.show_trending,
        }
        values.update(form or {})
        zones = timezone_choices()
        if values["timezone"] not in zones:
            zones = (values["timezone"], *zones)
        return web.pages.page(
            request,
            "preferences.html",
            {
                "email": mask_email(subscriber.email),
                "status": STATUS_TEXT[subscriber.status],
                "active": subscriber.status is SubscriberStatus.ACTIVE,
                "schedule": describe(schedule),
                "paused": schedule.cadence is Cadence.PAUSED,
                "next_digest": local_time(subscriber.next_due_at, schedule.timezone),
                "schedule_weekday": WEEKDAYS[schedule.weekly_day],
                "tz": schedule.timezone,
                "values": values,
                "errors": errors or {},
                "matches": typed_topic_matches(web.core, values["topics"]),
                "matches_url": request.url_for("topic_matches").path,
                "window": RECENT_PAPERS,
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
                "learned": learned,
                "notice_learned": notice_learned,
                "undo_reset": request.url_for("preferences_undo_reset", token=token).path
                if offer_undo_reset
                else None,
                "steer_action": request.url_for("preferences_steer", token=token).path,
                "reset_action": request.url_for("preferences_reset", token=token).path,
                "history": view.history,
                **web.links_for(request, subscriber),
            },
            status_code=status_code,
        )

    @router.get("/preferences/{token}", name="preferences", include_in_schema=False)
    def show_preferences(request: Request, token: str) -> HTMLResponse:
        return preferences_page(request, token, web.core.preferences(web.links.read_preferences(token)))

    @router.post("/preferences/{token}", include_in_schema=False, dependencies=web.form_checked)
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
        public_id = web.links.read_preferences(token)
        current = schedule_of(web.core.subscriber(public_id))
        # A field left out keeps its value; an unticked checkbox is left out by the browser, so it means off.
        chosen: dict[str, Any] = {
            "topics": topics,
            "cadence": cadence if cadence is not None else current.cadence.value,
            "send_hour": send_hour if send_hour is not None else current.send_hour,
            "weekly_day": weekly_day if weekly_day is not None else current.weekly_day,
            "timezone": timezone if timezone is not None else current.timezone,
            "show_trending": show_trending is not None,
        }
        form = {**chosen, "digest_size": (digest_size or "")[:10]}
        refused = check_fields(
            topics=topics,
            cadence=str(chosen["cadence"]),
            send_hour=str(chosen["send_hour"]),
            timezone=str(chosen["timezone"]),
            weekly_day=str(chosen["weekly_day"]),
            cadences=[c.value for c in Cadence],
            digest_size=digest_size,
        )
        if not refused:
            size = int(digest_size.strip()) if digest_size is not None and digest_size.strip() else None
            try:
                web.core.save_preferences(public_id, digest_size=size, **chosen)
            except (subscriptions.InvalidSubscription, InvalidSchedule) as error:
                refusal = reader_message(error)
                refused = {refusal.field: refusal}
        if refused:
            return preferences_page(
                request, token, web.core.preferences(public_id), status_code=422, errors=refused, form=form
            )
        return preferences_page(
            request, token, web.core.preferences(public_id), notice="Your settings are saved."
        )

    @router.post(
        "/preferences/{token}/cadence",
        name="preferences_cadence",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def change_cadence(request: Request, token: str, cadence: Annotated[str, Form()] = "") -> HTMLResponse:
        public_id = web.links.read_preferences(token)
        try:
            subscriber = web.core.set_cadence(public_id, cadence)
        except InvalidSchedule as error:
            refusal = reader_message(error)
            return preferences_page(
                request,
                token,
                web.core.preferences(public_id),
                status_code=422,
                errors={refusal.field: refusal},
            )
        notice = (
            "Your digests are paused. Nothing is sent until you resume."
            if subscriber.cadence is Cadence.PAUSED
            else f"Your digests are back on: {describe(schedule_of(subscriber))}."
        )
        return preferences_page(request, token, web.core.preferences(public_id), notice=notice)

    @router.post(
        "/preferences/{token}/votes/{listing_id}/remove",
        name="preferences_remove_vote",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def remove_vote(request: Request, token: str, listing_id: int) -> HTMLResponse:
        public_id = web.links.read_preferences(token)
        result = web.core.remove_vote(public_id, listing_id)
        notice = (
            f"Your vote on “{result.listing.title}” is removed."
            if result.changed
            else f"There was no vote on “{result.listing.title}” to remove."
        )
        return preferences_page(request, token, web.core.preferences(public_id), notice=notice)

    @router.post(
        "/preferences/{token}/terms",
        name="preferences_steer",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def steer(
        request: Request,
        token: str,
        term: Annotated[str, Form()] = "",
        action: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        public_id = web.links.read_preferences(token)
        wanted = {"mute": "mute", "boost": "boost", "lift": None}
        try:
            if action not in wanted:
                raise subscriptions.InvalidSubscription("action", "choose Mute, Boost or lift one")
            label = web.core.steer(public_id, term, wanted[action])
        except subscriptions.InvalidSubscription as error:
            return preferences_page(
                request, token, web.core.preferences(public_id), status_code=422, notice_learned=error.problem
            )
        done = {
            "mute": f"Muted “{label}”: papers about it go down in your next digest.",
            "boost": f"Boosted “{label}”: papers about it come up in your next digest.",
            "lift": f"“{label}” counts as your topics and votes say again.",
        }[action]
        return preferences_page(request, token, web.core.preferences(public_id), notice_learned=done)

    @router.post(
        "/preferences/{token}/reset",
        name="preferences_reset",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def reset(request: Request, token: str) -> HTMLResponse:
        public_id = web.links.read_preferences(token)
        result = web.core.reset_learned(public_id)
        notice = (
            f"Forgot your {result.votes} vote{'' if result.votes == 1 else 's'}: your digest now follows "
            "your topics (and any muted or boosted terms) only."
            if result.votes
            else "There were no votes to forget."
        )
        return preferences_page(
            request,
            token,
            web.core.preferences(public_id),
            notice_learned=notice,
            offer_undo_reset=bool(result.votes),
        )

    @router.post(
        "/preferences/{token}/reset/undo",
        name="preferences_undo_reset",
        include_in_schema=False,
        dependencies=web.form_checked,
    )
    def undo_reset(request: Request, token: str) -> HTMLResponse:
        public_id = web.links.read_preferences(token)
        try:
            result = web.core.undo_reset(public_id)
            notice = f"Your {result.votes} vote{'' if result.votes == 1 else 's'} are back."
        except NothingToUndo:
            notice = "There is no reset to undo."
        return preferences_page(request, token, web.core.preferences(public_id), notice_learned=notice)

    return router
