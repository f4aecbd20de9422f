"""The environment's settings, read in one place: where the stores live and the engines' limits.

The stores (the MLflow registry `mlflow.db` with `mlartifacts/`, `tokens.json`, `audit.db`,
`service.db`, `service-state/`) live in one folder, the home, so that a command finds them
from any folder. The home is `SUNSHINE_HOME` when it is set; else, as git finds its
repository, the nearest folder from the current one upward that already holds one of the
stores; else the current folder, where a first `sunshine demo`, `train` or `tokens create`
makes them. Settings are read when asked for, not at import, so a test or a parent process
may change them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "SUNSHINE_HOME"
DATABASE_URL_ENV = "SUNSHINE_DATABASE_URL"
TOKENS_FILE_ENV = "SUNSHINE_TOKENS_FILE"
# the audit trail's key ring and its log of heads: beside the trail's file by default
AUDIT_KEYS_ENV = "SUNSHINE_AUDIT_KEYS"
AUDIT_HEADS_ENV = "SUNSHINE_AUDIT_HEADS"
AUDIT_KEYS = "audit-keys.json"
AUDIT_HEADS = "audit-heads.log"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
TOKENS_FILE = "tokens.json"
AUDIT_DB = "audit.db"
SERVICE_DB = "service.db"
STATE_DIR = "service-state"
# what marks a folder as a home when it is searched for
STORES = (MLFLOW_DB, TOKENS_FILE, AUDIT_DB, SERVICE_DB)


def home() -> Path:
    """The folder the default stores live in (see the module's docstring)."""
    given = os.environ.get(HOME_ENV)
    if given:
        return Path(given).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if any((folder / name).exists() for name in STORES):
            return folder
    return here


@dataclass(frozen=True)
class Settings:
    home: Path
    # the service's shared database (PostgreSQL) for tokens, audit trail and web records;
    # None: each in its own SQLite file in the home
    database_url: str | None
    tokens_file: Path
    # MLflow's store: MLFLOW_TRACKING_URI, else the home's SQLite file
    mlflow_uri: str
    duckdb_memory: str
    duckdb_threads: int | None
    spark_partitions: int
    # the audit trail's key ring and heads file when set; else beside the trail's file
    audit_keys: Path | None = None
    audit_heads: Path | None = None

    @property
    def mlflow_db(self) -> Path | None:
        """The local registry's file, when MLflow's store is one."""
        prefix = "sqlite:///"
        return (
            Path(self.mlflow_uri.removeprefix(prefix))
            if self.mlflow_uri.startswith(prefix)
            else None
        )


def settings() -> Settings:
    """The settings as the environment gives them now."""
    where = home()
    threads = os.environ.get("SUNSHINE_DUCKDB_THREADS")
    return Settings(
        home=where,
        database_url=os.environ.get(DATABASE_URL_ENV) or None,
        tokens_file=Path(os.environ.get(TOKENS_FILE_ENV) or where / TOKENS_FILE),
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{where / MLFLOW_DB}",
        duckdb_memory=os.environ.get("SUNSHINE_DUCKDB_MEMORY", "3GB"),
        duckdb_threads=int(threads) if threads else None,
        spark_partitions=int(os.environ.get("SUNSHINE_SPARK_PARTITIONS", "8")),
        audit_keys=_path(AUDIT_KEYS_ENV),
        audit_heads=_path(AUDIT_HEADS_ENV),
    )


def _path(env: str) -> Path | None:
    given = os.environ.get(env)
    return Path(given) if given else None
