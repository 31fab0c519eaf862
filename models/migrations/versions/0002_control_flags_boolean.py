"""Control flags hold a boolean, not the strings "true" and "false".

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("control_flags") as batch:
        batch.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE control_flags SET enabled = (value = 'true')")
    with op.batch_alter_table("control_flags") as batch:
        batch.drop_column("value")


def downgrade() -> None:
    with op.batch_alter_table("control_flags") as batch:
        batch.add_column(sa.Column("value", sa.String(length=256), nullable=False, server_default="false"))
    op.execute("UPDATE control_flags SET value = CASE WHEN enabled THEN 'true' ELSE 'false' END")
    with op.batch_alter_table("control_flags") as batch:
        batch.drop_column("enabled")
