"""Outbox rows name their target (webhook, notify) and remember which notification URLs took them.

Revision ID: 0006
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        # Every row written before this revision was the webhook's.
        batch.add_column(sa.Column("target", sa.String(length=16), nullable=False, server_default="webhook"))
        batch.add_column(sa.Column("delivered_to", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM outbox_events WHERE target != 'webhook'")
    with op.batch_alter_table("outbox_events") as batch:
        batch.drop_column("delivered_to")
        batch.drop_column("target")
