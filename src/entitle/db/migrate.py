"""Alembic, driven from code: `entitle migrate` and the test fixtures call `upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from entitle.db.database import make_private_sqlite_file

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def ensure_sqlite_folder(url: str) -> None:
    make_private_sqlite_file(url)


def upgrade(url: str, revision: str = "heads") -> None:
    ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def autogenerate(url: str, message: str) -> None:
    """Developer helper: write a new revision from the difference between models and database."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
