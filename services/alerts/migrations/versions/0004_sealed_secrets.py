"""webhook secrets sealed at rest, and the previous secret of a rotation

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Existing rows hold their secret in clear (whsec_...): each is sealed with the first configured
key. The caller passes the sealer as `config.attributes["sealer"]` (services.alerts.migrate);
without one the upgrade refuses to leave a secret in clear and stops, naming the setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

import services.platform.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBSCRIPTIONS = sa.table("subscriptions", sa.column("id", sa.Uuid()), sa.column("secret", sa.Text()))


def _sealer() -> object:
    sealer = context.config.attributes.get("sealer")
    if sealer is None:
        raise RuntimeError("sealing webhook secrets needs ACCORDWATCH_WEBHOOK_SECRET_KEYS (or _FILE): "
                           "existing secrets would otherwise stay in clear")
    return sealer


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=False)
        batch_op.add_column(sa.Column('previous_secret', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_until', services.platform.db.UTCDateTime(timezone=True),
                                      nullable=True))
    bind = op.get_bind()
    clear = bind.execute(sa.select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.secret)
                         .where(SUBSCRIPTIONS.c.secret.like("whsec\\_%", escape="\\"))).all()
    if clear:
        sealer = _sealer()
        for sub_id, secret in clear:
            bind.execute(sa.update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == sub_id)
                         .values(secret=sealer.seal(secret)))  # type: ignore[attr-defined]


def downgrade() -> None:
    bind = op.get_bind()
    sealed = bind.execute(sa.select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.secret)).all()
    if sealed:
        sealer = _sealer()
        for sub_id, token in sealed:
            bind.execute(sa.update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == sub_id)
                         .values(secret=sealer.open(token)))  # type: ignore[attr-defined]
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('previous_secret_until')
        batch_op.drop_column('previous_secret')
        batch_op.alter_column('secret', existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=False)
