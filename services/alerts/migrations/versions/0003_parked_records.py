"""alert_parked: records the alerts worker set aside on the dead-letter topic

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.platform.db

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alert_parked',
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('subject', sa.String(length=200), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('parked_at', services.platform.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('topic', 'partition', 'offset', name=op.f('pk_alert_parked'))
    )
    with op.batch_alter_table('alert_parked', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_parked_event_id'), ['event_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_parked', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_parked_event_id'))

    op.drop_table('alert_parked')
