"""silences and maintenance windows; deliveries by contact and time (rate limit)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anxin.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'silences',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('institution_id', sa.String(length=64), nullable=True),
        sa.Column('device_id', sa.String(length=200), nullable=True),
        sa.Column('types', sa.JSON(), nullable=False),
        sa.Column('starts_at', anxin.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ends_at', anxin.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', anxin.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.create_index('ix_silences_ends_at', ['ends_at'], unique=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_contact_at', ['contact_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_contact_at')
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.drop_index('ix_silences_ends_at')
    op.drop_table('silences')
