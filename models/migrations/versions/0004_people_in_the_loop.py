"""People in the loop: a name and a note on every decision, and the console's operators.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reconciliations") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("note", sa.String(length=1000), nullable=True))
    op.create_index("ix_reconciliations_started_id", "reconciliations", ["started_at", "id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("practice_id", sa.Integer(), sa.ForeignKey("practices.id", ondelete="CASCADE"), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("reconciliation_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("detail", sa.String(length=2000), nullable=True),
    )
    op.create_index("ix_decisions_at_id", "decisions", ["at", "id"])
    op.create_index("ix_decisions_practice_at", "decisions", ["practice_id", "at"])
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False, unique=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("operators")
    op.drop_index("ix_decisions_practice_at", table_name="decisions")
    op.drop_index("ix_decisions_at_id", table_name="decisions")
    op.drop_table("decisions")
    op.drop_index("ix_reconciliations_started_id", table_name="reconciliations")
    with op.batch_alter_table("reconciliations") as batch:
        batch.drop_column("note")
        batch.drop_column("actor")
