"""terms a subscriber muted or boosted on the preferences page, and the votes a reset put aside for undo

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("term_adjustments", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reset_votes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("reset_votes")
        batch_op.drop_column("term_adjustments")
