"""What every page module shares: the page renderer, the small formatting helpers, and `Web`, the
services and helpers a router is built with."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from digest.config import Settings
from digest.deliver.schedule import describe, known_timezones, schedule_of, zone
from digest.mail.links import Links
from digest.mail.render import long_date
from digest.models import Cadence, Listing, Subscriber
from digest.readers import LinkGone, Readers
from digest.web.security import API_PREFIX, Csrf, CsrfRejected, FormTokens

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "web"
_BAR_STEPS = 20
FIRST_DAY_PREVIEW = 5
# Forms posting below a page's own path: /preferences/{token}/..., /unsubscribe/{token}/resubscribe.
_NESTED_FORM = re.compile(r"(.*/(?:preferences|unsubscribe)/[^/]+)/.+")


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
        self.env.filters["local_time"] = local_time
        self.env.tests["web_url"] = is_web_url
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
            votes_script=request.url_for("static", name="votes.js").path,
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


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bar(weight: float, largest: float) -> int:
    """A bar's length in twentieths of the longest one, for the `bar-N` classes (CSP forbids inline style)."""
    if largest <= 0:
        return 0
    return max(1, round(abs(weight) / largest * _BAR_STEPS))


def local_time(moment: datetime | None, timezone: str) -> str | None:
    if moment is None:
        return None
    local = moment.astimezone(zone(timezone))
    return f"{long_date(local.date())}, {local:%H:%M} ({timezone})"


def is_web_url(value: object) -> bool:
    """Only http(s) links to papers are made clickable: a stored URL could be anything."""
    return isinstance(value, str) and value.strip().lower().startswith(("https://", "http://"))


@dataclass
class Web:
    """The services and helpers every page router is built with."""

    settings: Settings
    core: Readers
    pages: Pages
    csrf: Csrf
    links: Links = field(init=False)

    def __post_init__(self) -> None:
        self.links = self.core.links

    @property
    def form_checked(self) -> list[DependsParam]:
        """The dependency of every form POST but the one-click unsubscribe: a matching CSRF token."""
        return [Depends(self.require_csrf)]

    def require_csrf(self, request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
        if self.csrf.valid(request, csrf_token):
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

    def links_for(self, request: Request, subscriber: Subscriber) -> dict[str, str]:
        public_id = subscriber.public_id
        links = self.links
        return {
            "preferences": request.url_for("preferences", token=links.preferences_token(public_id)).path,
            "archive": request.url_for("archive", token=links.archive_token(public_id)).path,
            "unsubscribe": request.url_for("unsubscribe", token=links.unsubscribe_token(public_id)).path,
        }

    def error_page(self, request: Request, status_code: int, message: str, **extra: Any) -> HTMLResponse:
        context = {"message": message, "retry": None, "heading": None, **extra}
        return self.pages.page(request, "error.html", context, status_code=status_code)

    def subscribed_page(self, request: Request, subscriber: Subscriber, heading: str) -> HTMLResponse:
        from digest.web.pages.preview import preview_forms, preview_items

        schedule = schedule_of(subscriber)
        papers = self.core.preview(subscriber.public_id, size=FIRST_DAY_PREVIEW)
        return self.pages.page(
            request,
            "subscribed.html",
            {
                "picks": preview_items(request, papers),
                **preview_forms(self, request, subscriber),
                "heading": heading,
                "topics": subscriber.topics,
                "schedule": describe(schedule),
                "paused": schedule.cadence is Cadence.PAUSED,
                "next_digest": local_time(subscriber.next_due_at, schedule.timezone),
                **self.links_for(request, subscriber),
            },
        )

    def paper_title(self, public_id: str, listing_id: int) -> str:
        self.core.subscriber(public_id)
        listing = self.core.reading(lambda s: s.get(Listing, listing_id))
        if listing is None:
            raise LinkGone("this link is no longer valid")
        return listing.title
