"""A real HTTP/1.1 server on loopback that plays scripted responses, for testing HTTP clients.

Scripting responses per path (served in order, the last one repeating) lets a test stage the failures
an origin produces in the wild, slow answers, dropped connections, 429s, on a real socket, so the client
under test runs its real HTTP stack. Every request is recorded for assertions.

Get the `replay_server` fixture by importing `replay_server_fixture` from this module into a conftest
or test module (the differing name keeps linters from calling the test arguments redefinitions):

    def test_x(replay_server: ReplayServer) -> None:
        replay_server.script("/feed", Reply(503), Reply(200, body=b"ok"))
        ... GET replay_server.url("/feed") ...
        assert len(replay_server.requests_to("/feed")) == 2
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.env import FIXTURES

HeaderPairs = tuple[tuple[str, str], ...]


def _header_pairs(headers: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> HeaderPairs:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), str(value)) for name, value in items)


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    `delay` holds the answer back (to trip client timeouts). `truncate_to` declares the full body's
    Content-Length but sends only that many bytes and closes the connection. `chunked` sends the body
    with chunked transfer encoding, so the client cannot know its size up front.
    """

    status: int = 200
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None
    body: bytes = b""
    delay: float = 0.0
    truncate_to: int | None = None
    chunked: bool = False

    def header_pairs(self) -> HeaderPairs:
        return _header_pairs(self.headers)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: Message
    arrived_at: float  # time.monotonic() when the request line was read

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


Responder = Callable[[RecordedRequest], Reply]
Step = Reply | Responder


def fixture_reply(
    name: str,
    *,
    status: int = 200,
    content_type: str = "application/octet-stream",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A reply whose body is the file tests/fixtures/<name>."""
    body = (FIXTURES / name).read_bytes()
    return Reply(status, {"Content-Type": content_type, **(headers or {})}, body)


def etag_resource(body: bytes, etag: str, *, content_type: str = "application/xml") -> Responder:
    """A resource that answers 304 when If-None-Match names `etag`, and 200 with the ETag otherwise."""

    def respond(request: RecordedRequest) -> Reply:
        offered = request.header("If-None-Match") or ""
        if etag in (tag.strip() for tag in offered.split(",")) or offered.strip() == "*":
            return Reply(304, {"ETag": etag})
        return Reply(200, {"ETag": etag, "Content-Type": content_type}, body)

    return respond


def last_modified_resource(
    body: bytes, last_modified: str, *, content_type: str = "application/xml"
) -> Responder:
    """A resource that answers 304 when If-Modified-Since is not older than `last_modified`."""
    modified_at = parsedate_to_datetime(last_modified)

    def respond(request: RecordedRequest) -> Reply:
        since = request.header("If-Modified-Since")
        if since:
            try:
                if parsedate_to_datetime(since) >= modified_at:
                    return Reply(304, {"Last-Modified": last_modified})
            except (TypeError, ValueError):
                pass
        return Reply(200, {"Last-Modified": last_modified, "Content-Type": content_type}, body)

    return respond


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, {"Location": location})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ReplayHTTPServer

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recorded requests are what tests look at; keep pytest's output clean

    def _serve(self, *, send_body: bool) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            self.rfile.read(int(length))
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers=self.headers,
            arrived_at=time.monotonic(),
        )
        reply = self.server.replay.next_reply(request)
        if reply.delay and self.server.replay.closing.wait(reply.delay):
            self.close_connection = True
            return
        try:
            self._write(reply, send_body=send_body)
        except OSError:
            # The client gave up (timeout) before we answered; that is the point of a delayed reply.
            self.close_connection = True

    def _write(self, reply: Reply, *, send_body: bool) -> None:
        pairs = reply.header_pairs()
        names = {name.lower() for name, _ in pairs}
        self.send_response_only(reply.status)
        if "date" not in names:
            self.send_header("Date", formatdate(usegmt=True))
        if "server" not in names:
            self.send_header("Server", "replay-server")
        for name, value in pairs:
            self.send_header(name, value)
        no_body_status = reply.status == 304 or 100 <= reply.status < 200 or reply.status == 204
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif "content-length" not in names and not no_body_status:
            self.send_header("Content-Length", str(len(reply.body)))
        if reply.truncate_to is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if not send_body or no_body_status:
            self.wfile.flush()
            return
        if reply.truncate_to is not None:
            self.wfile.write(reply.body[: reply.truncate_to])
            self.wfile.flush()
            self.close_connection = True
            return
        if reply.chunked:
            chunk_size = 16 * 1024
            for start in range(0, len(reply.body), chunk_size):
                chunk = reply.body[start : start + chunk_size]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(reply.body)
        self.wfile.flush()


class _ReplayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replay: ReplayServer) -> None:
        self.replay = replay
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (a timeout, an aborted oversized body) are part of what tests stage.
        if self.replay.closing.is_set() or isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class ReplayServer:
    """The scripts, the request log and the running server; start with `ReplayServer.start()`."""

    closing: threading.Event = field(default_factory=threading.Event)
    requests: list[RecordedRequest] = field(default_factory=list)
    _scripts: dict[str, list[Step]] = field(default_factory=dict)
    _served: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: _ReplayHTTPServer | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def start(cls) -> ReplayServer:
        replay = cls()
        replay._httpd = _ReplayHTTPServer(replay)
        replay._thread = threading.Thread(
            target=replay._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        replay._thread.start()
        return replay

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def script(self, path: str, *steps: Step) -> None:
        """Serve `steps` to successive requests for `path` (query ignored); the last one repeats."""
        if not steps:
            raise ValueError("a script needs at least one reply")
        with self._lock:
            self._scripts[path] = list(steps)
            self._served[path] = 0

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            steps = self._scripts.get(request.path)
            if steps is None:
                return Reply(
                    HTTPStatus.NOT_FOUND,
                    {"Content-Type": "text/plain"},
                    f"no script for {request.path}".encode(),
                )
            index = min(self._served[request.path], len(steps) - 1)
            self._served[request.path] += 1
            step = steps[index]
        return step if isinstance(step, Reply) else step(request)

    def close(self) -> None:
        self.closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.drop_connections()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@pytest.fixture(name="replay_server")
def replay_server_fixture() -> Iterator[ReplayServer]:
    """Import `replay_server_fixture` into a conftest or test module to get the `replay_server` fixture."""
    server = ReplayServer.start()
    try:
        yield server
    finally:
        server.close()
