"""alarm lane: topics the alarm lane holds

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import anxin.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alarm_lane_topics',
        sa.Column('topic', sa.String(length=500), nullable=False),
        sa.Column('alive_until', anxin.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('topic'),
    )


def downgrade() -> None:
    op.drop_table('alarm_lane_topics')
