"""Migrations applied to a database that already holds data, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from digest.db import _alembic_config, check_schema, current_revision, head_revision, make_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'migrate.sqlite3'}"


def test_upgrading_keeps_stored_listings(database_url: str) -> None:
    engine = make_engine(database_url)
    command.upgrade(_alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO listing (title_key, title, abstract, authors, source, first_seen_at) "
                "VALUES ('a paper', 'A paper', 'About things.', '[]', 'old.txt', CURRENT_TIMESTAMP)"
            )
        )
    command.upgrade(_alembic_config(engine), "head")
    assert current_revision(engine) == head_revision()
    check_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT title, categories, links, seen_in, arxiv_id FROM listing")).one()
    assert row.title == "A paper"
    assert [row.categories, row.links, row.seen_in] in ([[], {}, []], ["[]", "{}", "[]"])
    assert row.arxiv_id is None
    engine.dispose()
