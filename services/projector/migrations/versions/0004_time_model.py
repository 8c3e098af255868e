"""The time model of issue 13: events' effective time, subjects' next scheduled effect, deadline states.

Existing snapshots were folded in occurred_at order to the end of time: every subject is
marked due (next_effect_at in 1970), so the projector re-folds each one as of now.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from alembic import op

from schemas.envelope import instant, parse_moment
from services.platform.db import UTCDateTime

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The types whose facts take effect at a time of their own, and where that time is (schemas v2).
_EFFECT_FIELD = {"AgreementInForce": "effective_on", "AgreementTerminated": "effective_on",
                 "CourtRulingIssued": "effective_at", "StayDecided": "effective_at"}


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('effective_at', UTCDateTime(), nullable=True))
    events = sa.table('events', sa.column('generation', sa.Integer()), sa.column('id', sa.Uuid()),
                      sa.column('type', sa.String()), sa.column('body', sa.Text()),
                      sa.column('occurred_at', UTCDateTime()), sa.column('effective_at', UTCDateTime()))
    conn.execute(sa.update(events).values(effective_at=events.c.occurred_at))
    rows = conn.execute(sa.select(events.c.generation, events.c.id, events.c.type, events.c.body)
                        .where(events.c.type.in_(sorted(_EFFECT_FIELD)))).all()
    for generation, event_id, kind, body in rows:
        moment = (orjson.loads(body).get("data") or {}).get(_EFFECT_FIELD[kind])
        if moment:
            conn.execute(sa.update(events).where(events.c.generation == generation, events.c.id == event_id)
                         .values(effective_at=instant(parse_moment(moment))))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('effective_at', existing_type=UTCDateTime(), nullable=False)
        batch_op.drop_index('ix_events_subject')
        batch_op.create_index('ix_events_subject_effective', ['generation', 'subject', 'effective_at'], unique=False)

    with op.batch_alter_table('subject_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_effect_at', UTCDateTime(), nullable=True))
        batch_op.create_index('ix_subject_states_due', ['generation', 'next_effect_at'], unique=False)
    states = sa.table('subject_states', sa.column('next_effect_at', UTCDateTime()))
    conn.execute(sa.update(states).values(next_effect_at=datetime(1970, 1, 1, tzinfo=UTC)))

    json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.alter_column('closed_by', new_column_name='status_by', existing_type=sa.Uuid())
        batch_op.alter_column('closed_reason', new_column_name='status_reason', existing_type=sa.Text())
        batch_op.add_column(sa.Column('regions', json, nullable=True))
    deadlines = sa.table('deadlines', sa.column('regions', json))
    conn.execute(sa.update(deadlines).values(regions=[]))
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.alter_column('regions', existing_type=json, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.drop_column('regions')
        batch_op.alter_column('status_reason', new_column_name='closed_reason', existing_type=sa.Text())
        batch_op.alter_column('status_by', new_column_name='closed_by', existing_type=sa.Uuid())
    with op.batch_alter_table('subject_states', schema=None) as batch_op:
        batch_op.drop_index('ix_subject_states_due')
        batch_op.drop_column('next_effect_at')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_subject_effective')
        batch_op.create_index('ix_events_subject', ['generation', 'subject', 'occurred_at'], unique=False)
        batch_op.drop_column('effective_at')
