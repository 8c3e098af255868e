"""The time model of issue 13: subjects folded as of now (and again when due), alerts that fire again, policies.

Existing subject states were folded to the end of time: every one is marked due (1970), so
the worker folds each again as of now on its next tick.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

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
    with op.batch_alter_table('alert_subjects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_effect_at', UTCDateTime(), nullable=True))
        batch_op.create_index('ix_alert_subjects_due', ['next_effect_at'], unique=False)
    subjects = sa.table('alert_subjects', sa.column('next_effect_at', UTCDateTime()))
    op.get_bind().execute(sa.update(subjects).values(next_effect_at=datetime(1970, 1, 1, tzinfo=UTC)))
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('episode', sa.Integer(), nullable=False, server_default='1'))
    op.create_table('alert_policy_facts',
    sa.Column('policy', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('facts', JSON, nullable=False),
    sa.PrimaryKeyConstraint('policy', 'subject', name=op.f('pk_alert_policy_facts'))
    )
    with op.batch_alter_table('alert_policy_facts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_policy_facts_subject'), ['subject'], unique=False)
    op.create_table('alert_policies',
    sa.Column('policy', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('blocked_in', JSON, nullable=False),
    sa.Column('since', UTCDateTime(), nullable=True),
    sa.Column('next_effect_at', UTCDateTime(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('policy', name=op.f('pk_alert_policies'))
    )
    with op.batch_alter_table('alert_policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_policies_next_effect_at'), ['next_effect_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_policies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_policies_next_effect_at'))
    op.drop_table('alert_policies')
    with op.batch_alter_table('alert_policy_facts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_policy_facts_subject'))
    op.drop_table('alert_policy_facts')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('episode')
    with op.batch_alter_table('alert_subjects', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_subjects_due')
        batch_op.drop_column('next_effect_at')
