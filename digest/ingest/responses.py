"""Reading an HTTP response's headers the way the fetcher needs: status text, Retry-After, type, length."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import httpx

log = logging.getLogger(__name__)

DEFAULT_MIN_INTERVAL: Mapping[str, float] = {
    "export.arxiv.org": 3.0,
    "arxiv.org": 3.0,
    "rss.arxiv.org": 3.0,
}


def describe_size(size: int) -> str:
    mebibyte = 1024 * 1024
    if size >= mebibyte and size % mebibyte == 0:
        return f"{size // mebibyte} MB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KB"
    return f"{size:,} bytes"


def status_reason(response: httpx.Response) -> str:
    phrase = response.reason_phrase
    if not phrase:
        try:
            phrase = HTTPStatus(response.status_code).phrase
        except ValueError:
            phrase = ""
    return f"{response.status_code} {phrase}".rstrip()


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait, or None when the header is absent or unreadable.

    An HTTP date is measured against the response's own Date header when there is one, so a skewed
    clock on either side does not stretch or shrink the wait.
    """
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        target = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if target.tzinfo is None:
        target = target.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    server_date = response.headers.get("date")
    if server_date:
        try:
            parsed = parsedate_to_datetime(server_date)
        except (TypeError, ValueError):
            pass
        else:
            now = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return max(0.0, (target - now).total_seconds())


def media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None
