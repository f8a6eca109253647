"""Fixtures shared by the tests: each test gets its own data dir, SQLite database and services."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.config import Settings, get_settings
from digest.db import upgrade
from digest.services import Services

SHARED_LISTINGS = Path(__file__).resolve().parents[2] / "shared" / "listings"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append(msg)
            self.raw.append(raw)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] and address in str(m["To"])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(host="127.0.0.1", port=free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def make_settings(tmp_path: Path, **overrides: str) -> Settings:
    env = {
        "DIGEST_DATA_DIR": str(tmp_path / "data"),
        "DIGEST_BASE_URL": "https://digest.example.org",
        "DIGEST_FROM": "Paper digest <digest@example.org>",
        "DIGEST_SECRET_KEY": "test-secret-key-that-is-long-enough",
    }
    env.update(overrides)
    return get_settings(env)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services.build(settings)
    upgrade(svc.engine)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def shared_listings() -> list[Path]:
    files = sorted(SHARED_LISTINGS.glob("*.txt"))
    if not files:
        pytest.fail(f"the shared listing dumps are missing from {SHARED_LISTINGS}")
    return files


POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own on the local PostgreSQL server, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"digest_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for this test (`make test` starts it): {exc}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def any_services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """The same test on the embedded SQLite database and on the real PostgreSQL server."""
    overrides = {}
    if request.param == "postgresql":
        overrides["DIGEST_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    svc = Services.build(make_settings(tmp_path, **overrides))
    upgrade(svc.engine)
    try:
        yield svc
    finally:
        svc.close()
