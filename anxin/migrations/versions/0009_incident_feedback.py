"""incident feedback and dispatch: the guard dispatched, feedback steps (issue 8)

Revision ID: 0009
Revises: 0008 (to be rechained onto 0008, the users/auth migration, when merged)
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dispatched_guard', sa.String(length=200), nullable=True))
    with op.batch_alter_table('escalation_steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feedback', sa.String(length=20), nullable=True))
        batch_op.create_unique_constraint('uq_escalation_feedback', ['incident_id', 'feedback'])


def downgrade() -> None:
    with op.batch_alter_table('escalation_steps', schema=None) as batch_op:
        batch_op.drop_constraint('uq_escalation_feedback', type_='unique')
        batch_op.drop_column('feedback')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('dispatched_guard')
