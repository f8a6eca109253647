"""Fixtures shared by the tests: each test gets its own data dir, SQLite database and services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.config import Settings
from digest.db import upgrade
from digest.services import Services
from tests.support.env import POSTGRES_ADMIN_URL, SHARED_LISTINGS, SmtpSink, free_port, make_settings


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(host="127.0.0.1", port=free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


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
