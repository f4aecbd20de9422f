"""The service's own database: sessions, languages and follow-ups of the web pages.

SQLite beside the audit trail by default (created owner-only, migrated on first use), or the
production database that SUNSHINE_DATABASE_URL names (PostgreSQL: `postgresql+psycopg://...`),
which `sunshine db upgrade` migrates once, before the services start: a service never changes
a shared schema under the feet of another. Migrations are Alembic's (serving/storage/migrations).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine

from features.core.errors import ConfigError
from features.core.settings import DATABASE_URL_ENV, settings
from serving.storage.sqlite_file import create_private

MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(sqlite_path: Path) -> str:
    """The service's database: the shared one SUNSHINE_DATABASE_URL names, else its file."""
    return settings().database_url or f"sqlite:///{Path(sqlite_path).resolve()}"


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database's schema to the newest migration."""
    command.upgrade(_config(url), "head")


def head() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(_config("sqlite://")).get_current_head())


def revision(engine: Engine) -> str | None:
    with engine.connect() as con:
        return MigrationContext.configure(con).get_current_revision()


def open_database(url: str) -> Engine:
    """An engine on a database at the newest schema: SQLite is created (owner-only) and
    migrated here; another database must have been migrated by `sunshine db upgrade`."""
    if url.startswith("sqlite:///"):
        create_private(Path(url.removeprefix("sqlite:///")))
        upgrade(url)
        return create_engine(url)
    engine = create_engine(url, pool_pre_ping=True)
    try:
        found = revision(engine)
    except Exception as exc:  # unreachable, refused, unknown driver: say which database
        raise ConfigError(f"{DATABASE_URL_ENV}: cannot reach the database ({exc})") from None
    if found != head():
        raise ConfigError(
            f"{DATABASE_URL_ENV}: the database's schema is at {found or 'nothing'}, the service "
            f"needs {head()}: run `sunshine db upgrade` first"
        )
    return engine
