"""delivery records written before sending (status, delivery key); step retry rounds and failure
notices; the incident's routing fallback

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anxin.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        # rows written before this revision were written after the provider answered
        batch_op.add_column(sa.Column('status', sa.String(length=12), nullable=False, server_default='failed'))
        batch_op.add_column(sa.Column('key', sa.String(length=300), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('answered_at', anxin.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_deliveries_step', ['step_id'], unique=False)
    op.execute("UPDATE deliveries SET status = 'delivered' WHERE ok")
    with op.batch_alter_table('escalation_steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rounds', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('notice_for', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_escalation_notice', ['incident_id', 'notice_for'])
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fallback', sa.String(length=40), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('fallback')
    with op.batch_alter_table('escalation_steps', schema=None) as batch_op:
        batch_op.drop_constraint('uq_escalation_notice', type_='unique')
        batch_op.drop_column('notice_for')
        batch_op.drop_column('rounds')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_step')
        batch_op.drop_column('answered_at')
        batch_op.drop_column('key')
        batch_op.drop_column('status')
