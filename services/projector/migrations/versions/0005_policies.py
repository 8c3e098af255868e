"""Policies: what each case says about each policy, and each policy's status now.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from services.platform.db import UTCDateTime

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('policy_facts',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=120), nullable=False),
    sa.Column('case', sa.String(length=120), nullable=False),
    sa.Column('facts', JSON, nullable=False),
    sa.PrimaryKeyConstraint('generation', 'policy', 'case', name=op.f('pk_policy_facts'))
    )
    with op.batch_alter_table('policy_facts', schema=None) as batch_op:
        batch_op.create_index('ix_policy_facts_case', ['generation', 'case'], unique=False)
    op.create_table('policies',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('blocked_in', JSON, nullable=False),
    sa.Column('since', UTCDateTime(), nullable=True),
    sa.Column('next_change_at', UTCDateTime(), nullable=True),
    sa.Column('next_change_status', sa.String(length=16), nullable=True),
    sa.Column('pending_stay_requests', sa.Integer(), nullable=False),
    sa.Column('document', JSON, nullable=False),
    sa.Column('next_effect_at', UTCDateTime(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'id', name=op.f('pk_policies'))
    )
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.create_index('ix_policies_due', ['generation', 'next_effect_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_index('ix_policies_due')
    op.drop_table('policies')
    with op.batch_alter_table('policy_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_policy_facts_case')
    op.drop_table('policy_facts')
