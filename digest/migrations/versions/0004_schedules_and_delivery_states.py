"""per-subscriber schedules, delivery states, bounces

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_hour", sa.SmallInteger(), nullable=False, server_default="6"))
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC"))
        batch_op.add_column(
            sa.Column("cadence", sa.String(length=10), nullable=False, server_default="daily")
        )
        batch_op.add_column(sa.Column("weekly_day", sa.SmallInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("next_due_at", _AWARE, nullable=True))
        batch_op.add_column(sa.Column("soft_bounces", sa.SmallInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("bounced_at", _AWARE, nullable=True))
        batch_op.add_column(sa.Column("bounce_reason", sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f("ix_subscriber_next_due_at"), ["next_due_at"], unique=False)

    with op.batch_alter_table("digest", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planned_at", _AWARE, nullable=True))
        batch_op.add_column(sa.Column("claimed_at", _AWARE, nullable=True))
        batch_op.add_column(sa.Column("queued_at", _AWARE, nullable=True))
        batch_op.add_column(sa.Column("handed_at", _AWARE, nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("next_attempt_at", _AWARE, nullable=True))
        batch_op.create_index("ix_digest_status", ["status"], unique=False)
    # Digests that existed before this revision were ranked when they were created.
    op.execute("UPDATE digest SET planned_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("digest", schema=None) as batch_op:
        batch_op.drop_index("ix_digest_status")
        for column in ("next_attempt_at", "attempts", "handed_at", "queued_at", "claimed_at", "planned_at"):
            batch_op.drop_column(column)

    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_next_due_at"))
        for column in (
            "bounce_reason",
            "bounced_at",
            "soft_bounces",
            "next_due_at",
            "weekly_day",
            "cadence",
            "timezone",
            "send_hour",
        ):
            batch_op.drop_column(column)
