"""corrections loop: undo record, change history, delivery events, resends, erasures

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('uploads') as batch:
        batch.add_column(sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('undo_summary', sa.Text(), nullable=True))
        batch.add_column(sa.Column('copy_note', sa.Text(), nullable=True))
    # Plain ADD COLUMN: participants is referenced by foreign keys (see 0002).
    op.add_column('participants', sa.Column('bounced_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('participants', sa.Column('email_changed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('participants', sa.Column('replaced_by', sa.Integer(), nullable=True))
    # email_deliveries is referenced by nothing, so SQLite may copy it to drop the unique.
    with op.batch_alter_table('email_deliveries') as batch:
        batch.add_column(sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('reported_in', sa.String(length=200), nullable=True))
        batch.drop_constraint('uq_email_deliveries_participant_id_kind', type_='unique')
        batch.create_index('ix_email_deliveries_participant', ['participant_id', 'kind'], unique=False)
    op.create_table('participant_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.String(length=100), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('before', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_participant_changes_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participant_changes')),
    sa.UniqueConstraint('upload_id', 'participant_id', name=op.f('uq_participant_changes_upload_id_participant_id'))
    )
    op.create_index('ix_participant_changes_participant', 'participant_changes', ['participant_id'], unique=False)
    op.create_table('delivery_events',
    sa.Column('sg_event_id', sa.String(length=100), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sg_event_id', name=op.f('pk_delivery_events'))
    )
    op.create_index('ix_delivery_events_delivery', 'delivery_events', ['delivery_id'], unique=False)
    op.create_index('ix_delivery_events_received', 'delivery_events', ['received_at'], unique=False)
    op.create_table('erasures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('participants', sa.Integer(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures'))
    )


def downgrade() -> None:
    op.drop_table('erasures')
    op.drop_index('ix_delivery_events_received', table_name='delivery_events')
    op.drop_index('ix_delivery_events_delivery', table_name='delivery_events')
    op.drop_table('delivery_events')
    op.drop_index('ix_participant_changes_participant', table_name='participant_changes')
    op.drop_table('participant_changes')
    with op.batch_alter_table('email_deliveries') as batch:
        batch.drop_index('ix_email_deliveries_participant')
        batch.create_unique_constraint('uq_email_deliveries_participant_id_kind', ['participant_id', 'kind'])
        batch.drop_column('reported_in')
        batch.drop_column('accepted_at')
    op.drop_column('participants', 'replaced_by')
    op.drop_column('participants', 'email_changed_at')
    op.drop_column('participants', 'bounced_at')
    with op.batch_alter_table('uploads') as batch:
        batch.drop_column('copy_note')
        batch.drop_column('undo_summary')
        batch.drop_column('undone_at')
