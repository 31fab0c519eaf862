"""Practices record when their run of halo_unavailable verdicts began (the unavailable_persists ticket).

Revision ID: 0005
Revises: 0003 (the lead rechains it after 0004 at merge)
"""

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("practices") as batch:
        batch.add_column(sa.Column("unavailable_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("practices") as batch:
        batch.drop_column("unavailable_since")
