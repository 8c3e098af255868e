"""Sums and counts of events in 64-bit columns (transfer totals, month buckets, event counts, rulings).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDENED = {
    'agreements': ('transfers_total', 'event_count'),
    'cases': ('rulings', 'pending_stay_requests'),
    'subject_states': ('event_count',),
    'transfers': ('count',),
}


def upgrade() -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(),
                                      existing_nullable=False)


def downgrade() -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer(),
                                      existing_nullable=False)
