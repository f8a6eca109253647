"""Sources end to end over real HTTP: a replay server on loopback plays recorded feed responses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from digest.cli import main
from digest.db import transaction
from digest.deliver.day import run_day
from digest.ingest.fetching import HttpClient
from digest.ingest.health import arxiv_holidays, silent_days, source_health
from digest.ingest.sources import SourceError, add_source, claim_due_sources, fetch_source
from digest.models import Fetch, Listing, Source
from digest.services import Services
from digest.subscribers.subscriptions import subscribe
from tests.support.daily import InlineDispatcher
from tests.support.replay_server import (  # noqa: F401
    FIXTURES,
    ReplayServer,
    Reply,
    etag_resource,
    fixture_reply,
    replay_server_fixture,
)

RSS = (FIXTURES / "feeds" / "arxiv_rss.xml").read_bytes()
HF = (FIXTURES / "feeds" / "hf_daily.json").read_bytes()


@pytest.fixture
def waits(services: Services) -> Iterator[list[float]]:
    """The client's retry waits, recorded instead of slept: the HTTP itself stays real."""
    recorded: list[float] = []
    client = HttpClient(user_agent="digest-tests", timeout=0.5, min_interval={}, sleep=recorded.append)
    services.__dict__["http"] = client
    yield recorded
    client.close()


def source_id(services: Services, name: str, kind: str, server: ReplayServer, path: str, **kw: object) -> int:
    with transaction(services.sessions) as session:
        url = server.url(path) + ("?cat={category}" if kind == "arxiv_rss" else "")
        return add_source(session, name, kind, url=url, **kw).id  # type: ignore[arg-type]


def fetches(services: Services) -> list[Fetch]:
    with services.sessions() as session:
        return list(session.scalars(select(Fetch).order_by(Fetch.id)))


def count_listings(services: Services) -> int:
    with services.sessions() as session:
        return len(session.scalars(select(Listing.id)).all())


def test_an_unchanged_feed_costs_a_304_and_stores_nothing_twice(
    services: Services, replay_server: ReplayServer, waits: list[float]
) -> None:
    replay_server.script("/rss", etag_resource(RSS, '"v1"'))
    rss = source_id(services, "arxiv-cs", "arxiv_rss", replay_server, "/rss", categories=["cs.LG"])

    first = fetch_source(services, rss)
    assert first.error is None and first.http_status == 200
    assert (first.seen, first.counts.new, first.counts.skipped_replacements, first.rejected) == (4, 1, 2, 1)
    assert first.problems == ["item 3: no arXiv id in <description>, <link> or id"]
    second = fetch_source(services, rss)
    assert second.not_modified and second.counts.new == 0
    assert replay_server.requests_to("/rss")[1].header("If-None-Match") == '"v1"'
    assert replay_server.requests_to("/rss")[0].params["cat"] == ["cs.LG"]
    assert [(f.http_status, f.not_modified, f.new) for f in fetches(services)] == [
        (200, False, 1),
        (304, True, 0),
    ]
    assert count_listings(services) == 1


def test_429_with_retry_after_and_503_are_waited_out(
    services: Services, replay_server: ReplayServer, waits: list[float]
) -> None:
    replay_server.script(
        "/hf",
        Reply(429, {"Retry-After": "7"}),
        Reply(503),
        Reply(200, {"Content-Type": "application/json"}, HF),
    )
    hf = source_id(services, "hf", "hf_daily", replay_server, "/hf")
    outcome = fetch_source(services, hf)
    assert outcome.error is None and outcome.counts.new >= 2, outcome.summary()
    assert waits[0] == 7.0 and len(waits) == 2
    assert len(replay_server.requests_to("/hf")) == 3


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(200, {"Content-Type": "text/html"}, b"<!DOCTYPE html><title>Rate exceeded</title><p>x"),
            "HTML page",
        ),
        (Reply(200, {"Content-Type": "application/json"}, HF[: len(HF) // 2]), "JSON"),
        (Reply(200, {"Content-Type": "application/json"}, HF, truncate_to=len(HF) // 3), "ended early"),
        (Reply(200, {"Content-Type": "application/json"}, HF, delay=2.0), "timed out"),
        (Reply(404), "404"),
    ],
    ids=["html-error-page", "truncated-json", "truncated-transfer", "timeout", "not-found"],
)
def test_a_broken_feed_is_recorded_names_the_source_and_stores_nothing(
    services: Services, replay_server: ReplayServer, waits: list[float], reply: Reply, expected: str
) -> None:
    replay_server.script("/hf", reply)
    hf = source_id(services, "hf", "hf_daily", replay_server, "/hf")
    outcome = fetch_source(services, hf)
    assert outcome.error is not None and expected in outcome.error, outcome.error
    assert outcome.summary().startswith("hf: failed:")
    (fetch,) = fetches(services)
    assert fetch.error == outcome.error and fetch.new == 0
    assert count_listings(services) == 0
    with services.sessions() as session:
        (health,) = source_health(session, datetime.now(UTC))
    assert health.state == "failing" and expected in health.detail


def test_a_truncated_transfer_is_retried_and_the_complete_one_stored(
    services: Services, replay_server: ReplayServer, waits: list[float]
) -> None:
    replay_server.script("/rss", Reply(200, {}, RSS, truncate_to=100), Reply(200, {}, RSS))
    rss = source_id(services, "arxiv", "arxiv_rss", replay_server, "/rss", categories=["cs.LG"])
    outcome = fetch_source(services, rss)
    assert outcome.error is None and outcome.counts.new == 1
    assert len(waits) == 1


def test_arxiv_api_and_hugging_face_reports_of_a_paper_make_one_listing(
    services: Services, replay_server: ReplayServer, waits: list[float]
) -> None:
    replay_server.script(
        "/api", fixture_reply("feeds/arxiv_api_page.xml", content_type="application/atom+xml")
    )
    replay_server.script("/hf", fixture_reply("feeds/hf_daily.json", content_type="application/json"))
    api = source_id(services, "arxiv-api", "arxiv_api", replay_server, "/api", categories=["cs.LG"])
    hf = source_id(services, "hf", "hf_daily", replay_server, "/hf")
    assert fetch_source(services, api).error is None
    query = replay_server.requests_to("/api")[0].params
    assert query["search_query"] == ["(cat:cs.LG)"] and query["sortBy"] == ["submittedDate"]
    merged = fetch_source(services, hf)
    assert merged.error is None and merged.counts.updated >= 1
    with services.sessions() as session:
        (listing,) = session.scalars(select(Listing).where(Listing.arxiv_id == "2401.01234")).all()
    assert listing.seen_in == ["arxiv-api", "hf"]
    assert listing.upvotes is not None and "huggingface" in listing.links and "arxiv" in listing.links


def test_a_watched_folder_ingests_each_file_once(services: Services, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with transaction(services.sessions) as session:
        watched = add_source(session, "drop", "directory", path=str(inbox)).id
    (inbox / "a.jsonl").write_text('{"title": "Paper A", "abstract": "About A."}\n', encoding="utf-8")
    assert fetch_source(services, watched).counts.new == 1
    assert fetch_source(services, watched).seen == 0, "an unchanged file is not read again"
    (inbox / "b.jsonl").write_text('{"title": "Paper B", "abstract": "About B."}\n', encoding="utf-8")
    (inbox / "a.jsonl").write_text(
        '{"title": "Paper A", "abstract": "About A."}\n{"title": "Paper C", "abstract": "About C."}\n',
        encoding="utf-8",
    )
    again = fetch_source(services, watched)
    assert (again.counts.new, again.counts.duplicate) == (2, 1)
    assert count_listings(services) == 3


def test_bad_source_settings_are_named(services: Services, tmp_path: Path) -> None:
    with transaction(services.sessions) as session:
        with pytest.raises(SourceError, match="needs at least one --category"):
            add_source(session, "rss", "arxiv_rss")
        with pytest.raises(SourceError, match="unknown kind"):
            add_source(session, "x", "gopher")
        with pytest.raises(SourceError, match="is not a folder"):
            add_source(session, "d", "directory", path=str(tmp_path / "missing"))
        add_source(session, "hf", "hf_daily")
        with pytest.raises(SourceError, match="already exists"):
            add_source(session, "hf", "hf_daily")


def test_overlapping_scheduler_ticks_claim_a_due_source_once(services: Services) -> None:
    with transaction(services.sessions) as session:
        add_source(session, "hf", "hf_daily", interval_minutes=30)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    claims: list[list[int]] = []
    barrier = threading.Barrier(4)

    def tick() -> None:
        barrier.wait()
        claims.append(claim_due_sources(services, now))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(c) for c in claims) == [0, 0, 0, 1]
    assert claim_due_sources(services, now + timedelta(minutes=29)) == []
    assert len(claim_due_sources(services, now + timedelta(minutes=30))) == 1


def test_weekends_and_holidays_do_not_count_as_silence() -> None:
    holidays = arxiv_holidays([2026])
    assert date(2026, 11, 26) in holidays  # Thanksgiving
    friday, tuesday = date(2026, 11, 20), date(2026, 11, 24)
    assert silent_days(friday, tuesday, business=True, holidays=holidays) == 2
    assert silent_days(friday, tuesday, business=False, holidays=holidays) == 4
    assert silent_days(date(2026, 11, 25), date(2026, 11, 30), business=True, holidays=holidays) == 2


def test_status_tells_a_quiet_weekend_from_a_stale_feed(services: Services) -> None:
    with transaction(services.sessions) as session:
        quiet = add_source(session, "quiet", "arxiv_rss", categories=["cs.LG"])
        stale = add_source(session, "stale", "arxiv_rss", categories=["cs.CL"])
        friday = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
        for source, produced in ((quiet, friday), (stale, friday - timedelta(days=7))):
            source.created_at = produced - timedelta(days=30)
            session.add(Fetch(source_id=source.id, started_at=produced, finished_at=produced, new=5))
            session.add(Fetch(source_id=source.id, started_at=friday, finished_at=friday, new=0))
    sunday = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
    with services.sessions() as session:
        report = {h.name: h for h in source_health(session, sunday)}
    assert report["quiet"].state == "ok" and report["quiet"].silent_days == 0
    assert report["stale"].state == "stale" and "5 business day(s)" in report["stale"].detail


def test_a_run_with_nothing_new_says_why(services: Services) -> None:
    with transaction(services.sessions) as session:
        subscribe(session, "reader@example.org", "LoRA", confirmed=True)
        source = add_source(session, "arxiv", "arxiv_rss", categories=["cs.LG"])
        long_ago = datetime(2026, 11, 1, tzinfo=UTC)
        source.created_at = long_ago
        session.add(Fetch(source_id=source.id, started_at=long_ago, finished_at=long_ago, new=3))
    summary = run_day(
        services, date(2026, 11, 24), InlineDispatcher(services), now=datetime(2026, 11, 24, 6, tzinfo=UTC)
    )
    assert summary.sent == 0 and summary.note is not None
    assert "no new listings since" in summary.note and "arxiv is stale" in summary.note


def test_the_cli_adds_fetches_and_reports_sources(
    tmp_path: Path, replay_server: ReplayServer, services: Services
) -> None:
    env = {
        "DIGEST_DATA_DIR": str(services.settings.data_dir),
        "DIGEST_SECRET_KEY": services.settings.secret_key,
    }
    replay_server.script("/hf", fixture_reply("feeds/hf_daily.json", content_type="application/json"))
    replay_server.script(
        "/broken", Reply(200, {"Content-Type": "text/html"}, b"<html><title>Oops</title></html>")
    )
    runner = CliRunner()

    def digest(*args: str) -> tuple[int, str]:
        result = runner.invoke(main, list(args), env=env)
        return result.exit_code, result.output

    assert digest("sources", "add", "hf", "--kind", "hf_daily", "--url", replay_server.url("/hf"))[0] == 0
    assert (
        digest("sources", "add", "bad", "--kind", "hf_daily", "--url", replay_server.url("/broken"))[0] == 0
    )
    code, listed = digest("sources", "list")
    assert code == 0 and "hf  hf_daily  every 120 min" in listed
    code, fetched = digest("ingest", "--source", "hf")
    assert code == 0 and "hf: " in fetched and " new" in fetched
    code, failed = digest("ingest", "--source", "bad")
    assert code == 1 and "bad: failed:" in failed and "HTML page" in failed
    code, status = digest("sources", "status")
    assert code == 1, "a failing source makes status exit non-zero for monitoring"
    assert "FAILING" in status and "hf" in status
    code, unknown = digest("ingest", "--source", "nope")
    assert code == 1 and "no source named 'nope'" in unknown
    assert digest("sources", "remove", "bad")[0] == 0
    with services.sessions() as session:
        assert session.scalars(select(Source.name)).all() == ["hf"]


def test_the_beat_tick_fetches_each_due_source_through_celery(
    services: Services, replay_server: ReplayServer, waits: list[float]
) -> None:
    from workers.app import bind
    from workers.tasks import ingest_due

    replay_server.script("/hf", fixture_reply("feeds/hf_daily.json", content_type="application/json"))
    source_id(services, "hf", "hf_daily", replay_server, "/hf")
    bind(services)
    claimed = ingest_due.delay().get()
    assert len(claimed) == 1
    assert [f.error for f in fetches(services)] == [None]
    assert count_listings(services) >= 2
    assert ingest_due.delay().get() == [], "not due again until its interval has passed"


def test_the_arxiv_api_is_paged_newest_first_until_a_page_holds_nothing_new(
    services: Services, replay_server: ReplayServer, waits: list[float]
) -> None:
    replay_server.script(
        "/api", fixture_reply("feeds/arxiv_api_page.xml", content_type="application/atom+xml")
    )
    with transaction(services.sessions) as session:
        source = add_source(session, "api", "arxiv_api", url=replay_server.url("/api"), query="abs:adapters")
        source.config = {**source.config, "page_size": 2, "max_pages": 5}
    outcome = fetch_source(services, source.id)
    assert outcome.error is None and outcome.counts.new >= 3
    starts = [r.params["start"] for r in replay_server.requests_to("/api")]
    # The page held four entries although two were asked for: the next page starts after what arrived
    # (stepping by the page size would re-read or, with short pages, skip entries), and it repeated known
    # papers, so paging stopped there.
    assert starts == [["0"], ["4"]]
    assert replay_server.requests_to("/api")[0].params["search_query"] == ["(abs:adapters)"]
