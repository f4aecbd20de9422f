"""Alembic's entry for a registry's tables: they live in the schema the caller names, and so
does the table that records their migration, so two registries can share one database."""

from alembic import context
from sqlalchemy import create_engine, text

url = context.config.get_main_option("sqlalchemy.url")
schema = context.config.get_main_option("registry_schema")
with create_engine(url).connect() as connection:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection.execute(text(f'SET search_path TO "{schema}"'))
    connection.commit()
    context.configure(connection=connection, version_table_schema=schema)
    with context.begin_transaction():
        context.run_migrations()
