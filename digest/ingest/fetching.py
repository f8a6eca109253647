"""The one HTTP client every ingestion source goes through.

Sources differ in what they fetch, not in how they should behave on the wire, so politeness lives
here once: a User-Agent that says who we are, conditional GETs so an unchanged feed costs the origin a
304, retries with jittered backoff for failures that are worth retrying (and none for those that are
not), `Retry-After` obeyed, and a minimum spacing between requests to the same host (arXiv's API terms
ask for one request every three seconds, retries included).

All waiting goes through the injected `sleep` and `clock`, so tests record waits instead of sleeping
while still talking real HTTP to a local server.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

import httpx

from digest.ingest.responses import (
    declared_length,
    describe_size,
    media_type,
    parse_retry_after,
    status_reason,
)

log = logging.getLogger(__name__)

DEFAULT_MIN_INTERVAL: Mapping[str, float] = {
    "export.arxiv.org": 3.0,
    "arxiv.org": 3.0,
    "rss.arxiv.org": 3.0,
}

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Only these two statuses define Retry-After as "come back later"; on a 3xx it means something else.
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Connecting should be quick even when generating the response is not; a dead host should fail fast.
MAX_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class FetchResult:
    """A usable response: 2xx with its body, or a 304 with an empty one.

    `url` is where redirects ended; `content_type` is the lowercased media type without parameters
    ("" when absent) and `charset` the declared charset, lowercased, or None.
    """

    url: str
    status: int
    body: bytes
    content_type: str
    charset: str | None
    etag: str | None
    last_modified: str | None
    attempts: int

    @property
    def not_modified(self) -> bool:
        return self.status == HTTPStatus.NOT_MODIFIED


ERROR_BODY_BYTES = 64 * 1024


class FetchError(Exception):
    """A GET that did not produce a usable response.

    `url` is the URL as requested (with its query). `status` is None when no HTTP response arrived at
    all, and the response's status when one did, even if its body then failed to arrive. `retry_after`
    is set when the server named a time to come back (further away than we are willing to sleep, or
    after the last attempt), so a scheduler can try again then instead of a worker blocking.
    """

    def __init__(
        self,
        url: str,
        status: int | None,
        reason: str,
        attempts: int,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        self.attempts = attempts
        self.retry_after = retry_after
        # The start of an error response's body: some servers (the arXiv API) explain the error there.
        self.body = body
        super().__init__(self._message())

    def _message(self) -> str:
        message = f"GET {self.url}: {self.reason}"
        if self.attempts > 1:
            message += f" after {self.attempts} attempts"
        return message

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles exceptions raised in tasks; the default reduce would lose the fields.
        return (type(self), (self.url, self.status, self.reason, self.attempts, self.retry_after, self.body))


@dataclass(frozen=True)
class _RetryableFailure:
    reason: str
    status: int | None = None
    retry_after: float | None = None


def default_user_agent(contact: str, version: str) -> str:
    """Identify the deployment so an origin's operator can reach a human instead of blocking us."""
    contact = contact.strip()
    if not contact or any(ch in contact for ch in "\r\n()"):
        raise ValueError(f"unusable contact for the User-Agent: {contact!r}")
    return f"digest/{version} (self-hosted research paper digest; contact: {contact})"


class _HostSpacing:
    """Keeps request starts to one host at least `interval` apart, across threads."""

    def __init__(
        self,
        intervals: Mapping[str, float],
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self._intervals = {host.lower(): seconds for host, seconds in intervals.items() if seconds > 0}
        self._sleep = sleep
        self._clock = clock
        self._registry_lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._last_start: dict[str, float] = {}

    def wait_turn(self, host: str) -> None:
        interval = self._intervals.get(host.lower())
        if interval is None:
            return
        with self._registry_lock:
            host_lock = self._host_locks.setdefault(host.lower(), threading.Lock())
        # Holding the host's lock while sleeping queues other threads behind this request's slot.
        with host_lock:
            last = self._last_start.get(host.lower())
            now = self._clock()
            if last is not None and now < last + interval:
                wait = last + interval - now
                log.debug("waiting %.2f s before the next request to %s", wait, host)
                self._sleep(wait)
                # A sleep that does not move the clock (a test recording waits) must still count.
                now = max(self._clock(), last + interval)
            self._last_start[host.lower()] = now


class HttpClient:
    """Shared GET client for ingestion sources; see the module docstring for the behaviour.

    `min_interval` replaces the arXiv defaults when given (pass `{}` for no spacing at all).
    """

    def __init__(  # noqa: PLR0913 - keyword-only settings of the client
        self,
        *,
        user_agent: str,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 300.0,
        min_interval: Mapping[str, float] | None = None,
        max_body_bytes: int = 50 * 1024 * 1024,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not user_agent.strip():
            raise ValueError("user_agent must identify the deployment")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if timeout <= 0 or max_body_bytes <= 0:
            raise ValueError("timeout and max_body_bytes must be positive")
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._spacing = _HostSpacing(
            DEFAULT_MIN_INTERVAL if min_interval is None else min_interval, sleep, clock
        )
        # A request hook runs before every request httpx sends, redirect hops included, so the spacing
        # also holds for an http -> https redirect to the same host.
        self._client = httpx.Client(
            headers={"User-Agent": user_agent},
            timeout=httpx.Timeout(
                connect=min(timeout, MAX_CONNECT_TIMEOUT), read=timeout, write=timeout, pool=timeout
            ),
            follow_redirects=True,
            event_hooks={"request": [self._before_request]},
        )

    def _before_request(self, request: httpx.Request) -> None:
        self._spacing.wait_turn(request.url.host)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str | None = None,
    ) -> FetchResult:
        """GET with retries; a 304 is a result (`not_modified`), every other failure a FetchError."""
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if accept:
            headers["Accept"] = accept
        try:
            shown_url = str(httpx.URL(url).copy_merge_params(dict(params or {})))
        except httpx.InvalidURL as exc:
            raise FetchError(url, None, f"invalid URL ({exc})", 0) from exc

        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(shown_url, headers, attempt, etag, last_modified)
            if isinstance(outcome, FetchResult):
                return outcome
            if outcome.retry_after is not None and outcome.retry_after > self.max_retry_after:
                raise FetchError(
                    shown_url,
                    outcome.status,
                    f"{outcome.reason} (server asked to retry after {outcome.retry_after:g} s)",
                    attempt,
                    retry_after=outcome.retry_after,
                )
            if attempt >= self.max_attempts:
                raise FetchError(
                    shown_url, outcome.status, outcome.reason, attempt, retry_after=outcome.retry_after
                )
            if outcome.retry_after is not None:
                wait = outcome.retry_after
            else:
                wait = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))
            log.info(
                "GET %s: %s; retrying in %.2f s (attempt %d of %d failed)",
                shown_url,
                outcome.reason,
                wait,
                attempt,
                self.max_attempts,
            )
            self._sleep(wait)

    def _attempt(
        self,
        url: str,
        headers: Mapping[str, str],
        attempt: int,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult | _RetryableFailure:
        request = self._client.build_request("GET", url, headers=headers)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException:
            return _RetryableFailure("timed out")
        except httpx.TooManyRedirects as exc:
            raise FetchError(url, None, f"too many redirects ({exc})", attempt) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return _RetryableFailure(f"connection failed ({str(exc) or type(exc).__name__})")
        except httpx.TransportError as exc:
            raise FetchError(
                url, None, f"request failed ({str(exc) or type(exc).__name__})", attempt
            ) from exc

        try:
            status = response.status_code
            if status == HTTPStatus.NOT_MODIFIED:
                return self._result(response, b"", attempt, etag, last_modified)
            if 200 <= status < 300:
                body = self._read_body(response, url, attempt)
                if isinstance(body, _RetryableFailure):
                    return body
                return self._result(response, body, attempt, etag, last_modified)
            reason = status_reason(response)
            if status in RETRYABLE_STATUSES:
                retry_after = parse_retry_after(response) if status in RETRY_AFTER_STATUSES else None
                return _RetryableFailure(reason, status, retry_after)
            raise FetchError(url, status, reason, attempt, body=self._error_body(response))
        finally:
            response.close()

    @staticmethod
    def _error_body(response: httpx.Response) -> bytes:
        """The first 64 KB of a refusal's body, for the caller to look for the server's own explanation."""
        kept = bytearray()
        try:
            for chunk in response.iter_bytes():
                kept += chunk
                if len(kept) >= ERROR_BODY_BYTES:
                    break
        except httpx.HTTPError:
            pass
        return bytes(kept[:ERROR_BODY_BYTES])

    def _read_body(self, response: httpx.Response, url: str, attempt: int) -> bytes | _RetryableFailure:
        declared = declared_length(response)
        too_large = f"response larger than {describe_size(self.max_body_bytes)}"
        if declared is not None and declared > self.max_body_bytes:
            raise FetchError(url, response.status_code, too_large, attempt)
        chunks: list[bytes] = []
        received = 0
        try:
            # Counting decoded bytes also caps what a small compressed body can expand into.
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > self.max_body_bytes:
                    raise FetchError(url, response.status_code, too_large, attempt)
                chunks.append(chunk)
        except httpx.TimeoutException:
            return _RetryableFailure("timed out", response.status_code)
        except (httpx.RemoteProtocolError, httpx.NetworkError):
            return self._ended_early(response)
        except httpx.DecodingError as exc:
            raise FetchError(url, response.status_code, f"undecodable body ({exc})", attempt) from exc
        # The transport normally raises on a short body; this catches one that ends quietly anyway.
        if declared is not None and response.num_bytes_downloaded < declared:
            return self._ended_early(response)
        return b"".join(chunks)

    @staticmethod
    def _ended_early(response: httpx.Response) -> _RetryableFailure:
        declared = declared_length(response)
        got = response.num_bytes_downloaded
        detail = f"got {got:,} of {declared:,} bytes" if declared is not None else f"got {got:,} bytes"
        return _RetryableFailure(f"response body ended early ({detail})", response.status_code)

    @staticmethod
    def _result(
        response: httpx.Response,
        body: bytes,
        attempt: int,
        sent_etag: str | None,
        sent_last_modified: str | None,
    ) -> FetchResult:
        not_modified = response.status_code == HTTPStatus.NOT_MODIFIED
        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
        # A 304 need not repeat the validators; the ones we sent are still the current ones.
        if not_modified:
            etag = etag or sent_etag
            last_modified = last_modified or sent_last_modified
        return FetchResult(
            url=str(response.url),
            status=response.status_code,
            body=body,
            content_type=media_type(response),
            charset=response.charset_encoding,
            etag=etag,
            last_modified=last_modified,
            attempts=attempt,
        )
