"""deliveries: lease token, write order, per-subscription claim index

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


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_token', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.create_index('ix_deliveries_claim', ['subscription_id', 'status', 'next_attempt_at', 'created_at', 'seq'],
                              unique=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.alter_column('seq', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_claim')
        batch_op.drop_column('seq')
        batch_op.drop_column('lease_token')
