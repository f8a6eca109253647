"""The admin pages: the password gate, the figures they show, the charts, and the evaluation results file."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import Markup
from sqlalchemy import text
from sqlalchemy.orm import Session

from digest import evaluation_figures, stats
from digest.cli import main
from digest.db import transaction, upgrade
from digest.models import (
    Cadence,
    Digest,
    DigestStatus,
    Feedback,
    Listing,
    Source,
    Subscriber,
    SubscriberStatus,
    Vote,
    utcnow,
)
from digest.services import Services
from digest.web import app as web_app
from digest.web import create_app
from digest.web.admin import admin_router, password_matches
from digest.web.charts import Series, bar_chart, scale
from tests.support.env import make_settings
from tools.evaluation import title_key

PASSWORD = "correct horse battery staple"
PAGES = ["/admin", "/admin/subscribers", "/admin/sends", "/admin/sources", "/admin/evaluation"]


class NullDispatcher:
    def send_digests(self, digest_ids: Sequence[int]) -> None:
        pass

    def send_confirmation(self, subscriber_id: int) -> None:
        pass

    def retrain(self, subscriber_id: int) -> None:
        pass


def build_app(services: Services) -> FastAPI:
    """The app as `create_app` builds it once `app.include_router(admin_router(services, pages.render))` is
    added there: the router gets the very renderer `create_app` made, however that is constructed."""
    made: list[web_app.Pages] = []

    class RecordedPages(web_app.Pages):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    with patch.object(web_app, "Pages", RecordedPages):
        app = create_app(services, NullDispatcher())
    (pages,) = made
    app.include_router(admin_router(services, pages.render))
    return app


def basic(password: str, user: str = "admin") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(PASSWORD)


@pytest.fixture
def admin_services(tmp_path: Path) -> Iterator[Services]:
    svc = Services.build(make_settings(tmp_path, DIGEST_ADMIN_PASSWORD=PASSWORD))
    upgrade(svc.engine)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def admin(admin_services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(admin_services), follow_redirects=False) as client:
        yield client


# Rows ----------------------------------------------------------------------------------------------------


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def add_subscriber(
    session: Session,
    email: str,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    *,
    created_at: datetime,
    cadence: Cadence = Cadence.DAILY,
    **extra: object,
) -> Subscriber:
    subscriber = Subscriber(
        email=email, topics=["llms"], status=status, cadence=cadence, created_at=created_at, **extra
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def add_digest(session: Session, subscriber: Subscriber, day: date, status: DigestStatus) -> None:
    session.add(
        Digest(
            subscriber_id=subscriber.id,
            digest_date=day,
            status=status,
            candidates_until=noon(day),
            sent_at=noon(day) if status is DigestStatus.SENT else None,
        )
    )


def add_vote(session: Session, subscriber: Subscriber, vote: Vote, at: datetime) -> None:
    listing = Listing(
        title_key=f"paper {at} {subscriber.id}", title="A paper", abstract="An abstract.", source="t"
    )
    session.add(listing)
    session.flush()
    session.add(Feedback(subscriber_id=subscriber.id, listing_id=listing.id, vote=int(vote), updated_at=at))


@dataclass
class Seeded:
    today: date
    busy_day: date


def seed(services: Services, today: date) -> Seeded:
    """3 active (1 paused), 2 pending, 1 unsubscribed, 2 bounced; digests on several days; 3 votes."""
    day = [today - timedelta(days=k) for k in range(45)]
    with transaction(services.sessions) as session:
        ann = add_subscriber(session, "ann@example.org", created_at=noon(day[5]))
        bob = add_subscriber(session, "bob@example.org", created_at=noon(day[5]))
        add_subscriber(session, "cy@example.org", created_at=noon(day[3]), cadence=Cadence.PAUSED)
        add_subscriber(session, "dee@example.org", SubscriberStatus.PENDING, created_at=noon(day[2]))
        add_subscriber(session, "eve@example.org", SubscriberStatus.PENDING, created_at=noon(day[40]))
        add_subscriber(
            session,
            "fay@example.org",
            SubscriberStatus.UNSUBSCRIBED,
            created_at=noon(day[9]),
            unsubscribed_at=noon(day[2]),
        )
        for email, reason in (
            ("gus@example.org", "550 mailbox unknown"),
            ("hal@example.org", "550 mailbox unknown"),
        ):
            add_subscriber(
                session,
                email,
                SubscriberStatus.BOUNCED,
                created_at=noon(day[20]),
                bounced_at=noon(day[4]),
                bounce_reason=reason,
            )
        add_digest(session, ann, day[1], DigestStatus.SENT)
        add_digest(session, bob, day[1], DigestStatus.SENT)
        add_digest(session, ann, day[2], DigestStatus.FAILED)
        add_digest(session, bob, day[4], DigestStatus.BOUNCED)
        add_digest(session, ann, day[3], DigestStatus.EMPTY)
        # Outside the 30-day window: counted all-time only.
        add_digest(session, ann, day[40], DigestStatus.SENT)
        add_vote(session, ann, Vote.MORE, noon(day[1]))
        add_vote(session, bob, Vote.MORE, noon(day[1]))
        add_vote(session, ann, Vote.LESS, noon(day[2]))
    return Seeded(today=today, busy_day=day[1])


def value(html: str, element_id: str) -> int:
    match = re.search(rf'id="{element_id}">(\d+)<', html)
    assert match, f"no #{element_id} in the page"
    return int(match.group(1))


def chart(html: str, chart_id: str) -> str:
    match = re.search(rf'<svg[^>]*id="{chart_id}".*?</svg>', html, re.S)
    assert match, f"no chart {chart_id}"
    return match.group(0)


# The gate ------------------------------------------------------------------------------------------------


def test_every_admin_url_is_404_without_a_password(services: Services) -> None:
    assert services.settings.admin_password is None
    with TestClient(build_app(services)) as client:
        unknown = client.get("/no-such-page")
        assert unknown.status_code == 404
        for url in [*PAGES, "/admin/static/admin.css", "/admin/subscribers?page=abc", "/admin/nope"]:
            for headers in ({}, AUTH, basic("anything at all")):
                response = client.get(url, headers=headers)
                # The same answer as for a URL the app does not have.
                assert response.status_code == 404, url
                assert response.headers["content-type"] == unknown.headers["content-type"]
                assert "www-authenticate" not in response.headers
                assert "admin" not in response.text.lower()


@pytest.mark.parametrize("url", [*PAGES, "/admin/static/admin.css"])
def test_missing_or_wrong_credentials_are_refused(admin: TestClient, url: str) -> None:
    refusals = [
        {},
        basic("not the password"),
        basic(PASSWORD.upper()),
        basic(PASSWORD + " "),
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic not*base64"},
        {"Authorization": "Basic " + base64.b64encode(PASSWORD.encode()).decode()},  # no colon
        {"Authorization": "Basic"},
    ]
    for headers in refusals:
        response = admin.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        assert response.headers["cache-control"] == "no-store"
        assert PASSWORD not in response.text


def test_any_user_name_with_the_password_gets_in(admin: TestClient) -> None:
    for user in ("admin", "", "someone else", "ünïcode"):
        assert admin.get("/admin", headers=basic(PASSWORD, user)).status_code == 200


def test_password_check_handles_non_ascii_passwords() -> None:
    header = basic("pässwörd-with-ümlauts")["Authorization"]
    assert password_matches(header, "pässwörd-with-ümlauts")
    assert not password_matches(header, "passwort-with-umlauts")
    assert not password_matches(None, "x")


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_privately(admin: TestClient, url: str) -> None:
    response = admin.get(url, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "noindex" in response.headers["x-robots-tag"]
    assert "script-src 'nonce-" in response.headers["content-security-policy"]
    html = response.text
    assert '<link rel="stylesheet" href="/admin/static/admin.css">' in html
    assert 'aria-current="page"' in html
    # Nothing inline that the CSP would block.
    assert "<script" not in html and "style=" not in html and "<style" not in html


def test_admin_stylesheet_is_served_behind_the_gate(admin: TestClient) -> None:
    response = admin.get("/admin/static/admin.css", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in response.text


# What the pages show ---------------------------------------------------------------------------------------


def test_overview_counts_match_the_rows(admin: TestClient, admin_services: Services) -> None:
    seeded = seed(admin_services, utcnow().date())
    html = admin.get("/admin", headers=AUTH).text
    assert value(html, "count-active") == 3
    assert value(html, "count-paused") == 1
    assert value(html, "count-pending") == 2
    assert value(html, "count-unsubscribed") == 1
    assert value(html, "count-bounced") == 2
    assert value(html, "count-total") == 8
    assert value(html, "window-sent") == 2  # the one 40 days ago is outside the window
    assert value(html, "window-failed") == 1
    assert value(html, "window-bounced") == 1
    assert value(html, "window-new") == 7  # every subscriber but the one created 40 days ago
    assert value(html, "window-unsubscribes") == 1
    assert value(html, "window-more") == 2
    assert value(html, "window-less") == 1
    assert value(html, "total-sent") == 3
    assert value(html, "total-failed") == 1
    assert value(html, "total-bounced") == 1
    assert "550 mailbox unknown" in html

    sends = chart(html, "chart-sends")
    assert sends.count('<g class="bar">') == 30
    assert f"<title>{seeded.busy_day.isoformat()}: sent 2, failed 0, bounced 0</title>" in sends
    assert 'role="img"' in sends and 'aria-labelledby="chart-sends-title chart-sends-desc"' in sends
    votes = chart(html, "chart-votes")
    assert votes.count('<g class="bar">') == 30
    assert f"<title>{seeded.busy_day.isoformat()}: more 2, less 0</title>" in votes
    assert chart(html, "chart-subscribers").count('<g class="bar">') == 30
    # The same numbers as a table, for those who cannot see the chart.
    assert re.search(
        rf'<th scope="row">{seeded.busy_day.isoformat()}</th><td class="num">2</td><td class="num">0</td>',
        html,
    )


def test_overview_window_can_be_chosen(admin: TestClient) -> None:
    html = admin.get("/admin?days=7", headers=AUTH).text
    assert chart(html, "chart-sends").count('<g class="bar">') == 7
    assert chart(admin.get("/admin?days=0", headers=AUTH).text, "chart-sends").count('<g class="bar">') == 1


def test_sends_page_lists_days_and_bounces(admin: TestClient, admin_services: Services) -> None:
    seeded = seed(admin_services, utcnow().date())
    html = admin.get("/admin/sends", headers=AUTH).text
    assert chart(html, "chart-sends").count('<g class="bar">') == 30
    assert seeded.busy_day.isoformat() in html
    assert "gus@example.org" in html and "hal@example.org" in html
    assert html.count("550 mailbox unknown") == 3  # once among the reasons, once per address


def test_subscriber_search_finds_substrings_and_escapes(admin: TestClient, admin_services: Services) -> None:
    with transaction(admin_services.sessions) as session:
        for email in (
            "alice@example.org",
            "ALICE.two@Example.org",
            "bob@example.org",
            "x<script>@example.org",
        ):
            add_subscriber(session, email, created_at=utcnow(), bounce_reason="<b>bold</b> reason")

    everyone = admin.get("/admin/subscribers", headers=AUTH).text
    assert "bob@example.org" in everyone and "4 address(es)" in everyone

    found = admin.get("/admin/subscribers", params={"q": "alice"}, headers=AUTH).text
    assert "alice@example.org" in found and "ALICE.two@Example.org" in found
    assert "bob@example.org" not in found

    html = admin.get("/admin/subscribers", params={"q": "<script"}, headers=AUTH).text
    assert "x&lt;script&gt;@example.org" in html
    assert "<script>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt; reason" in html and "<b>bold</b>" not in html
    assert 'value="&lt;script"' in html  # the search box echoes the query escaped
    assert "bob@example.org" not in html

    # LIKE wildcards are matched literally.
    assert "alice@example.org" not in admin.get("/admin/subscribers?q=%25", headers=AUTH).text
    assert "alice@example.org" not in admin.get("/admin/subscribers?q=_", headers=AUTH).text


def test_subscribers_are_paginated(admin_services: Services, admin: TestClient) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with transaction(admin_services.sessions) as session:
        for i in range(stats.SUBSCRIBERS_PER_PAGE + 5):
            add_subscriber(session, f"user{i:03d}@example.org", created_at=start + timedelta(minutes=i))
    first = admin.get("/admin/subscribers", headers=AUTH).text
    assert "user054@example.org" in first and "user004@example.org" not in first
    assert 'href="/admin/subscribers?page=2"' in first and "page 1 of 2" in first
    second = admin.get("/admin/subscribers?page=2", headers=AUTH).text
    assert "user004@example.org" in second and "user054@example.org" not in second
    assert 'href="/admin/subscribers?page=1"' in second
    # Past the end: the last page.
    assert "page 2 of 2" in admin.get("/admin/subscribers?page=99", headers=AUTH).text

    with admin_services.sessions() as session:
        page = stats.subscribers_page(session, search="user00", page=2, per_page=4)
    assert page.total == 10 and page.pages == 3
    assert [r.email for r in page.rows] == [f"user00{i}@example.org" for i in (5, 4, 3, 2)]


def test_sources_page_shows_health(admin: TestClient, admin_services: Services) -> None:
    assert "digest sources add" in admin.get("/admin/sources", headers=AUTH).text
    with transaction(admin_services.sessions) as session:
        session.add(
            Source(name="arxiv <cs.LG>", kind="arxiv_rss", config={}, interval_minutes=60, quiet_days=2)
        )
    html = admin.get("/admin/sources", headers=AUTH).text
    assert "arxiv &lt;cs.LG&gt;" in html
    assert "never fetched" in html


# The statistics on both databases ------------------------------------------------------------------------


def test_stats_group_by_utc_day_on_both_databases(any_services: Services) -> None:
    today = date(2026, 3, 10)
    seed(any_services, today)
    late, early = datetime(2026, 3, 5, 23, 30, tzinfo=UTC), datetime(2026, 3, 6, 0, 30, tzinfo=UTC)
    with transaction(any_services.sessions) as session:
        late_sub = add_subscriber(session, "late@example.org", created_at=late)
        add_subscriber(session, "early@example.org", created_at=early)
        add_vote(session, late_sub, Vote.LESS, late)
        add_vote(session, late_sub, Vote.MORE, early)

    with any_services.sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            # date() of a timestamptz follows the session's zone; the figures must not.
            session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        days = stats.daily(session, today, 30)
        counts = stats.subscriber_counts(session)
        reasons = stats.bounce_reasons(session)
        totals = stats.totals(session)
        bounces = stats.recent_bounces(session)
        overview = stats.overview(session, datetime(2026, 3, 10, 18, tzinfo=UTC), 30)

    assert [d.day for d in days] == [today - timedelta(days=k) for k in range(29, -1, -1)]
    by_day = {d.day: d for d in days}
    assert by_day[today - timedelta(days=1)].sent == 2
    assert by_day[today - timedelta(days=2)].failed == 1
    assert by_day[today - timedelta(days=4)].bounced == 1
    assert sum(d.sent for d in days) == 2
    assert by_day[date(2026, 3, 5)].new_subscribers == 3  # ann and bob (day[5]) and "late"
    assert by_day[date(2026, 3, 6)].new_subscribers == 1
    assert by_day[date(2026, 3, 5)].votes_less == 1 and by_day[date(2026, 3, 5)].votes_more == 0
    assert by_day[date(2026, 3, 6)].votes_more == 1
    assert by_day[today - timedelta(days=1)].votes_more == 2
    assert by_day[today - timedelta(days=2)].unsubscribes == 1
    assert sum(d.votes_more + d.votes_less for d in days) == 5

    assert counts == stats.SubscriberCounts(pending=2, active=5, unsubscribed=1, bounced=2, paused=1)
    assert counts.total == 10 and counts.receiving == 4
    assert [(r.reason, r.count) for r in reasons] == [("550 mailbox unknown", 2)]
    assert reasons[0].last_at == noon(today - timedelta(days=4))
    assert totals.digests_with("sent") == 3 and totals.digests_with("empty") == 1
    assert totals.digests_with("pending") == 0
    assert (totals.votes_more, totals.votes_less) == (3, 2)
    assert totals.listings == 5
    assert {b.email for b in bounces} == {"gus@example.org", "hal@example.org"}
    assert overview.today == today and overview.window_sum("sent") == 2


def test_stats_of_an_empty_database(any_services: Services) -> None:
    with any_services.sessions() as session:
        days = stats.daily(session, date(2026, 1, 31), 3)
        assert stats.subscriber_counts(session) == stats.SubscriberCounts()
        assert stats.bounce_reasons(session) == []
        assert stats.subscribers_page(session, search="x").rows == []
    assert [(d.day, d.sent, d.votes_more) for d in days] == [
        (date(2026, 1, 29), 0, 0),
        (date(2026, 1, 30), 0, 0),
        (date(2026, 1, 31), 0, 0),
    ]
    with pytest.raises(ValueError):
        stats.window(date(2026, 1, 1), 0)


# Charts --------------------------------------------------------------------------------------------------


def bars(svg: str) -> str:
    """The bars only, without the legend's colour keys."""
    return svg[svg.index('<g class="bars">') :]


def test_chart_has_one_titled_bar_per_label() -> None:
    labels = ["2026-01-01", "2026-01-02", "2026-01-03"]
    svg = bar_chart(
        labels,
        [Series("sent", [1, 0, 4], 0), Series("failed", [1, 0, 0], 1)],
        title="Digests per day",
        chart_id="c1",
        y_label="digests",
        x_label="day",
    )
    assert isinstance(svg, Markup)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<g class="bar">') == 3
    assert "<title>2026-01-01: sent 1, failed 1</title>" in svg
    assert "<title>2026-01-02: sent 0, failed 0</title>" in svg
    # Only non-zero segments are drawn: 2 on day one, none on day two, 1 on day three.
    assert len(re.findall(r'<rect class="tone-\d"', bars(svg))) == 3
    assert 'role="img"' in svg and 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">Digests per day</title>' in svg
    assert "Totals: sent 5, failed 1. Highest: 4 on 2026-01-03." in svg
    assert ">digests</text>" in svg and ">day</text>" in svg


def test_stacked_bars_are_proportional() -> None:
    svg = bar_chart(["a", "b"], [Series("x", [2, 4]), Series("y", [2, 0], 1)], title="t", chart_id="c")
    heights = [float(h) for h in re.findall(r'<rect class="tone-\d"[^>]*height="([\d.]+)"', bars(svg))]
    # a: 2 + 2 stacked, b: 4; the axis tops out at 4, so all three stacks reach the same height.
    assert heights[0] == pytest.approx(heights[1]) and heights[2] == pytest.approx(heights[0] + heights[1])


def test_grouped_bars_sit_side_by_side() -> None:
    svg = bar_chart(["a"], [Series("x", [3]), Series("y", [3], 1)], title="t", chart_id="c", stacked=False)
    rects = re.findall(r'<rect class="tone-\d"[^>]* x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', bars(svg))
    (x0, y0, w0), (x1, y1, _) = rects
    assert y0 == y1 and float(x1) == pytest.approx(float(x0) + float(w0))


def test_chart_escapes_every_text() -> None:
    svg = bar_chart(
        ["<b>day</b>"],
        [Series('"><script>alert(1)</script>', [1])],
        title="<title>",
        chart_id="c",
        axis_labels=["&"],
        y_label="<y>",
    )
    assert "<script>" not in svg and "<b>" not in svg and "<title><title>" not in svg
    assert "&lt;b&gt;day&lt;/b&gt;" in svg and "&amp;" in svg and "&lt;y&gt;" in svg


def test_chart_thins_axis_labels_but_keeps_the_last() -> None:
    labels = [f"d{i:02d}" for i in range(60)]
    svg = bar_chart(labels, [Series("n", [1] * 60)], title="t", chart_id="c")
    axis = re.search(r'<g class="axis x-axis">(.*?)</g>', svg, re.S)
    assert axis is not None
    shown = re.findall(r">(d\d\d)</text>", axis.group(1))
    assert 5 < len(shown) < 60 and shown[-1] == "d59"
    assert svg.count('<g class="bar">') == 60


def test_chart_edge_cases() -> None:
    empty = bar_chart([], [], title="t", chart_id="c")
    assert "No data" in empty and 'role="img"' in empty
    zeros = bar_chart(["a", "b"], [Series("n", [0, 0])], title="t", chart_id="c")
    assert zeros.count('<g class="bar">') == 2 and "Highest" not in zeros
    with pytest.raises(ValueError):
        bar_chart(["a"], [Series("n", [1, 2])], title="t", chart_id="c")
    with pytest.raises(ValueError):
        bar_chart(["a"], [Series("n", [-1])], title="t", chart_id="c")
    with pytest.raises(ValueError):
        bar_chart(["a"], [Series("n", [1])], title="t", chart_id="c", axis_labels=[])


@pytest.mark.parametrize(
    ("top", "integer", "expected_max", "expected_ticks"),
    [
        (0, True, 1, [0, 1]),
        (3, True, 3, [0, 1, 2, 3]),
        (10, True, 10, [0, 5, 10]),
        (37, True, 40, [0, 10, 20, 30, 40]),
        (0.8, False, 0.8, [0, 0.2, 0.4, 0.6, 0.8]),
        (0.9, False, 1, [0, 0.25, 0.5, 0.75, 1]),
    ],
)
def test_scale_is_round(top: float, integer: bool, expected_max: float, expected_ticks: list[float]) -> None:
    axis_max, ticks = scale(top, integer=integer)
    assert axis_max == pytest.approx(expected_max)
    assert ticks == pytest.approx(expected_ticks)


# The evaluation results ------------------------------------------------------------------------------------


def tiny_corpus(folder: Path) -> tuple[Path, Path]:
    """30 papers about cats, dogs or birds, and judgments for a cats persona and a dogs one."""
    listings = folder / "listings"
    listings.mkdir(parents=True)
    judgments = folder / "judgments"
    judgments.mkdir()
    lines, grades = [], ["persona\tgrade\ttitle_key"]
    for i in range(30):
        animal = ("cats", "dogs", "birds")[i % 3]
        title = f"A study of {animal} number {i}"
        sentence = f"The {animal} behave in interesting ways and we measure how {animal} respond to stimuli. "
        lines += [title, f"We study {animal} in setting {i}. " + sentence * 4]
        if animal != "birds":
            grades.append(f"{animal}\t2\t{title_key(title)}")
    (listings / "001_tiny.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    personas = [{"id": "cats", "keywords": "cats, whiskers"}, {"id": "dogs", "keywords": "dogs, barking"}]
    (judgments / "personas.json").write_text(json.dumps(personas), encoding="utf-8")
    (judgments / "judgments.tsv").write_text("\n".join(grades) + "\n", encoding="utf-8")
    return listings, judgments


def test_evaluate_saves_its_figures_and_the_page_shows_them(tmp_path: Path) -> None:
    listings, judgments = tiny_corpus(tmp_path / "corpus")
    env = {
        "DIGEST_DATA_DIR": str(tmp_path / "data"),
        "DIGEST_SECRET_KEY": "admin-test-secret-key-0123456789",
        "DIGEST_ADMIN_PASSWORD": PASSWORD,
    }
    before = datetime.now(UTC)
    args = ["evaluate", "--repeats", "1", "--days", "2", "--no-plot", "--listings", str(listings)]
    result = CliRunner().invoke(main, [*args, "--judgments", str(judgments), "--no-own-labels"], env=env)
    assert result.exit_code == 0, result.output
    path = tmp_path / "data" / "evaluation.json"
    assert f"results: {path}" in result.output

    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["orderings"] == 1 and data["seeds"] == [7]
    assert data["papers"] == 30 and data["days"] == 2 and data["subscribers"] == ["cats", "dogs"]
    assert set(data["methods"]) == {"random", "keywords", "rocchio", "svm", "ours"}
    for metrics in data["methods"].values():
        assert set(metrics) == set(evaluation_figures.EVALUATION_METRICS)
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("ndcg_first", "ndcg_later", "precision_later"))
    assert before <= datetime.fromisoformat(data["ran_at"]) <= datetime.now(UTC)
    figures = evaluation_figures.load_evaluation(path)
    assert figures is not None and figures.to_json() == data

    services = Services.build(make_settings(tmp_path, DIGEST_ADMIN_PASSWORD=PASSWORD))
    try:
        upgrade(services.engine)
        with TestClient(build_app(services)) as client:
            html = client.get("/admin/evaluation", headers=AUTH).text
    finally:
        services.close()
    assert "nDCG@10 day 1" in html and "P@5 later" in html
    for name in data["methods"]:
        assert f'<th scope="row">{name}</th>' in html
    assert f"{data['methods']['keywords']['ndcg_later']:.3f}" in html
    assert "30 judged papers in 2 simulated days" in html


def test_evaluation_page_says_how_to_produce_results(admin: TestClient, admin_services: Services) -> None:
    html = admin.get("/admin/evaluation", headers=AUTH).text
    assert "digest evaluate" in html and "No evaluation has been run" in html
    assert str(evaluation_figures.evaluation_path(admin_services.settings.data_dir)) in html

    path = evaluation_figures.evaluation_path(admin_services.settings.data_dir)
    path.write_text('{"format": 99}', encoding="utf-8")
    html = admin.get("/admin/evaluation", headers=AUTH).text
    assert "could not be read" in html


def test_evaluation_figures_round_trip(tmp_path: Path) -> None:
    figures = evaluation_figures.EvaluationFigures(
        ran_at=datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
        orderings=2,
        seeds=[7, 8],
        papers=10,
        days=2,
        subscribers=["<cats>"],
        methods={
            "ours": {
                "ndcg_first": 0.5,
                "ndcg_later": None,
                "precision_first": 1.0,
                "precision_later": 0.25,
                "papers_per_digest": 9.5,
                "junk_share": 0.25,
                "ms_per_subscriber_day": 12.5,
            }
        },
    )
    path = evaluation_figures.save_evaluation(figures, tmp_path / "deep" / "evaluation.json")
    assert evaluation_figures.load_evaluation(path) == figures
    assert evaluation_figures.load_evaluation(tmp_path / "missing.json") is None
    path.write_text("not json", encoding="utf-8")
    with pytest.raises(ValueError):
        evaluation_figures.load_evaluation(path)
    assert list((tmp_path / "deep").iterdir()) == [path]  # no temporary file left behind


def test_wrong_passwords_lock_the_client_out_before_the_password_is_checked(admin_services: Services) -> None:
    from digest.limits import FailedLogins, MemoryCounter

    now = [1_000_000.0]
    logins = FailedLogins(MemoryCounter(clock=lambda: now[0]), allowed=3, window_seconds=60)
    app = create_app(admin_services, NullDispatcher(), admin_logins=logins)
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/admin").status_code == 401  # no credentials: not counted as a guess
        for _ in range(3):
            assert client.get("/admin", headers=basic("wrong-password-guess")).status_code == 401
        locked = client.get("/admin", headers=AUTH)
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "60"
        assert client.get("/admin", headers=basic("another-wrong-guess")).status_code == 429
        now[0] += 61
        assert client.get("/admin", headers=AUTH).status_code == 200
