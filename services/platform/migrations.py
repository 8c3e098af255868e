"""Running a service's Alembic migrations programmatically (`alembic upgrade head`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def alembic_config(script_location: Path, url: str) -> Config:
    """An Alembic config for a migrations folder and a database URL."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, engine: Engine, revision: str = "head",
            attributes: Mapping[str, Any] | None = None) -> None:
    """Bring the database behind `engine` to `revision` (`attributes` reach the migrations)."""
    config = alembic_config(script_location, engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes.update(attributes or {})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(script_location: Path, engine: Engine, revision: str,
              attributes: Mapping[str, Any] | None = None) -> None:
    """Bring the database behind `engine` back to `revision`."""
    config = alembic_config(script_location, engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes.update(attributes or {})
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
