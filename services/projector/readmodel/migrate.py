"""The projector's migrations: `python -m services.projector.readmodel.migrate` upgrades to head."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from services.platform import migrations

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(engine: Engine) -> None:
    """Bring the read-model schema to head."""
    migrations.upgrade(MIGRATIONS, engine)
