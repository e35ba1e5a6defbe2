"""Running the Alembic migrations from code (the CLI, the test fixtures, the services)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """Alembic's configuration, with no ``alembic.ini``: everything comes from settings."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(revision: str = "head") -> None:
    """Bring the database schema up to ``revision``, as the owner role."""
    command.upgrade(alembic_config(), revision)
