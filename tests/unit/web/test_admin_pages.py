"""The admin pages an operator asks questions of: one subscriber (and lifting a suppression), individual
sends, papers from files, the evaluation plot, the extra charts, and the admin's own error pages.

Through the real app over HTTP, as tests/unit/web/test_admin.py builds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from digest import stats
from digest.db import transaction, upgrade
from digest.ingest.files import ingest_paths
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from tests.support.admin_data import SOURCE_NAME, World, build_world, noon
from tests.support.env import make_settings
from tests.unit.web.test_admin import AUTH, PAGES, PASSWORD, basic, build_app, chart


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
    # https, as the settings' base URL is: the CSRF cookie is then a Secure one.
    app = build_app(admin_services)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield client


LISTING_TEXT = (
    '{"title": "A first paper on retrieval", "abstract": "We study retrieval."}\n'
    '{"title": "A second paper on graph neural networks", "abstract": "We study graphs."}\n'
)
LISTING_NAME = "manual-dump.jsonl"


def world_of(services: Services, tmp_path: Path) -> World:
    listing = tmp_path / LISTING_NAME
    listing.write_text(LISTING_TEXT, encoding="utf-8")
    return build_world(services, utcnow().date(), [listing])


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def status_of(services: Services, subscriber_id: int) -> SubscriberStatus:
    with services.sessions() as session:
        row = session.get(Subscriber, subscriber_id)
        assert row is not None
        return row.status


# One subscriber ------------------------------------------------------------------------------------------


def test_subscriber_page_answers_who_what_when(
    admin: TestClient, admin_services: Services, tmp_path: Path
) -> None:
    world = world_of(admin_services, tmp_path)
    listing = admin.get("/admin/subscribers", headers=AUTH).text
    assert f'<a href="/admin/subscribers/{world.ann}">ann@example.org</a>' in listing
    found = admin.get("/admin/subscribers?q=ann", headers=AUTH).text
    assert f'href="/admin/subscribers/{world.ann}"' in found

    response = admin.get(f"/admin/subscribers/{world.ann}", headers=AUTH)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    html = response.text
    assert "<h1" in html and "ann@example.org" in html
    assert re.search(r'id="subscriber-topics">large language models, retrieval<', html)
    assert 'id="subscriber-schedule">every day at 07:00 Europe/Berlin<' in html
    assert 'id="subscriber-status"><span class="status-active">active<' in html
    assert '<span id="votes-more">1</span>' in html and '<span id="votes-less">1</span>' in html
    assert "A fetched paper about retrieval, number 0" in html  # a recent vote's paper
    # Two digests, newest first, each with its 3 papers; the failed one with its error.
    rows = re.findall(r'<tr><th scope="row">(\d{4}-\d\d-\d\d)</th><td><span class="status-(\w+)">', html)
    today = world.today
    assert rows == [
        ((today - timedelta(days=1)).isoformat(), "sent"),
        ((today - timedelta(days=4)).isoformat(), "failed"),
    ]
    assert html.count('<td class="num">3</td>') >= 2
    assert "421 try again later" in html
    assert "Not suppressed" in html and "lift-suppression" not in html
    assert "<script" not in html and "style=" not in html


def test_weekly_and_paused_schedules_are_described(
    admin: TestClient, admin_services: Services, tmp_path: Path
) -> None:
    world_of(admin_services, tmp_path)
    with admin_services.sessions() as session:
        ids = {s.email: s.id for s in session.query(Subscriber)}
    assert (
        "every Wednesday at 06:00 UTC"
        in admin.get(f"/admin/subscribers/{ids['bob@example.org']}", headers=AUTH).text
    )
    assert (
        'id="subscriber-schedule">paused<'
        in admin.get(f"/admin/subscribers/{ids['cy@example.org']}", headers=AUTH).text
    )


def test_an_unknown_subscriber_is_the_admin_404(admin: TestClient) -> None:
    response = admin.get("/admin/subscribers/99999", headers=AUTH)
    assert response.status_code == 404
    assert "No such admin page" in response.text and "There is no subscriber number 99999." in response.text
    assert 'aria-label="Admin pages"' in response.text and "subscribe again" not in response.text
    assert admin.get("/admin/subscribers/99999").status_code == 401


def test_lifting_a_suppression_needs_the_csrf_token(admin: TestClient, admin_services: Services) -> None:
    world = build_world(admin_services, utcnow().date())
    page_url = f"/admin/subscribers/{world.bounced}"
    post_url = f"{page_url}/unsuppress"
    html = admin.get(page_url, headers=AUTH).text
    assert "Suppressed: no mail goes to this address" in html and "550 5.1.1 mailbox unknown" in html
    assert f'<form method="post" action="{post_url}"' in html
    token = csrf_token(html)

    # No token, a wrong one, or one made for another form: refused, and nothing changes.
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": token + "x"}):
        refused = admin.post(post_url, data=data, headers=AUTH)
        assert refused.status_code == 403, data
        assert "Nothing was changed" in refused.text and "subscribe again" not in refused.text
        assert status_of(admin_services, world.bounced) is SubscriberStatus.BOUNCED
    other = csrf_token(admin.get(f"/admin/subscribers/{world.complained}", headers=AUTH).text)
    assert admin.post(post_url, data={"csrf_token": other}, headers=AUTH).status_code == 403
    # The token is tied to this browser's cookie: another client cannot replay it.
    with TestClient(admin.app, base_url="https://testserver", follow_redirects=False) as stranger:
        assert stranger.post(post_url, data={"csrf_token": token}, headers=AUTH).status_code == 403
    # Without the password the form is not even looked at.
    assert admin.post(post_url, data={"csrf_token": token}).status_code == 401
    assert status_of(admin_services, world.bounced) is SubscriberStatus.BOUNCED

    lifted = admin.post(post_url, data={"csrf_token": token}, headers=AUTH)
    assert lifted.status_code == 303 and lifted.headers["location"] == f"{page_url}?lifted=1"
    with admin_services.sessions() as session:
        row = session.get(Subscriber, world.bounced)
        assert row is not None
        assert (
            row.status is SubscriberStatus.UNSUBSCRIBED
            and row.bounced_at is None
            and row.bounce_reason is None
        )
    after = admin.get(lifted.headers["location"], headers=AUTH).text
    assert "Suppression lifted" in after and "lift-suppression" not in after
    # Once more: nothing left to lift, so no "lifted" message.
    again = admin.post(post_url, data={"csrf_token": token}, headers=AUTH)
    assert again.status_code == 303 and again.headers["location"] == page_url


def test_a_complaint_is_a_suppression_too(admin: TestClient, admin_services: Services) -> None:
    world = build_world(admin_services, utcnow().date())
    url = f"/admin/subscribers/{world.complained}"
    html = admin.get(url, headers=AUTH).text
    assert "complaint: marked as spam" in html and 'id="lift-suppression"' in html
    admin.post(f"{url}/unsuppress", data={"csrf_token": csrf_token(html)}, headers=AUTH)
    with admin_services.sessions() as session:
        row = session.get(Subscriber, world.complained)
        assert row is not None and row.bounce_reason is None
    assert 'id="lift-suppression"' not in admin.get(url, headers=AUTH).text


# Sends -----------------------------------------------------------------------------------------------------


def send_rows(html: str) -> list[tuple[str, str, str]]:
    """(recipient, status, papers) of each row of the digests table."""
    table = html[html.index('<table class="sends">') :]
    table = table[: table.index("</table>")]
    return re.findall(
        r'<a href="/admin/subscribers/\d+">([^<]+)</a></td>.*?<span class="status-(\w+)">\w+</span></td>\s*'
        r'<td class="num">(\d+)</td>',
        table,
        re.S,
    )


def test_sends_lists_each_digest_newest_first(admin: TestClient, admin_services: Services) -> None:
    build_world(admin_services, utcnow().date())
    html = admin.get("/admin/sends", headers=AUTH).text
    assert send_rows(html) == [
        ("ann@example.org", "sent", "3"),
        ("bob@example.org", "sent", "3"),
        ("gus@example.org", "bounced", "3"),
        ("ann@example.org", "failed", "3"),
    ]
    assert "421 try again later, gave up after 5 attempts" in html
    assert '<table class="per-day">' in html and chart(html, "chart-sends")  # the daily totals stay

    failed = admin.get("/admin/sends?status=failed", headers=AUTH).text
    assert send_rows(failed) == [("ann@example.org", "failed", "3")]
    assert '<option value="failed" selected>' in failed
    bad = admin.get("/admin/sends?status=<x>", headers=AUTH)
    assert bad.status_code == 404 and "is not a digest status" in bad.text and "<x>" not in bad.text


def test_sends_are_paged_by_id(admin: TestClient, admin_services: Services) -> None:
    world = build_world(admin_services, utcnow().date())
    with transaction(admin_services.sessions) as session:
        for k in range(stats.SENDS_PER_PAGE + 3):
            session.add(
                Digest(
                    subscriber_id=world.ann,
                    digest_date=date(2025, 1, 1) + timedelta(days=k),
                    status=DigestStatus.SENT,
                    candidates_until=noon(date(2025, 1, 1)),
                )
            )
        session.add(
            Digest(
                subscriber_id=world.ann,
                digest_date=date(2024, 1, 1),
                status=DigestStatus.EMPTY,
                candidates_until=noon(date(2024, 1, 1)),
            )
        )
    first = admin.get("/admin/sends", headers=AUTH).text
    assert len(send_rows(first)) == stats.SENDS_PER_PAGE
    older = re.search(r'<a href="(/admin/sends\?before=\d+)" rel="next">', first)
    assert older, "no link to older sends"
    second = admin.get(older.group(1).replace("&amp;", "&"), headers=AUTH).text
    # 4 + 53 sends in all, the empty digest not among them.
    assert len(send_rows(second)) == 4 + stats.SENDS_PER_PAGE + 3 - stats.SENDS_PER_PAGE
    assert 'rel="next"' not in second and 'href="/admin/sends">← Newest' in second
    assert "2024-01-01" not in second
    assert "2024-01-01" in admin.get("/admin/sends?status=empty", headers=AUTH).text


# Sources ---------------------------------------------------------------------------------------------------


def test_sources_show_papers_from_files(admin: TestClient, admin_services: Services, tmp_path: Path) -> None:
    listing = tmp_path / LISTING_NAME
    listing.write_text(LISTING_TEXT, encoding="utf-8")
    report = ingest_paths(admin_services.sessions, [listing])
    assert report.new == 2
    html = admin.get("/admin/sources", headers=AUTH).text
    assert "No sources yet" not in html
    assert '<td class="file">manual-dump.jsonl</td>' in html and '<td class="num">2</td>' in html
    assert "2 paper(s) from 1 file(s)" in html
    papers = chart(html, "chart-papers")
    assert "files (digest ingest)" in papers and "files (digest ingest) 2" in papers

    build_world(admin_services, utcnow().date())
    html = admin.get("/admin/sources", headers=AUTH).text
    assert SOURCE_NAME in chart(html, "chart-papers")
    assert "2 paper(s) from 1 file(s)" in html  # the fetched papers are not files


# Evaluation ------------------------------------------------------------------------------------------------


def test_evaluation_page_shows_a_chart_and_the_plot(admin: TestClient, admin_services: Services) -> None:
    html = admin.get("/admin/evaluation", headers=AUTH).text
    assert "chart-evaluation" not in html and "<img" not in html
    assert admin.get("/admin/evaluation.png", headers=AUTH).status_code == 404

    build_world(admin_services, utcnow().date())
    html = admin.get("/admin/evaluation", headers=AUTH).text
    evaluation = chart(html, "chart-evaluation")
    assert "<title>ours: nDCG@10 day 1 0.52, nDCG@10 later 0.70, P@5 later 0.70</title>" in evaluation
    assert '<img src="/admin/evaluation.png"' in html and 'id="plot-drawn"' in html
    plot = admin.get("/admin/evaluation.png", headers=AUTH)
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG") and plot.headers["cache-control"] == "no-store"
    assert admin.get("/admin/evaluation.png").status_code == 401


# The overview's charts -------------------------------------------------------------------------------------


def bar_titles(svg: str) -> list[str]:
    return re.findall(r'<g class="bar"><title>([^<]+)</title>', svg)


def test_overview_charts_answer_the_operator(
    admin: TestClient, admin_services: Services, tmp_path: Path
) -> None:
    world = world_of(admin_services, tmp_path)
    html = admin.get("/admin", headers=AUTH).text
    today, yesterday = world.today.isoformat(), (world.today - timedelta(days=1)).isoformat()
    # ann, bob and cy are active now; hal (unsubscribed yesterday) and gus (bounced 2 days ago) were before.
    active = bar_titles(chart(html, "chart-active"))
    assert active[-1] == f"{today}: active 3"
    assert active[-2] == f"{yesterday}: active 3"
    assert active[-3] == f"{(world.today - timedelta(days=2)).isoformat()}: active 4"
    # Yesterday one digest was sent, and its reader voted once each way.
    votes = bar_titles(chart(html, "chart-digest-votes"))
    assert f"{yesterday}: more 1, less 1" in votes
    topics = bar_titles(chart(html, "chart-topics"))
    assert topics[0] == "retrieval: active subscribers 3"  # ann, bob and cy ("Retrieval"), not hal
    assert "robotics" not in " ".join(topics)  # only pending or bounced readers follow it
    papers = bar_titles(chart(html, "chart-papers"))
    assert f"{yesterday}: {SOURCE_NAME} 3, files (digest ingest) 2" in papers
    # Each chart also drawn for a phone, and its numbers as a table.
    for chart_id in ("chart-sends", "chart-active", "chart-digest-votes", "chart-topics", "chart-papers"):
        assert f'id="{chart_id}-narrow"' in html, chart_id
    assert "Most common topics as a table" in html


# Pages for every width and for assistive technology ---------------------------------------------------------


def test_scrolling_tables_can_be_reached_by_keyboard(
    admin: TestClient, admin_services: Services, tmp_path: Path
) -> None:
    world = world_of(admin_services, tmp_path)
    for url in [*PAGES, f"/admin/subscribers/{world.ann}", f"/admin/subscribers/{world.bounced}"]:
        html = admin.get(url, headers=AUTH).text
        wrappers = re.findall(r'<div class="table-scroll"[^>]*>', html)
        assert wrappers or url == "/admin/evaluation", url
        for wrapper in wrappers:
            assert 'role="region"' in wrapper and 'tabindex="0"' in wrapper, (url, wrapper)
            assert re.search(r'aria-label="[^"]+"', wrapper), (url, wrapper)
        assert "<script" not in html and "style=" not in html, url


# The admin's own error pages -------------------------------------------------------------------------------


def test_admin_error_pages_are_the_admins(admin: TestClient) -> None:
    refused = admin.get("/admin")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic realm=")
    assert refused.headers["content-type"].startswith("text/html")
    assert "Admin password needed" in refused.text and "subscribe again" not in refused.text
    # Before the password, nothing that needs the password: no navigation, no admin stylesheet.
    assert "admin.css" not in refused.text and 'aria-label="Admin pages"' not in refused.text

    # An unknown admin address wants the password first, then says so in the admin's own words.
    assert admin.get("/admin/no-such-page").status_code == 401
    for url in ("/admin/no-such-page", "/admin/", "/admin/subscribers/abc", "/admin/static/nope.css"):
        missing = admin.get(url, headers=AUTH)
        assert missing.status_code == 404, url
        assert "No such admin page" in missing.text and "subscribe again" not in missing.text
        assert '<link rel="stylesheet" href="/admin/static/admin.css">' in missing.text
        assert missing.headers["cache-control"] == "no-store"
    wrong_method = admin.post("/admin", headers=AUTH)
    assert wrong_method.status_code == 405 and "subscribe again" not in wrong_method.text
    bad_value = admin.get("/admin/subscribers?page=abc", headers=AUTH)
    assert bad_value.status_code == 400 and "subscribe again" not in bad_value.text
    # The subscriber pages keep their own 404.
    assert "subscribe again" in admin.get("/no-such-page").text


def test_wrong_passwords_on_unknown_addresses_count_too(admin_services: Services) -> None:
    from digest.limits import FailedLogins, MemoryCounter
    from digest.web import create_app
    from tests.unit.web.test_admin import NullDispatcher

    logins = FailedLogins(MemoryCounter(clock=lambda: 1_000_000.0), allowed=2, window_seconds=60)
    app = create_app(admin_services, NullDispatcher(), admin_logins=logins)
    with TestClient(app) as client:
        for _ in range(2):
            assert client.get("/admin/guess", headers=basic("wrong-guess")).status_code == 401
        locked = client.get("/admin/guess", headers=AUTH)
        assert locked.status_code == 429 and "Too many wrong passwords" in locked.text


# The figures on both databases -----------------------------------------------------------------------------


def test_new_figures_on_both_databases(any_services: Services, tmp_path: Path) -> None:
    world = world_of(any_services, tmp_path)
    today = world.today
    with any_services.sessions() as session:
        topics = stats.top_topics(session)
        active = stats.active_over_time(session, today, 30)
        votes = stats.votes_per_digest(
            stats.daily(session, today, 30), stats.votes_on_digests(session, today, 30)
        )
        papers = stats.papers_by_source(session, today, 30)
        files, file_count, file_papers = stats.file_ingests(session)
        sends = stats.recent_sends(session)
        detail = stats.subscriber_detail(session, world.ann)
    assert topics[0] == ("retrieval", 3)
    assert dict(topics)["large language models"] == 1 and "robotics" not in dict(topics)
    assert [n for _, n in active[-3:]] == [4, 3, 3]
    by_day = {v.day: v for v in votes}
    assert (by_day[today - timedelta(days=1)].digests, by_day[today - timedelta(days=1)].more) == (1, 1)
    assert by_day[today - timedelta(days=2)].more_per_digest == 1.0
    assert papers.papers[stats.FILES_SERIES][-2] == 2 and papers.papers[SOURCE_NAME][-1] == 3
    assert [(f.name, f.papers, f.via) for f in files] == [("manual-dump.jsonl", 2, None)]
    assert (file_count, file_papers) == (1, 2)
    assert [r.status for r in sends.rows] == ["sent", "sent", "bounced", "failed"]
    assert [r.papers for r in sends.rows] == [3, 3, 3, 3] and sends.older_than is None
    assert detail is not None and (detail.votes_more, detail.votes_less) == (1, 1)
    assert [d.status for d in detail.digests] == ["sent", "failed"] and detail.digests_total == 2


def test_costly_figures_are_counted_at_most_once_a_window() -> None:
    from digest.web.admin import Recent

    now = [100.0]
    counts: list[int] = []

    def count() -> int:
        counts.append(1)
        return len(counts)

    recent = Recent(60, clock=lambda: now[0])
    assert recent.get("overview", count) == 1
    now[0] += 59
    assert recent.get("overview", count) == 1  # reused
    assert recent.get("other window", count) == 2  # another key is counted on its own
    now[0] += 2
    assert recent.get("overview", count) == 3  # too old: counted again
    assert len(counts) == 3


def test_overview_says_when_it_was_counted(admin: TestClient, admin_services: Services) -> None:
    html = admin.get("/admin", headers=AUTH).text
    assert re.search(r'id="counted-at">Counted at \d{4}-\d\d-\d\d \d\d:\d\d UTC', html)
    build_world(admin_services, utcnow().date())
    # Within the minute the same count is shown; a page of one subscriber is always read fresh.
    again = admin.get("/admin", headers=AUTH).text
    assert re.search(r'id="count-active">0<', again)
    with admin_services.sessions() as session:
        ann = session.query(Subscriber).filter_by(email="ann@example.org").one()
    assert "ann@example.org" in admin.get(f"/admin/subscribers/{ann.id}", headers=AUTH).text
