"""The operator's pages under /admin: counts and charts, subscribers, sends and bounces, sources, evaluation.

Off unless `DIGEST_ADMIN_PASSWORD` is set: then every /admin URL answers 404, as if it did not exist. When
on, HTTP Basic authentication with any user name and that password. The pages only read; nothing here
changes state, so there is no form to forge.

The router is added to the web app by one line in `create_app`:

    app.include_router(admin_router(services, pages.render))

It takes the app's page renderer (so the pages share base.html, its stylesheet and the CSP nonce) and does
not import `digest.web.app`, so the app can import this module without a cycle.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from digest import evaluation_figures, stats
from digest.ingest.health import source_health
from digest.limits import FailedLogins, default_failed_logins
from digest.models import utcnow
from digest.services import Services
from digest.status import gather
from digest.web.charts import Series, bar_chart

ADMIN_TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "web" / "admin"
# Sent with every admin page: operator data must not be cached by proxies or browsers, nor indexed.
ADMIN_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
CHALLENGE = 'Basic realm="digest admin", charset="UTF-8"'
MAX_DAYS = 366
SEARCH_MAX_LENGTH = 320

NAV = (
    ("admin_overview", "Overview"),
    ("admin_subscribers", "Subscribers"),
    ("admin_sends", "Sends"),
    ("admin_sources", "Sources"),
    ("admin_evaluation", "Evaluation"),
)


class Render(Protocol):
    """`Pages.render` in `digest.web.app`: a template under templates/web, with the page context added."""

    def __call__(
        self, request: Request, name: str, status_code: int = ..., **context: Any
    ) -> HTMLResponse: ...


def password_matches(authorization: str | None, password: str) -> bool:
    """Whether an `Authorization: Basic ...` header carries `password`; any user name is accepted."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    _, colon, given = decoded.partition(b":")
    if not colon:
        return False
    return secrets.compare_digest(given, password.encode("utf-8"))


def when(moment: datetime | None, empty: str = "never") -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else empty


def metric(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    if key == "junk_share":
        return f"{100 * value:.0f}%"
    return f"{value:.1f}" if key.startswith("ms_") or key == "papers_per_digest" else f"{value:.3f}"


def day_charts(days: list[stats.DayStats]) -> dict[str, Markup]:
    """The three per-day charts of the overview; the pages put the same numbers in a table beneath."""
    labels = [d.day.isoformat() for d in days]
    short = [d.day.strftime("%m-%d") for d in days]
    common: dict[str, Any] = {"axis_labels": short, "x_label": "day (UTC)"}
    return {
        "sends": bar_chart(
            labels,
            [
                Series("sent", [d.sent for d in days], 0),
                Series("failed", [d.failed for d in days], 1),
                Series("bounced", [d.bounced for d in days], 2),
            ],
            title="Digests per day by outcome",
            chart_id="chart-sends",
            y_label="digests",
            **common,
        ),
        "votes": bar_chart(
            labels,
            [
                Series("more", [d.votes_more for d in days], 3),
                Series("less", [d.votes_less for d in days], 4),
            ],
            title="Feedback votes per day",
            chart_id="chart-votes",
            stacked=False,
            y_label="votes",
            **common,
        ),
        "subscribers": bar_chart(
            labels,
            [
                Series("new", [d.new_subscribers for d in days], 5),
                Series("unsubscribed", [d.unsubscribes for d in days], 1),
            ],
            title="New subscribers and unsubscribes per day",
            chart_id="chart-subscribers",
            stacked=False,
            y_label="addresses",
            **common,
        ),
    }


def _clamp_days(days: int) -> int:
    return min(max(days, 1), MAX_DAYS)


def admin_router(services: Services, render: Render, failed_logins: FailedLogins | None = None) -> APIRouter:  # noqa: C901 - a router factory: the count is its small nested handlers together
    """Every page of the admin area, behind the password check; see the module docstring for wiring."""
    stylesheet = (ADMIN_TEMPLATES / "admin.css").read_text(encoding="utf-8")
    logins = failed_logins or default_failed_logins(services.settings)

    def require_admin(request: Request) -> None:
        password = services.settings.admin_password
        if password is None:
            # The same answer as for any URL the app does not have.
            raise HTTPException(status_code=404)
        client = request.client.host if request.client else "unknown"
        if logins.blocked(client):
            raise HTTPException(
                status_code=429,
                detail="too many wrong passwords; try again later",
                headers={"Retry-After": str(logins.retry_after(client)), **ADMIN_HEADERS},
            )
        if not password_matches(request.headers.get("authorization"), password):
            if request.headers.get("authorization"):
                logins.failed(client)
            raise HTTPException(
                status_code=401,
                detail="the admin password is needed",
                headers={"WWW-Authenticate": CHALLENGE, **ADMIN_HEADERS},
            )

    router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    def page(request: Request, name: str, current: str, **context: Any) -> HTMLResponse:
        nav = [(label, request.url_for(route).path, route == current) for route, label in NAV]
        response = render(
            request,
            f"admin/{name}",
            nav=nav,
            admin_stylesheet=request.url_for("admin_stylesheet").path,
            when=when,
            **context,
        )
        response.headers.update(ADMIN_HEADERS)
        return response

    @router.get("/static/admin.css", name="admin_stylesheet")
    def admin_css() -> Response:
        return Response(stylesheet, media_type="text/css", headers=ADMIN_HEADERS)

    @router.get("", name="admin_overview")
    def overview(request: Request, days: int = stats.DEFAULT_DAYS) -> HTMLResponse:
        now = utcnow()
        with services.sessions() as session:
            figures = stats.overview(session, now, _clamp_days(days))
        return page(
            request,
            "overview.html",
            "admin_overview",
            ov=figures,
            status=gather(services, now),
            charts=day_charts(figures.days),
        )

    @router.get("/subscribers", name="admin_subscribers")
    def subscribers(
        request: Request, q: str = "", page_number: Annotated[int, Query(alias="page")] = 1
    ) -> HTMLResponse:
        # PostgreSQL cannot hold NUL in text, so a pattern with one would fail; control characters match
        # no stored address anyway.
        search = "".join(c for c in q if c.isprintable()).strip()[:SEARCH_MAX_LENGTH]
        with services.sessions() as session:
            listing = stats.subscribers_page(session, search=search, page=page_number)
        base = request.url_for("admin_subscribers").path

        def link(number: int) -> str:
            query = {"q": listing.search} if listing.search else {}
            return base + "?" + urlencode({**query, "page": number})

        return page(
            request,
            "subscribers.html",
            "admin_subscribers",
            listing=listing,
            action=base,
            previous=link(listing.page - 1) if listing.has_previous else None,
            next=link(listing.page + 1) if listing.has_next else None,
        )

    @router.get("/sends", name="admin_sends")
    def sends(request: Request, days: int = stats.DEFAULT_DAYS) -> HTMLResponse:
        now = utcnow()
        with services.sessions() as session:
            per_day = stats.daily(session, now.date(), _clamp_days(days))
            reasons = stats.bounce_reasons(session)
            bounces = stats.recent_bounces(session)
        return page(
            request,
            "sends.html",
            "admin_sends",
            days=per_day,
            chart=day_charts(per_day)["sends"],
            reasons=reasons,
            bounces=bounces,
        )

    @router.get("/sources", name="admin_sources")
    def sources(request: Request) -> HTMLResponse:
        with services.sessions() as session:
            health = source_health(session, utcnow(), services.settings.extra_holidays)
        return page(request, "sources.html", "admin_sources", sources=health)

    @router.get("/evaluation", name="admin_evaluation")
    def evaluation(request: Request) -> HTMLResponse:
        path = evaluation_figures.evaluation_path(services.settings.data_dir)
        problem = None
        try:
            figures = evaluation_figures.load_evaluation(path)
        except (OSError, ValueError) as exc:
            figures, problem = None, str(exc)
        return page(
            request,
            "evaluation.html",
            "admin_evaluation",
            figures=figures,
            problem=problem,
            path=str(path),
            columns=evaluation_figures.EVALUATION_METRICS,
            metric=metric,
        )

    return router
