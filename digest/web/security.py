"""What guards every request: response headers, body limits, JSON-only API bodies and CSRF tokens.

CSRF: pages carry a hidden `csrf_token` that is an HMAC of a random per-browser secret (kept in an
HttpOnly, SameSite=Lax cookie) and of the path the form posts to, keyed by the server's secret key. A
POST is accepted only when the field matches the cookie it arrived with and the path it arrived at, so
another site can neither read a token nor mint one. The JSON API uses no cookies and accepts bodies only
as application/json, which no cross-site form can send without a CORS preflight this app never grants.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
API_PREFIX = "/api/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SecurityHeaders:
    """Headers every response carries; the per-response nonce lets the page's own scripts run, nothing else.

    A response that set its own Content-Security-Policy keeps it (the archived digest, whose email HTML
    needs inline styles, does); every other header is the same for all.
    """

    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        self.app = app
        # Served over https (the base URL says so), browsers are told never to try plain http again.
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                # One-button pages are what clickjacking needs, so no one may frame them.
                headers["X-Frame-Options"] = "DENY"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = (
                        f"default-src 'none'; style-src 'self'; script-src 'nonce-{nonce}'; "
                        "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                        "base-uri 'none'"
                    )
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                if self.https:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _error(path: str, status: int, detail: str) -> Response:
    if path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/"):
        return Response(json.dumps({"detail": detail}), status_code=status, media_type="application/json")
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Request refused</title></head>'
        f"<body><h1>Request refused</h1><p>{detail}.</p></body></html>"
    )
    return Response(page, status_code=status, media_type="text/html")


# A form or API body is a few kilobytes; a client that takes longer than this to send one is stalling.
BODY_READ_SECONDS = 10.0


class RequestGuards:
    """Refuses, before anything parses them, bodies over `max_body` bytes (413) and API bodies that are
    not JSON (415). A body without Content-Length is read here up to the limit and handed on from memory."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        length: int | None = None
        if declared is not None:
            if not re.fullmatch(r"\d{1,18}", declared.strip()):
                await _error(path, 400, "the Content-Length header is not a number")(scope, receive, send)
                return
            length = int(declared)
            if length > self.max_body:
                await self._too_large(path, scope, receive, send)
                return
        has_body = bool(length) or (length is None and "transfer-encoding" in headers)
        content_type = headers.get("content-type")
        if path.startswith(API_PREFIX) and (has_body or content_type) and not _is_json(content_type or ""):
            await _error(path, 415, "request bodies must be JSON, sent as Content-Type: application/json")(
                scope, receive, send
            )
            return
        # The body is read here, whole, under a deadline: an endless body is cut off at the limit, and a
        # client trickling it byte by byte cannot hold a worker (a slow-body attack).
        try:
            body = await asyncio.wait_for(self._read_body(receive), timeout=BODY_READ_SECONDS)
        except TimeoutError:
            detail = f"the request body did not arrive within {BODY_READ_SECONDS:g} s"
            await _error(path, 408, detail)(scope, receive, send)
            return
        if body is None:
            await self._too_large(path, scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it outgrows the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_body // 1024} KB"
        await _error(path, 413, f"the request body is larger than {limit}")(scope, receive, send)


# CSRF --------------------------------------------------------------------------------------------------

CSRF_FIELD = "csrf_token"
CSRF_COOKIE_MAX_AGE = 30 * 24 * 3600
_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


class CsrfRejected(Exception):
    """A form POST without the token its page carried; nothing was changed."""

    def __init__(self, retry_path: str) -> None:
        super().__init__("the form's security token is missing or does not match")
        self.retry_path = retry_path


class Csrf:
    def __init__(self, secret_key: str, *, secure: bool) -> None:
        self._key = hashlib.sha256(b"digest.csrf\x00" + secret_key.encode("utf-8")).digest()
        self.secure = secure
        # The __Host- prefix makes browsers refuse the cookie from a subdomain or over plain HTTP.
        self.cookie_name = "__Host-digest_csrf" if secure else "digest_csrf"

    def browser_secret(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name)
        return value if value is not None and _SECRET_PATTERN.fullmatch(value) else None

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(32)

    def token(self, browser_secret: str, path: str) -> str:
        mac = hmac.new(self._key, f"{browser_secret}\x00{path}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def valid(self, request: Request, submitted: str) -> bool:
        browser_secret = self.browser_secret(request)
        if browser_secret is None or not submitted:
            return False
        expected = self.token(browser_secret, request.url.path)
        return secrets.compare_digest(expected.encode("ascii"), submitted.encode("utf-8", "replace"))

    def set_cookie(self, response: Response, browser_secret: str) -> None:
        response.set_cookie(
            self.cookie_name,
            browser_secret,
            max_age=CSRF_COOKIE_MAX_AGE,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )


class FormTokens:
    """The `csrf(path)` a template calls for each form; it makes the browser secret only if a form needs it.

    A response that must not set cookies (the one-click unsubscribe answer) can still show a form when
    the browser already has a secret; `available` says whether it can.
    """

    def __init__(self, csrf: Csrf, request: Request, *, may_issue: bool) -> None:
        self._csrf = csrf
        self._secret = csrf.browser_secret(request)
        self._may_issue = may_issue
        self.issued: str | None = None

    @property
    def available(self) -> bool:
        return self._secret is not None or self._may_issue

    def __call__(self, path: str) -> str:
        if self._secret is None:
            if not self._may_issue:
                return ""
            self._secret = self.issued = self._csrf.new_secret()
        return self._csrf.token(self._secret, path)
