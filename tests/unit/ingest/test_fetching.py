"""HttpClient against a real HTTP server on loopback; only the waiting is recorded instead of slept."""

from __future__ import annotations

import itertools
import logging
import pickle
import random
import socket
import threading
import time
from email.utils import formatdate

import httpx
import pytest

from digest.ingest.fetching import FetchError, FetchResult, HttpClient, default_user_agent
from tests.support.replay_server import (
    FIXTURES,
    ReplayServer,
    Reply,
    etag_resource,
    fixture_reply,
    last_modified_resource,
    redirect,
    replay_server_fixture,  # noqa: F401  (provides the `replay_server` fixture)
)

UA = default_user_agent("digest@example.org", "0.1")


class RecordedWaits:
    """A `sleep` that records waits and a `clock` that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make_client(waits: RecordedWaits, **options: object) -> HttpClient:
    settings: dict[str, object] = {
        "user_agent": UA,
        "timeout": 5.0,
        "sleep": waits.sleep,
        "clock": waits.clock,
        "rng": random.Random(1234),
    }
    settings.update(options)
    return HttpClient(**settings)  # type: ignore[arg-type]


@pytest.fixture
def waits() -> RecordedWaits:
    return RecordedWaits()


def test_etag_round_trip_gives_not_modified(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/feed.xml", etag_resource(b"<feed>one</feed>", '"v1"'))
    with make_client(waits) as client:
        first = client.get(replay_server.url("/feed.xml"))
        second = client.get(replay_server.url("/feed.xml"), etag=first.etag)

    assert (first.status, first.body, first.etag, first.not_modified) == (
        200,
        b"<feed>one</feed>",
        '"v1"',
        False,
    )
    assert first.content_type == "application/xml"
    assert second.not_modified and second.status == 304
    assert second.body == b""
    assert second.etag == '"v1"'
    seen = replay_server.requests_to("/feed.xml")
    assert seen[0].header("If-None-Match") is None
    assert seen[1].header("If-None-Match") == '"v1"'
    assert waits.waits == []


def test_last_modified_round_trip_gives_not_modified(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    stamp = "Tue, 04 Mar 2025 20:00:00 GMT"
    replay_server.script("/rss", last_modified_resource(b"<rss/>", stamp))
    with make_client(waits) as client:
        first = client.get(replay_server.url("/rss"))
        second = client.get(replay_server.url("/rss"), last_modified=first.last_modified)

    assert first.status == 200 and first.body == b"<rss/>" and first.last_modified == stamp
    assert second.not_modified and second.body == b"" and second.last_modified == stamp
    assert replay_server.requests_to("/rss")[1].header("If-Modified-Since") == stamp


def test_304_without_validators_keeps_the_ones_sent(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/x", Reply(304))
    with make_client(waits) as client:
        result = client.get(
            replay_server.url("/x"), etag='"abc"', last_modified="Mon, 03 Mar 2025 00:00:00 GMT"
        )
    assert result.not_modified
    assert (result.etag, result.last_modified) == ('"abc"', "Mon, 03 Mar 2025 00:00:00 GMT")


def test_429_with_retry_after_seconds_waits_exactly_that(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/api", Reply(429, {"Retry-After": "2"}), Reply(200, body=b"ok"))
    with make_client(waits) as client:
        result = client.get(replay_server.url("/api"))
    assert result.body == b"ok"
    assert result.attempts == 2
    assert waits.waits == [2.0]
    assert len(replay_server.requests_to("/api")) == 2


def test_retry_after_as_http_date_is_measured_against_the_server_date(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script(
        "/api",
        Reply(503, {"Date": "Wed, 21 Oct 2015 07:28:00 GMT", "Retry-After": "Wed, 21 Oct 2015 07:28:07 GMT"}),
        Reply(200, body=b"ok"),
    )
    with make_client(waits) as client:
        result = client.get(replay_server.url("/api"))
    assert result.body == b"ok" and result.attempts == 2
    assert waits.waits == [7.0]


def test_retry_after_as_http_date_without_server_date_uses_our_clock(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    # The replay server adds a current Date itself; a date in the past must not produce a negative wait.
    replay_server.script(
        "/api", Reply(429, {"Retry-After": formatdate(time.time() - 60, usegmt=True)}), Reply(200)
    )
    with make_client(waits) as client:
        assert client.get(replay_server.url("/api")).status == 200
    assert waits.waits == [0.0]


def test_retry_after_beyond_the_limit_gives_up_at_once(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/api", Reply(503, {"Retry-After": "3600"}), Reply(200))
    with make_client(waits, max_retry_after=300.0) as client, pytest.raises(FetchError) as raised:
        client.get(replay_server.url("/api"))
    error = raised.value
    assert error.retry_after == 3600.0
    assert error.status == 503
    assert error.attempts == 1
    assert len(replay_server.requests_to("/api")) == 1
    assert waits.waits == []
    assert "retry after 3600 s" in str(error)


def test_retry_after_on_the_last_attempt_is_reported(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/api", Reply(429, {"Retry-After": "30"}))
    with make_client(waits, max_attempts=1) as client, pytest.raises(FetchError) as raised:
        client.get(replay_server.url("/api"))
    assert (raised.value.status, raised.value.retry_after, raised.value.attempts) == (429, 30.0, 1)


def test_503s_then_success_back_off_with_full_jitter(
    replay_server: ReplayServer, waits: RecordedWaits, caplog: pytest.LogCaptureFixture
) -> None:
    replay_server.script("/api", Reply(503), Reply(503), Reply(200, body=b"finally"))
    with (
        caplog.at_level(logging.INFO, logger="digest.ingest.fetching"),
        make_client(waits, rng=random.Random(7), backoff_base=1.0) as client,
    ):
        result = client.get(replay_server.url("/api"))

    assert result.body == b"finally" and result.attempts == 3
    assert len(waits.waits) == 2
    assert 0.0 <= waits.waits[0] <= 1.0
    assert 0.0 <= waits.waits[1] <= 2.0
    same_seed = random.Random(7)
    assert waits.waits == [same_seed.uniform(0, 1.0), same_seed.uniform(0, 2.0)]
    retry_logs = [record.getMessage() for record in caplog.records if "retrying in" in record.getMessage()]
    assert len(retry_logs) == 2
    assert "503 Service Unavailable" in retry_logs[0]


def test_backoff_is_capped_by_backoff_max(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/api", Reply(502))
    with (
        make_client(waits, max_attempts=6, backoff_base=1.0, backoff_max=3.0) as client,
        pytest.raises(FetchError),
    ):
        client.get(replay_server.url("/api"))
    assert len(waits.waits) == 5
    assert all(0.0 <= wait <= 3.0 for wait in waits.waits)


def test_503_forever_fails_after_max_attempts(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/api", Reply(503))
    url = replay_server.url("/api")
    with make_client(waits, max_attempts=4) as client, pytest.raises(FetchError) as raised:
        client.get(url, params={"q": "cat:cs.LG", "start": 0})

    error = raised.value
    assert (error.status, error.attempts, error.retry_after) == (503, 4, None)
    assert len(replay_server.requests_to("/api")) == 4
    assert len(waits.waits) == 3
    assert str(error) == f"GET {url}?q=cat%3Acs.LG&start=0: 503 Service Unavailable after 4 attempts"
    assert replay_server.requests[0].params == {"q": ["cat:cs.LG"], "start": ["0"]}


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 504])
def test_other_transient_statuses_are_retried(
    replay_server: ReplayServer, waits: RecordedWaits, status: int
) -> None:
    replay_server.script("/api", Reply(status), Reply(200, body=b"ok"))
    with make_client(waits) as client:
        assert client.get(replay_server.url("/api")).attempts == 2


def test_slow_server_is_retried_then_reported_as_timed_out(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/slow", Reply(200, body=b"late", delay=1.0))
    url = replay_server.url("/slow")
    with make_client(waits, timeout=0.3, max_attempts=2) as client, pytest.raises(FetchError) as raised:
        client.get(url)
    assert raised.value.status is None
    assert raised.value.attempts == 2
    assert str(raised.value) == f"GET {url}: timed out after 2 attempts"
    assert len(replay_server.requests_to("/slow")) == 2


def test_a_timeout_followed_by_a_prompt_answer_succeeds(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/slow", Reply(200, body=b"late", delay=1.0), Reply(200, body=b"prompt"))
    with make_client(waits, timeout=0.3) as client:
        result = client.get(replay_server.url("/slow"))
    assert (result.body, result.attempts) == (b"prompt", 2)


def test_truncated_body_is_retried_and_a_complete_one_accepted(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    full = bytes(range(256)) * 32
    replay_server.script("/big", Reply(200, body=full, truncate_to=1024), Reply(200, body=full))
    with make_client(waits) as client:
        result = client.get(replay_server.url("/big"))
    assert result.body == full
    assert result.attempts == 2
    assert len(waits.waits) == 1


def test_truncated_body_every_time_names_the_shortfall(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/big", Reply(200, body=b"x" * 8000, truncate_to=1024))
    url = replay_server.url("/big")
    with make_client(waits, max_attempts=2) as client, pytest.raises(FetchError) as raised:
        client.get(url)
    assert (
        str(raised.value)
        == f"GET {url}: response body ended early (got 1,024 of 8,000 bytes) after 2 attempts"
    )
    assert raised.value.attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_are_not_retried(
    replay_server: ReplayServer, waits: RecordedWaits, status: int
) -> None:
    replay_server.script("/gone", Reply(status), Reply(200))
    url = replay_server.url("/gone")
    with make_client(waits) as client, pytest.raises(FetchError) as raised:
        client.get(url)
    assert (raised.value.status, raised.value.attempts) == (status, 1)
    assert len(replay_server.requests_to("/gone")) == 1
    assert waits.waits == []
    assert str(raised.value).startswith(f"GET {url}: {status} ")


def test_unscripted_path_is_a_404(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    with make_client(waits) as client, pytest.raises(FetchError) as raised:
        client.get(replay_server.url("/nothing-here"))
    assert str(raised.value).endswith(": 404 Not Found")


def test_declared_body_over_the_limit_is_refused(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/huge", Reply(200, body=b"x" * 5000))
    url = replay_server.url("/huge")
    with make_client(waits, max_body_bytes=4096) as client, pytest.raises(FetchError) as raised:
        client.get(url)
    assert str(raised.value) == f"GET {url}: response larger than 4 KB"
    assert raised.value.attempts == 1


def test_streamed_body_over_the_limit_is_aborted(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/huge", Reply(200, body=b"x" * 200_000, chunked=True))
    with make_client(waits, max_body_bytes=100_000) as client, pytest.raises(FetchError) as raised:
        client.get(replay_server.url("/huge"))
    assert "response larger than 100,000 bytes" in str(raised.value)
    assert len(replay_server.requests_to("/huge")) == 1


def test_chunked_body_under_the_limit_is_read_whole(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    body = b"y" * 50_000
    replay_server.script(
        "/chunks", Reply(200, {"Content-Type": "text/plain; charset=UTF-8"}, body, chunked=True)
    )
    with make_client(waits) as client:
        result = client.get(replay_server.url("/chunks"))
    assert result.body == body
    assert (result.content_type, result.charset) == ("text/plain", "utf-8")


def test_min_interval_spaces_request_starts_per_host(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/api", Reply(200, body=b"ok"))
    starts: list[float] = []
    with make_client(waits, min_interval={"127.0.0.1": 1.0}) as client:
        for _ in range(3):
            client.get(replay_server.url("/api"))
            starts.append(waits.now)
    assert waits.waits == [1.0, 1.0]
    assert starts[1] - starts[0] >= 1.0 and starts[2] - starts[1] >= 1.0
    assert len(replay_server.requests_to("/api")) == 3


def test_min_interval_covers_retries(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/api", Reply(503), Reply(200))
    with make_client(waits, min_interval={"127.0.0.1": 1.0}, backoff_base=0.1) as client:
        assert client.get(replay_server.url("/api")).attempts == 2
    backoff, spacing = waits.waits
    assert 0.0 <= backoff <= 0.1
    assert backoff + spacing == pytest.approx(1.0)


def test_min_interval_holds_across_threads_in_real_time(replay_server: ReplayServer) -> None:
    replay_server.script("/api", Reply(200))
    with HttpClient(user_agent=UA, min_interval={"127.0.0.1": 0.2}) as client:
        threads = [threading.Thread(target=client.get, args=(replay_server.url("/api"),)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    arrivals = sorted(request.arrived_at for request in replay_server.requests_to("/api"))
    assert len(arrivals) == 3
    # Arrival is measured on the server, a little after the client's start; allow for that skew.
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(arrivals))


def test_hosts_without_an_interval_are_not_delayed(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/api", Reply(200))
    with make_client(waits) as client:  # the defaults name only arXiv's hosts
        for _ in range(3):
            client.get(replay_server.url("/api"))
    assert waits.waits == []


def test_user_agent_and_accept_reach_the_server(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/api", Reply(200))
    with make_client(waits) as client:
        client.get(replay_server.url("/api"), accept="application/atom+xml")
    seen = replay_server.requests_to("/api")[0]
    assert (
        seen.header("User-Agent")
        == "digest/0.1 (self-hosted research paper digest; contact: digest@example.org)"
    )
    assert seen.header("Accept") == "application/atom+xml"
    assert seen.method == "GET"


def test_redirects_are_followed_and_url_is_the_final_one(
    replay_server: ReplayServer, waits: RecordedWaits
) -> None:
    replay_server.script("/old", redirect("/middle", 301))
    replay_server.script("/middle", redirect(replay_server.url("/new?page=2")))
    replay_server.script(
        "/new", Reply(200, {"Content-Type": "Text/HTML; charset=iso-8859-1"}, b"<p>here</p>")
    )
    with make_client(waits) as client:
        result = client.get(replay_server.url("/old"))
    assert result.url == replay_server.url("/new?page=2")
    assert result.body == b"<p>here</p>"
    assert (result.content_type, result.charset) == ("text/html", "iso-8859-1")
    assert result.attempts == 1
    assert [request.path for request in replay_server.requests] == ["/old", "/middle", "/new"]
    assert all(request.header("User-Agent") == UA for request in replay_server.requests)


def test_fixture_files_are_served(replay_server: ReplayServer, waits: RecordedWaits) -> None:
    replay_server.script("/listing", fixture_reply("ingest_blank_separated.txt", content_type="text/plain"))
    with make_client(waits) as client:
        result = client.get(replay_server.url("/listing"))
    assert result.body == (FIXTURES / "ingest_blank_separated.txt").read_bytes()
    assert result.content_type == "text/plain" and result.charset is None


def test_connection_refused_is_retried_then_reported(waits: RecordedWaits) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with make_client(waits, max_attempts=3) as client, pytest.raises(FetchError) as raised:
        client.get(f"http://127.0.0.1:{port}/x")
    assert raised.value.status is None
    assert raised.value.attempts == 3
    assert "connection failed" in raised.value.reason
    assert len(waits.waits) == 2


def test_fetch_error_survives_pickling() -> None:
    error = FetchError(
        "https://export.arxiv.org/api/query", 503, "503 Service Unavailable", 4, retry_after=9.0
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.url, copy.status, copy.reason, copy.attempts, copy.retry_after) == (
        error.url,
        503,
        "503 Service Unavailable",
        4,
        9.0,
    )
    assert str(copy) == "GET https://export.arxiv.org/api/query: 503 Service Unavailable after 4 attempts"


def test_fetch_result_not_modified_follows_status() -> None:
    common = {
        "url": "u",
        "body": b"",
        "content_type": "",
        "charset": None,
        "etag": None,
        "last_modified": None,
    }
    assert FetchResult(status=304, attempts=1, **common).not_modified  # type: ignore[arg-type]
    assert not FetchResult(status=200, attempts=1, **common).not_modified  # type: ignore[arg-type]


def test_default_user_agent_rejects_header_injection() -> None:
    with pytest.raises(ValueError):
        default_user_agent("me@example.org\r\nX-Evil: 1", "0.1")


def test_head_requests_get_headers_only(replay_server: ReplayServer) -> None:
    replay_server.script("/doc", Reply(200, {"Content-Type": "text/plain"}, b"body"))
    response = httpx.head(replay_server.url("/doc"))
    assert response.status_code == 200
    assert response.headers["content-length"] == "4"
    assert response.content == b""
    assert replay_server.requests_to("/doc")[0].method == "HEAD"
