"""The alerts service's migrations (`alembic upgrade head` on the alert store)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from services.platform import migrations

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def upgrade(engine: Engine) -> None:
    """Bring the alerts schema to head."""
    migrations.upgrade(MIGRATIONS, engine)
