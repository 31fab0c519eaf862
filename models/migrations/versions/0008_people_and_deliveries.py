"""Deliveries you can see and two people for a change: the outbox row's status (``failed`` is kept,
never dropped), server-side console sessions, a sign-in throttle shared by every process, disabled
operators, and the approvals a held change has gathered.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A row that had used every attempt before this revision was given up on silently: it is `failed` now.
GIVE_UP_AFTER = 50


def upgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="pending"))
    op.execute("UPDATE outbox_events SET status = 'delivered' WHERE delivered_at IS NOT NULL")
    op.execute(f"UPDATE outbox_events SET status = 'failed' WHERE delivered_at IS NULL AND attempts >= {GIVE_UP_AFTER}")
    op.create_index("ix_outbox_events_status_id", "outbox_events", ["status", "id"], unique=False)

    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))

    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_name", sa.String(length=128), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_console_sessions_operator", "console_sessions", ["operator_name"], unique=False)
    op.create_table(
        "signin_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["practice_id"], ["practices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("practice_id", "fingerprint", "actor", name="uq_approvals_once_each"),
    )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_table("signin_throttle")
    op.drop_index("ix_console_sessions_operator", table_name="console_sessions")
    op.drop_table("console_sessions")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("disabled_at")
    op.drop_index("ix_outbox_events_status_id", table_name="outbox_events")
    with op.batch_alter_table("outbox_events") as batch:
        batch.drop_column("status")
