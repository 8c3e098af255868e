"""The alerts service's migrations (`alembic upgrade head` on the alert store)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select, update

from services.platform import migrations

if TYPE_CHECKING:
    from services.alerts.sealing import Sealer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def upgrade(engine: Engine, sealer: Sealer | None = None, revision: str = "head") -> None:
    """Bring the alerts schema to `revision`; `sealer` seals secrets still kept in clear."""
    migrations.upgrade(MIGRATIONS, engine, revision, {"sealer": sealer} if sealer is not None else None)


def downgrade(engine: Engine, revision: str, sealer: Sealer | None = None) -> None:
    """Bring the alerts schema back to `revision`."""
    migrations.downgrade(MIGRATIONS, engine, revision, {"sealer": sealer} if sealer is not None else None)


def reseal(engine: Engine, sealer: Sealer) -> int:
    """Seal every stored secret under the newest key (after a sealing-key rotation); returns how many."""
    from services.alerts.tables import Subscription

    count = 0
    with engine.begin() as conn:
        rows = conn.execute(select(Subscription.id, Subscription.secret, Subscription.previous_secret)).all()
        for sub_id, secret, previous in rows:
            conn.execute(update(Subscription).where(Subscription.id == sub_id).values(
                secret=sealer.reseal(secret), previous_secret=sealer.reseal(previous) if previous else None))
            count += 1
    return count
