"""The operator's pages under /admin: counts and charts, subscribers, sends and bounces, sources, evaluation.

Off unless `DIGEST_ADMIN_PASSWORD` is set: then every /admin URL answers 404, as if it did not exist. When
on, HTTP Basic authentication with any user name and that password, for every /admin URL, known or not
(an unknown one answers the admin's own 404 only after the password). The pages read, but for one form:
lifting a subscriber's suppression. A browser resends Basic credentials to any site's form aimed here, so
that POST also carries the CSRF token the subscriber pages' forms use (`digest.web.security`).

The router is added to the web app by one line in `create_app`:

    app.include_router(admin_router(services, pages.render))

It takes the app's page renderer (so the pages share base.html, its stylesheet and the CSP nonce) and does
not import `digest.web.app`, so the app can import this module without a cycle.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest import evaluation_figures, stats
from digest.db import transaction
from digest.deliver.schedule import describe, schedule_of
from digest.ingest.health import source_health
from digest.limits import FailedLogins, default_failed_logins
from digest.models import DigestStatus, utcnow
from digest.services import Services
from digest.status import gather
from digest.subscribers.subscriptions import lift_suppression
from digest.web.charts import Series, hbar_chart, responsive_chart
from digest.web.security import Csrf

ADMIN_TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "web" / "admin"
# Sent with every admin page: operator data must not be cached by proxies or browsers, nor indexed.
ADMIN_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
CHALLENGE = 'Basic realm="digest admin", charset="UTF-8"'
MAX_DAYS = 366
SEARCH_MAX_LENGTH = 320
ADMIN_PREFIX = "/admin"
# The plot `digest evaluate` draws; with the default data dir (./var) it lands beside evaluation.json.
EVALUATION_PLOT = "evaluation.png"
SEND_STATUSES = tuple(s.value for s in DigestStatus)
# How long the overview's counts are reused before they are counted again (see `Recent`).
FIGURES_SECONDS = 60.0
# Sessions the overview counts with at once; well within the engine's pool.
OVERVIEW_READERS = 4

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
        "sends": responsive_chart(
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
        "votes": responsive_chart(
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
        "subscribers": responsive_chart(
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


def more_charts(
    days: list[stats.DayStats],
    active: list[tuple[date, int]],
    digest_votes: list[stats.DigestVotes],
    topics: list[tuple[str, int]],
    papers: stats.SourceSeries,
) -> dict[str, Markup]:
    """The overview's answers to "is it growing, is it read, what do people follow, what came in"."""
    labels = [d.day.isoformat() for d in days]
    short = [d.day.strftime("%m-%d") for d in days]
    common: dict[str, Any] = {"axis_labels": short, "x_label": "day (UTC)"}
    return {
        "active": responsive_chart(
            labels,
            [Series("active", [n for _, n in active], 0)],
            title="Active subscribers at the end of each day",
            chart_id="chart-active",
            y_label="subscribers",
            **common,
        ),
        "digest_votes": responsive_chart(
            labels,
            [
                Series("more", [v.more_per_digest for v in digest_votes], 3),
                Series("less", [v.less_per_digest for v in digest_votes], 4),
            ],
            title="Votes per sent digest, by digest date",
            chart_id="chart-digest-votes",
            y_label="votes",
            **common,
        ),
        "papers": papers_chart(papers),
        "topics": topics_chart(topics),
    }


def papers_chart(papers: stats.SourceSeries) -> Markup:
    return responsive_chart(
        [d.isoformat() for d in papers.days],
        [Series(name, values, tone) for tone, (name, values) in enumerate(papers.papers.items())],
        title="Papers first stored per day, by source",
        chart_id="chart-papers",
        axis_labels=[d.strftime("%m-%d") for d in papers.days],
        y_label="papers",
        x_label="day (UTC)",
    )


def topics_chart(topics: list[tuple[str, int]]) -> Markup:
    """Topic names are long, so they are rows at every width: one drawing wide, one for a phone."""
    names = [name for name, _ in topics]
    series = [Series("active subscribers", [n for _, n in topics], 0)]
    title = "Most common topics among active subscribers"
    wide = hbar_chart(names, series, title=title, chart_id="chart-topics", width=720, label_space=220)
    narrow = hbar_chart(
        names,
        series,
        title=title,
        chart_id="chart-topics-narrow",
        axis_labels=[shorten(name, 16) for name in names],
        label_space=130,
    )
    return (
        Markup('<div class="chart-wide">')
        + wide
        + Markup('</div><div class="chart-narrow">')
        + narrow
        + Markup("</div>")
    )


def evaluation_chart(figures: evaluation_figures.EvaluationFigures) -> Markup:
    """nDCG@10 on day 1 and later for each method: rows, so method names and values read at any width."""
    names = list(figures.methods)
    series = [
        Series(
            evaluation_figures.EVALUATION_METRICS[key],
            [figures.methods[m].get(key) or 0.0 for m in names],
            tone,
        )
        for key, tone in (("ndcg_first", 1), ("ndcg_later", 0), ("precision_later", 3))
    ]
    title = "Ranking quality per method (higher is better)"
    wide = hbar_chart(
        names,
        series,
        title=title,
        chart_id="chart-evaluation",
        stacked=False,
        width=720,
        label_space=110,
        integer=False,
    )
    narrow = hbar_chart(
        names,
        series,
        title=title,
        chart_id="chart-evaluation-narrow",
        stacked=False,
        label_space=72,
        integer=False,
    )
    return (
        Markup('<div class="chart-wide">')
        + wide
        + Markup('</div><div class="chart-narrow">')
        + narrow
        + Markup("</div>")
    )


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


ERROR_HEADINGS = {
    401: "Admin password needed",
    403: "Request refused",
    404: "No such admin page",
    429: "Too many wrong passwords",
}


def admin_error_page(render: Render, request: Request, error: StarletteHTTPException) -> HTMLResponse:
    """The admin area's own error page: its navigation once the password was given, no subscriber advice.

    Before the password (401, 429) it shows no navigation and does not link the admin stylesheet, which
    is itself behind the password.
    """
    signed_in = bool(getattr(request.state, "admin", False))
    nav = [(label, request.url_for(route).path, False) for route, label in NAV] if signed_in else []
    detail = error.detail if isinstance(error.detail, str) else "the request could not be handled"
    response = render(
        request,
        "admin/error.html",
        status_code=error.status_code,
        nav=nav,
        admin_stylesheet=request.url_for("admin_stylesheet").path if signed_in else None,
        heading=ERROR_HEADINGS.get(error.status_code, "This did not work"),
        message=detail,
        status=error.status_code,
    )
    response.headers.update(ADMIN_HEADERS)
    if error.headers:
        response.headers.update(error.headers)
    return response


T = TypeVar("T")


class Recent:
    """Figures that scan whole tables (digests: subscribers x days), counted at most once per `seconds`.

    The overview reads every digest of its window; at 100,000 subscribers that is millions of rows and
    seconds of work, so a reload, or two operators at once, reuses the last count. Only what the
    overview and the per-day sends table show; a subscriber's page and the lists of sends are read fresh.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable, count: Callable[[], T]) -> T:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and self.clock() - kept[0] < self.seconds:
                return cast(T, kept[1])
        value = count()
        with self._lock:
            # Old windows and days are dropped rather than kept for ever.
            now = self.clock()
            self._kept = {k: v for k, v in self._kept.items() if now - v[0] < self.seconds}
            self._kept[key] = (now, value)
        return value


@dataclass(frozen=True)
class OverviewFigures:
    counted_at: datetime
    figures: stats.Overview
    active: list[tuple[date, int]]
    digest_votes: list[stats.DigestVotes]
    topics: list[tuple[str, int]]
    papers: stats.SourceSeries


def _clamp_days(days: int) -> int:
    return min(max(days, 1), MAX_DAYS)


def admin_router(services: Services, render: Render, failed_logins: FailedLogins | None = None) -> APIRouter:  # noqa: C901, PLR0915 - a router factory: the count is its small nested handlers together
    """Every page of the admin area, behind the password check; see the module docstring for wiring."""
    stylesheet = (ADMIN_TEMPLATES / "admin.css").read_text(encoding="utf-8")
    logins = failed_logins or default_failed_logins(services.settings)
    recent = Recent(FIGURES_SECONDS)
    # The same key and cookie as the app's own `Csrf`, so the token `render` puts in the page validates here.
    csrf = Csrf(services.settings.secret_key, secure=services.settings.base_url.startswith("https://"))

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
        request.state.admin = True

    def require_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
        if not csrf.valid(request, csrf_token):
            raise HTTPException(
                status_code=403,
                detail="this form was not sent from an admin page, or the page was open too long; "
                "reload the page and press the button again. Nothing was changed",
            )

    router = APIRouter(prefix=ADMIN_PREFIX, dependencies=[Depends(require_admin)])

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
        window = _clamp_days(days)
        today = now.astimezone(UTC).date()

        def count() -> OverviewFigures:
            # Separate sessions side by side: the database runs the big scans at once, not one by one.
            def read(query: Callable[[Session], T]) -> Callable[[], T]:
                def run() -> T:
                    with services.sessions() as session:
                        return query(session)

                return run

            with ThreadPoolExecutor(max_workers=OVERVIEW_READERS) as pool:
                days_job = pool.submit(read(lambda s: stats.daily(s, today, window)))
                votes_job = pool.submit(read(lambda s: stats.votes_on_digests(s, today, window)))
                totals_job = pool.submit(read(stats.totals))
                topics_job = pool.submit(read(stats.top_topics))
                active_job = pool.submit(read(lambda s: stats.active_over_time(s, today, window)))
                counts_job = pool.submit(read(stats.subscriber_counts))
                reasons_job = pool.submit(read(stats.bounce_reasons))
                papers_job = pool.submit(read(lambda s: stats.papers_by_source(s, today, window)))
                figures = stats.Overview(
                    today=today,
                    subscribers=counts_job.result(),
                    days=days_job.result(),
                    bounce_reasons=reasons_job.result(),
                    totals=totals_job.result(),
                )
                return OverviewFigures(
                    counted_at=now,
                    figures=figures,
                    active=active_job.result(),
                    digest_votes=stats.votes_per_digest(figures.days, votes_job.result()),
                    topics=topics_job.result(),
                    papers=papers_job.result(),
                )

        counted = recent.get(("overview", today, window), count)
        figures, active = counted.figures, counted.active
        digest_votes, topics, papers = counted.digest_votes, counted.topics, counted.papers
        return page(
            request,
            "overview.html",
            "admin_overview",
            ov=figures,
            status=gather(services, now),
            charts={
                **day_charts(figures.days),
                **more_charts(figures.days, active, digest_votes, topics, papers),
            },
            counted_at=counted.counted_at,
            active_rows=[(day.isoformat(), n) for day, n in reversed(active)],
            digest_votes=digest_votes,
            topics=topics,
            papers=papers,
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
            subscriber_url=lambda sid: request.url_for("admin_subscriber", subscriber_id=sid).path,
            previous=link(listing.page - 1) if listing.has_previous else None,
            next=link(listing.page + 1) if listing.has_next else None,
        )

    @router.get("/subscribers/{subscriber_id:int}", name="admin_subscriber")
    def subscriber(request: Request, subscriber_id: int, lifted: bool = False) -> HTMLResponse:
        with services.sessions() as session:
            detail = stats.subscriber_detail(session, subscriber_id)
            if detail is None:
                raise HTTPException(status_code=404, detail=f"there is no subscriber number {subscriber_id}")
            schedule = describe(schedule_of(detail.subscriber))
            return page(
                request,
                "subscriber.html",
                "admin_subscribers",
                d=detail,
                s=detail.subscriber,
                schedule=schedule,
                lifted=lifted,
                unsuppress=request.url_for("admin_unsuppress", subscriber_id=subscriber_id).path,
                back=request.url_for("admin_subscribers").path,
            )

    @router.post(
        "/subscribers/{subscriber_id:int}/unsuppress",
        name="admin_unsuppress",
        dependencies=[Depends(require_csrf)],
    )
    def unsuppress(request: Request, subscriber_id: int) -> Response:
        """What `digest unsuppress ADDRESS` does, from the subscriber's page."""
        with transaction(services.sessions) as session:
            detail = stats.subscriber_detail(session, subscriber_id, recent=0)
            if detail is None:
                raise HTTPException(status_code=404, detail=f"there is no subscriber number {subscriber_id}")
            was_suppressed = detail.suppressed
            lift_suppression(session, detail.subscriber.email)
        target = request.url_for("admin_subscriber", subscriber_id=subscriber_id).path
        return RedirectResponse(
            target + ("?lifted=1" if was_suppressed else ""), status_code=303, headers=ADMIN_HEADERS
        )

    @router.get("/sends", name="admin_sends")
    def sends(
        request: Request,
        days: int = stats.DEFAULT_DAYS,
        before: int | None = None,
        status: str = "",
    ) -> HTMLResponse:
        if status and status not in SEND_STATUSES:
            raise HTTPException(
                status_code=404,
                detail=f"{shorten(status, 30)!r} is not a digest status ({', '.join(SEND_STATUSES)})",
            )
        now = utcnow()
        window = _clamp_days(days)

        def count() -> list[stats.DayStats]:
            with services.sessions() as session:
                return stats.daily(session, now.date(), window)

        per_day = recent.get(("daily", now.date(), window), count)
        with services.sessions() as session:
            reasons = stats.bounce_reasons(session)
            bounces = stats.recent_bounces(session)
            listing = stats.recent_sends(session, before=before, status=status or None)
        base = request.url_for("admin_sends").path

        def link(**query: Any) -> str:
            kept = {"status": status} if status else {}
            merged = {**kept, **query}
            return base + ("?" + urlencode(merged) if merged else "")

        return page(
            request,
            "sends.html",
            "admin_sends",
            days=per_day,
            chart=day_charts(per_day)["sends"],
            reasons=reasons,
            bounces=bounces,
            listing=listing,
            statuses=SEND_STATUSES,
            action=base,
            first_page=link() if before is not None else None,
            older=link(before=listing.older_than) if listing.older_than is not None else None,
            subscriber_url=lambda sid: request.url_for("admin_subscriber", subscriber_id=sid).path,
        )

    @router.get("/sources", name="admin_sources")
    def sources(request: Request) -> HTMLResponse:
        now = utcnow()
        with services.sessions() as session:
            health = source_health(session, now, services.settings.extra_holidays)
            files, file_count, file_papers = stats.file_ingests(session)
            papers = stats.papers_by_source(session, now.date(), stats.DEFAULT_DAYS)
        return page(
            request,
            "sources.html",
            "admin_sources",
            sources=health,
            files=files,
            file_count=file_count,
            file_papers=file_papers,
            chart=papers_chart(papers),
            papers=papers,
        )

    @router.get("/evaluation", name="admin_evaluation")
    def evaluation(request: Request) -> HTMLResponse:
        path = evaluation_figures.evaluation_path(services.settings.data_dir)
        problem = None
        try:
            figures = evaluation_figures.load_evaluation(path)
        except (OSError, ValueError) as exc:
            figures, problem = None, str(exc)
        plot = path.with_name(EVALUATION_PLOT)
        return page(
            request,
            "evaluation.html",
            "admin_evaluation",
            figures=figures,
            problem=problem,
            path=str(path),
            columns=evaluation_figures.EVALUATION_METRICS,
            metric=metric,
            chart=evaluation_chart(figures) if figures and figures.methods else None,
            plot=request.url_for("admin_evaluation_plot").path if plot.is_file() else None,
            plot_path=str(plot),
            plot_drawn=datetime.fromtimestamp(plot.stat().st_mtime, UTC) if plot.is_file() else None,
        )

    @router.get("/evaluation.png", name="admin_evaluation_plot")
    def evaluation_plot() -> Response:
        plot = evaluation_figures.evaluation_path(services.settings.data_dir).with_name(EVALUATION_PLOT)
        if not plot.is_file():
            raise HTTPException(status_code=404, detail="no evaluation plot has been drawn in this data dir")
        return FileResponse(plot, media_type="image/png", headers=ADMIN_HEADERS)

    # Last: any other /admin address, so it too needs the password before it answers 404.
    @router.api_route(
        "/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    def unknown(rest: str) -> Response:
        raise HTTPException(status_code=404, detail="there is no admin page at this address")

    return router
