"""learned subscriber models and trending

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscriber_model",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("votes_key", sa.String(length=64), nullable=False),
        sa.Column("columns", sa.LargeBinary(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_subscriber_model_subscriber_id_subscriber"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_subscriber_model")),
    )
    with op.batch_alter_table("digest_item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("section", sa.String(length=20), nullable=False, server_default="picks")
        )

    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("show_trending", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("show_trending")

    with op.batch_alter_table("digest_item", schema=None) as batch_op:
        batch_op.drop_column("section")

    op.drop_table("subscriber_model")
