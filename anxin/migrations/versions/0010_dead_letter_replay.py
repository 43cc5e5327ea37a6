"""dead letters: replayed_at, replayed_by, replay_result (an administrator's replay through the decoder)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 16:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anxin.db

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replayed_at', anxin.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('replayed_by', sa.String(length=100), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('replay_result', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_column('replay_result')
        batch_op.drop_column('replayed_by')
        batch_op.drop_column('replayed_at')
