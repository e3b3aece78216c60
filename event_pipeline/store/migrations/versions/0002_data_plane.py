"""data plane: upload order, per-field provenance, inbox sightings, mail pauses

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ_FIELDS = ("name", "phone", "department", "position", "extra")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    pg = _postgres()
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('original_path', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('mail_note', sa.Text(), nullable=True))

    # Existing uploads are numbered in the order they were registered.
    op.execute(
        "UPDATE uploads SET seq = ordered.n FROM ("
        " SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n FROM uploads"
        ") AS ordered WHERE uploads.id = ordered.id"
    )
    if pg:
        op.execute("CREATE SEQUENCE uploads_seq OWNED BY uploads.seq")
        op.execute("SELECT setval('uploads_seq', COALESCE(MAX(seq), 0) + 1, false) FROM uploads")

    # SQLite: NOT NULL and a UNIQUE need a table copy (batch mode). uploads is safe to copy:
    # no foreign key points at it.
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.alter_column(
            'seq',
            existing_type=sa.Integer(),
            nullable=False,
            server_default=sa.text("nextval('uploads_seq')") if pg else None,
        )
        batch_op.create_unique_constraint(batch_op.f('uq_uploads_seq'), ['seq'])

    # Plain ADD COLUMN (NOT NULL with a default needs no table copy): participants is referenced
    # by access_tokens and email_deliveries, and SQLite could not drop it for a copy with the
    # foreign keys on.
    for field in SEQ_FIELDS:
        op.add_column('participants', sa.Column(f'{field}_seq', sa.Integer(), server_default='0', nullable=False))
    # Every field counts as written by the upload that last touched the row.
    known = (
        "COALESCE((SELECT seq FROM uploads WHERE uploads.id = participants.updated_upload_id),"
        " (SELECT seq FROM uploads WHERE uploads.id = participants.created_upload_id), 0)"
    )
    op.execute(f"UPDATE participants SET {', '.join(f'{f}_seq = {known}' for f in SEQ_FIELDS)}")

    op.create_table('inbox_sightings',
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=200), nullable=False),
    sa.Column('first_seen', sa.Float(), nullable=False),
    sa.Column('sightings', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('path', name=op.f('pk_inbox_sightings'))
    )
    op.create_table('mail_pauses',
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('probe_after', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('backend', name=op.f('pk_mail_pauses'))
    )


def downgrade() -> None:
    op.drop_table('mail_pauses')
    op.drop_table('inbox_sightings')
    # Native DROP COLUMN (SQLite >= 3.35): no table copy of participants, see upgrade().
    for field in SEQ_FIELDS:
        op.drop_column('participants', f'{field}_seq')
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_uploads_seq'), type_='unique')
        batch_op.drop_column('mail_note')
        batch_op.drop_column('original_path')
        batch_op.drop_column('seq')  # PostgreSQL drops the OWNED BY sequence with it
