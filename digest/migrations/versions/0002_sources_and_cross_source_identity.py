"""sources and cross-source identity

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("quiet_days", sa.SmallInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("http_cache", sa.JSON(), nullable=False),
        sa.Column("next_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source")),
        sa.UniqueConstraint("name", name=op.f("uq_source_name")),
    )
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_source_next_fetch_at"), ["next_fetch_at"], unique=False)

    op.create_table(
        "fetch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("http_status", sa.SmallInteger(), nullable=True),
        sa.Column("not_modified", sa.Boolean(), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["source.id"], name=op.f("fk_fetch_source_id_source"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fetch")),
    )
    with op.batch_alter_table("fetch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fetch_source_id"), ["source_id"], unique=False)

    op.create_table(
        "watched_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["source.id"], name=op.f("fk_watched_file_source_id_source"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watched_file")),
        sa.UniqueConstraint("source_id", "path", name=op.f("uq_watched_file_source_id")),
    )
    with op.batch_alter_table("listing", schema=None) as batch_op:
        batch_op.add_column(sa.Column("arxiv_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("doi", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("version", sa.SmallInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("categories", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(sa.Column("upvotes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("links", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column("seen_in", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_listing_title_key"), type_="unique")
        batch_op.create_index(batch_op.f("ix_listing_title_key"), ["title_key"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_listing_arxiv_id"), ["arxiv_id"])
        batch_op.create_unique_constraint(batch_op.f("uq_listing_doi"), ["doi"])


def downgrade() -> None:
    with op.batch_alter_table("listing", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_listing_doi"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_listing_arxiv_id"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_listing_title_key"))
        batch_op.create_unique_constraint(batch_op.f("uq_listing_title_key"), ["title_key"])
        batch_op.drop_column("updated_at")
        batch_op.drop_column("seen_in")
        batch_op.drop_column("links")
        batch_op.drop_column("upvotes")
        batch_op.drop_column("categories")
        batch_op.drop_column("version")
        batch_op.drop_column("doi")
        batch_op.drop_column("arxiv_id")

    op.drop_table("watched_file")
    with op.batch_alter_table("fetch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fetch_source_id"))

    op.drop_table("fetch")
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_next_fetch_at"))

    op.drop_table("source")
