"""Initial schema: practices, GUID history, reconciliations, tickets, outbox, control flags.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

from models.types import UTCDateTime


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('control_flags',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.Column('reason', sa.String(length=512), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('outbox_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('delivered_at', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=512), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    op.create_index('ix_outbox_events_pending', 'outbox_events', ['delivered_at', 'next_attempt_at'], unique=False)

    op.create_table('practices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pms_type', sa.String(length=16), nullable=False),
    sa.Column('pms_id', sa.String(length=128), nullable=False),
    sa.Column('halo_guid', sa.String(length=36), nullable=False),
    sa.Column('practice_name', sa.String(length=512), nullable=False),
    sa.Column('identifiers', sa.JSON(), nullable=False),
    sa.Column('identifiers_normalised', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('proposed_guid', sa.String(length=36), nullable=True),
    sa.Column('proposed_identifiers', sa.JSON(), nullable=True),
    sa.Column('rejected_fingerprint', sa.String(length=128), nullable=True),
    sa.Column('last_verified_at', UTCDateTime(), nullable=True),
    sa.Column('last_verdict', sa.String(length=32), nullable=True),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=True),
    sa.Column('backoff_attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pms_type', 'pms_id', name='uq_practices_pms')
    )
    op.create_index('ix_practices_halo_guid', 'practices', ['halo_guid'], unique=False)
    op.create_index('ix_practices_last_verified_at_id', 'practices', ['last_verified_at', 'id'], unique=False)
    op.create_index('ix_practices_next_attempt_at', 'practices', ['next_attempt_at'], unique=False)

    op.create_table('guid_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('practice_id', sa.Integer(), nullable=False),
    sa.Column('guid', sa.String(length=36), nullable=False),
    sa.Column('valid_from', UTCDateTime(), nullable=False),
    sa.Column('valid_until', UTCDateTime(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_guid_history_guid', 'guid_history', ['guid'], unique=False)
    op.create_index('ix_guid_history_practice_from', 'guid_history', ['practice_id', 'valid_from'], unique=False)

    op.create_table('reconciliations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('practice_id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('verdict', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('old_guid', sa.String(length=36), nullable=True),
    sa.Column('new_guid', sa.String(length=36), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('halo_calls', sa.Integer(), nullable=False),
    sa.Column('halo_answer', sa.JSON(), nullable=False),
    sa.Column('detail', sa.String(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_reconciliations_action_started', 'reconciliations', ['action', 'started_at'], unique=False)
    op.create_index('ix_reconciliations_practice_started', 'reconciliations', ['practice_id', 'started_at'], unique=False)

    op.create_table('tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('practice_id', sa.Integer(), nullable=True),
    sa.Column('dedup_key', sa.String(length=128), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('opened_at', UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', UTCDateTime(), nullable=False),
    sa.Column('acknowledged_at', UTCDateTime(), nullable=True),
    sa.Column('resolved_at', UTCDateTime(), nullable=True),
    sa.Column('detail', sa.String(length=2000), nullable=False),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_tickets_practice_id', 'tickets', ['practice_id'], unique=False)
    op.create_index('ix_tickets_status_kind', 'tickets', ['status', 'kind'], unique=False)
    op.create_index('uq_tickets_open_dedup_key', 'tickets', ['dedup_key'], unique=True, sqlite_where=sa.text("status != 'resolved'"), postgresql_where=sa.text("status != 'resolved'"))


def downgrade() -> None:
    op.drop_index('uq_tickets_open_dedup_key', table_name='tickets', sqlite_where=sa.text("status != 'resolved'"), postgresql_where=sa.text("status != 'resolved'"))
    op.drop_index('ix_tickets_status_kind', table_name='tickets')
    op.drop_index('ix_tickets_practice_id', table_name='tickets')

    op.drop_table('tickets')
    op.drop_index('ix_reconciliations_practice_started', table_name='reconciliations')
    op.drop_index('ix_reconciliations_action_started', table_name='reconciliations')

    op.drop_table('reconciliations')
    op.drop_index('ix_guid_history_practice_from', table_name='guid_history')
    op.drop_index('ix_guid_history_guid', table_name='guid_history')

    op.drop_table('guid_history')
    op.drop_index('ix_practices_next_attempt_at', table_name='practices')
    op.drop_index('ix_practices_last_verified_at_id', table_name='practices')
    op.drop_index('ix_practices_halo_guid', table_name='practices')

    op.drop_table('practices')
    op.drop_index('ix_outbox_events_pending', table_name='outbox_events')

    op.drop_table('outbox_events')
    op.drop_table('control_flags')
