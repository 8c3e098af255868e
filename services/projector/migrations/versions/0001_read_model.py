"""The read model: events, subject states, agreements, cases, deadlines, transfers, statistics.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from services.platform.db import UTCDateTime

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('agreements',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('status_since', UTCDateTime(), nullable=True),
    sa.Column('confidence', sa.String(length=16), nullable=True),
    sa.Column('title', sa.String(length=300), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('parties', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('partner', sa.String(length=8), nullable=True),
    sa.Column('signed_on', UTCDateTime(), nullable=True),
    sa.Column('in_force_on', UTCDateTime(), nullable=True),
    sa.Column('suspended_on', UTCDateTime(), nullable=True),
    sa.Column('terminated_on', UTCDateTime(), nullable=True),
    sa.Column('excluded_nationalities', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('transfers_total', sa.Integer(), nullable=False),
    sa.Column('transfers_approximate', sa.Boolean(), nullable=False),
    sa.Column('transfer_target', sa.Integer(), nullable=True),
    sa.Column('transfer_target_by', UTCDateTime(), nullable=True),
    sa.Column('last_event_at', UTCDateTime(), nullable=True),
    sa.Column('last_event_type', sa.String(length=64), nullable=True),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'id', name=op.f('pk_agreements'))
    )
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.create_index('ix_agreements_status', ['generation', 'status'], unique=False)

    op.create_table('cases',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=True),
    sa.Column('court', sa.String(length=300), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_since', UTCDateTime(), nullable=True),
    sa.Column('affects', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('rulings', sa.Integer(), nullable=False),
    sa.Column('latest_outcome', sa.String(length=16), nullable=True),
    sa.Column('pending_stay_requests', sa.Integer(), nullable=False),
    sa.Column('last_event_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('generation', 'id', name=op.f('pk_cases'))
    )
    op.create_table('consumer_offsets',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'topic', 'partition', name=op.f('pk_consumer_offsets'))
    )
    op.create_table('deadlines',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=120), nullable=False),
    sa.Column('due_at', UTCDateTime(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('affects', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('confidence', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('closed_by', sa.Uuid(), nullable=True),
    sa.Column('closed_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('generation', 'id', name=op.f('pk_deadlines'))
    )
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.create_index('ix_deadlines_due', ['generation', 'status', 'due_at'], unique=False)

    op.create_table('events',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject', sa.String(length=120), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', UTCDateTime(), nullable=False),
    sa.Column('recorded_at', UTCDateTime(), nullable=False),
    sa.Column('confidence', sa.String(length=16), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_subject', ['generation', 'subject', 'occurred_at'], unique=False)

    op.create_table('projection_generation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('active', sa.Integer(), nullable=False),
    sa.Column('building', sa.Integer(), nullable=True),
    sa.Column('swapped_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projection_generation'))
    )
    op.bulk_insert(
        sa.table('projection_generation', sa.column('id', sa.Integer()), sa.column('active', sa.Integer())),
        [{'id': 1, 'active': 1}],
    )
    op.create_table('statistics',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('subject', sa.String(length=120), nullable=False),
    sa.Column('metric', sa.String(length=120), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('unit', sa.String(length=300), nullable=True),
    sa.Column('approximate', sa.Boolean(), nullable=False),
    sa.Column('period_start', UTCDateTime(), nullable=True),
    sa.Column('period_end', UTCDateTime(), nullable=True),
    sa.Column('region', sa.String(length=300), nullable=True),
    sa.Column('occurred_at', UTCDateTime(), nullable=False),
    sa.Column('confidence', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'event_id', name=op.f('pk_statistics'))
    )
    with op.batch_alter_table('statistics', schema=None) as batch_op:
        batch_op.create_index('ix_statistics_metric', ['generation', 'metric', 'occurred_at'], unique=False)

    op.create_table('subject_states',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=120), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'subject', name=op.f('pk_subject_states'))
    )
    op.create_table('transfers',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('agreement', sa.String(length=120), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('nationality', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('approximate', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'agreement', 'month', 'nationality', name=op.f('pk_transfers'))
    )


def downgrade() -> None:
    op.drop_table('transfers')
    op.drop_table('subject_states')
    with op.batch_alter_table('statistics', schema=None) as batch_op:
        batch_op.drop_index('ix_statistics_metric')

    op.drop_table('statistics')
    op.drop_table('projection_generation')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_subject')

    op.drop_table('events')
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.drop_index('ix_deadlines_due')

    op.drop_table('deadlines')
    op.drop_table('consumer_offsets')
    op.drop_table('cases')
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.drop_index('ix_agreements_status')

    op.drop_table('agreements')
