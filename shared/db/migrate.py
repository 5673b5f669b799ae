"""Run alembic migrations from code (server start, CLI, tests) without an ini file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.db.engine import ensure_sqlite_dir

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The alembic Config attribute holding the per-connection password maker.
PASSWORD_ATTRIBUTE = "quarry.password"  # noqa: S105


def alembic_config(url: str, password: Callable[[], str] | None = None) -> Config:
    """``password``: made for each connection (IAM database authentication), see env.py."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation treats % specially (URL-encoded passwords contain it).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if password is not None:
        cfg.attributes[PASSWORD_ATTRIBUTE] = password
    return cfg


def _outside_event_loop(run: Callable[[], None]) -> None:
    """env.py drives the async engine with ``asyncio.run``, which cannot nest in a running
    loop: there, run the migration on a helper thread (it blocks, as a migration should)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()


def upgrade(url: str, revision: str = "head", *, password: Callable[[], str] | None = None) -> None:
    ensure_sqlite_dir(url)
    _outside_event_loop(lambda: command.upgrade(alembic_config(url, password), revision))


def downgrade(
    url: str, revision: str = "base", *, password: Callable[[], str] | None = None
) -> None:
    _outside_event_loop(lambda: command.downgrade(alembic_config(url, password), revision))
