"""device commissioning: verification state (unverified until a test press is seen end to end)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anxin.db

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        # devices registered before this revision have never been proven this way: unverified
        batch_op.add_column(sa.Column('verification', sa.String(length=12), nullable=False,
                                      server_default='unverified'))
        batch_op.add_column(sa.Column('verified_at', anxin.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('verified_by', sa.String(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('verified_incident_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('verified_incident_id')
        batch_op.drop_column('verified_by')
        batch_op.drop_column('verified_at')
        batch_op.drop_column('verification')
