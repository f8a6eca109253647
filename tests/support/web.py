"""What the web tests share: a recording dispatcher, rows made directly, form tokens read from pages."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from digest.db import transaction
from digest.models import Digest, DigestItem, DigestStatus, Listing, Subscriber, Vote, utcnow
from digest.services import Services
from digest.subscribers.feedback import votes_for
from digest.subscribers.subscriptions import subscribe
from digest.web.security import Csrf

BASE_URL = "https://digest.example.org"
_FORM = re.compile(r"<form\b[^>]*\baction=\"([^\"]*)\"[^>]*>(.*?)</form>", re.DOTALL)
_CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


@dataclass
class RecordingDispatcher:
    """Our own queueing seam, kept in memory so the tests can see what the app asked to send."""

    confirmations: list[int] = field(default_factory=list)
    digest_batches: list[list[int]] = field(default_factory=list)
    retrains: list[int] = field(default_factory=list)

    def send_confirmation(self, subscriber_id: int) -> None:
        self.confirmations.append(subscriber_id)

    def send_digests(self, digest_ids: Sequence[int]) -> None:
        self.digest_batches.append(list(digest_ids))

    def retrain(self, subscriber_id: int) -> None:
        self.retrains.append(subscriber_id)


def add_subscriber(
    services: Services, email: str = "ann@example.org", topics: str = "llms, robotics", confirmed: bool = True
) -> Subscriber:
    with transaction(services.sessions) as session:
        result = subscribe(session, email, topics, confirmed=confirmed)
        subscriber = session.get(Subscriber, result.subscriber_id)
        assert subscriber is not None
        return subscriber


def add_listing(
    services: Services, title: str = "Sparse attention for long documents", url: str | None = None
) -> Listing:
    with transaction(services.sessions) as session:
        listing = Listing(
            title_key=title.lower(), title=title, abstract="An abstract.", source="test", url=url
        )
        session.add(listing)
        session.flush()
        return listing


def reload(services: Services, subscriber_id: int) -> Subscriber:
    with services.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return subscriber


def subscriber_count(services: Services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def votes(services: Services, subscriber_id: int) -> dict[int, Vote]:
    with services.sessions() as session:
        return votes_for(session, subscriber_id)


def form_actions(page: str) -> list[str]:
    return [html.unescape(action) for action, _ in _FORM.findall(page)]


def csrf_tokens(page: str) -> dict[str, str]:
    """The CSRF token of each form on a page, by the form's action."""
    found = {}
    for action, body in _FORM.findall(page):
        token = _CSRF_FIELD.search(body)
        if token:
            found[html.unescape(action)] = html.unescape(token.group(1))
    return found


def submit(
    client: TestClient, page_path: str, action: str | None = None, data: Mapping[str, Any] | None = None
) -> httpx.Response:
    """Open a page as a browser would and submit one of its forms, with the token the page carries."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    target = action or page_path
    tokens = csrf_tokens(page.text)
    assert target in tokens, f"{page_path} has no form posting to {target}: {sorted(tokens)}"
    return client.post(target, data={**(data or {}), "csrf_token": tokens[target]})


def csrf_for(client: TestClient, services: Services, path: str) -> str:
    """A valid token for any path, for posting where no page offers a form (a tampered link, say)."""
    csrf = Csrf(services.settings.secret_key, secure=services.settings.base_url.startswith("https://"))
    if client.cookies.get(csrf.cookie_name) is None:
        client.get("/")
    secret = client.cookies.get(csrf.cookie_name)
    assert secret is not None, "the start page did not set the CSRF cookie"
    return csrf.token(secret, path)


def post_with_csrf(
    client: TestClient, services: Services, path: str, data: Mapping[str, Any] | None = None
) -> httpx.Response:
    return client.post(path, data={**(data or {}), "csrf_token": csrf_for(client, services, path)})


def tampered(token: str) -> str:
    # A character well inside the signature, where every bit counts.
    position = len(token) - 5
    replacement = "A" if token[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1 :]


def without_typed_address(response: httpx.Response, address: str) -> bytes:
    """The answer with the address it repeats back blanked, for comparing answers to different addresses:
    the one place it may differ, and it must (once, as typed and normalised)."""
    shown = html.escape(address.strip().lower()).encode()
    assert response.content.count(shown) == 1, f"{address} is not shown once in the answer"
    return response.content.replace(shown, b"ADDRESS")


def without_nonce(headers: httpx.Headers) -> dict[str, str]:
    """Response headers with the per-response CSP nonce blanked, for comparing two answers."""
    plain = dict(headers)
    plain["content-security-policy"] = re.sub(r"'nonce-[^']+'", "'nonce-…'", plain["content-security-policy"])
    return plain


def add_digest(
    services: Services,
    subscriber_id: int,
    listing_ids: Sequence[int],
    digest_date: date,
    status: DigestStatus = DigestStatus.SENT,
) -> int:
    with transaction(services.sessions) as session:
        now = utcnow()
        digest = Digest(
            subscriber_id=subscriber_id,
            digest_date=digest_date,
            status=status,
            candidates_until=now,
            planned_at=now,
            sent_at=now if status is DigestStatus.SENT else None,
        )
        session.add(digest)
        session.flush()
        for rank, listing_id in enumerate(listing_ids, start=1):
            session.add(
                DigestItem(
                    digest_id=digest.id,
                    subscriber_id=subscriber_id,
                    listing_id=listing_id,
                    rank=rank,
                    score=1.0,
                    reason="matches your topics",
                    section="picks",
                )
            )
        return digest.id
