"""The audit trail in PostgreSQL: append-only (a trigger refuses UPDATE and DELETE to every
role, its owner included) and hash-chained row by row as the SQLite trail is. The SQLite
default keeps its own file (audit.db) and schema, so nothing is created there."""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE TABLE audit (
            id BIGINT PRIMARY KEY,
            time TEXT NOT NULL,
            "user" TEXT,
            role TEXT,
            token_id TEXT,
            route TEXT NOT NULL,
            person_id TEXT,
            task TEXT,
            as_of TEXT,
            model_version TEXT,
            probability DOUBLE PRECISION,
            tier TEXT,
            request_id TEXT NOT NULL,
            client_request_id TEXT,
            client TEXT,
            status INTEGER NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_person ON audit (person_id);
        CREATE INDEX audit_user ON audit ("user");
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
        CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE audit; DROP FUNCTION audit_append_only()")
