"""Web sign-in by user name and password: the password hashes (argon2id), the one-time setup
codes an admin issues (their SHA-256 only), and the failed sign-ins that slow the next
attempt, per user and per address, shared by every worker and host."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "passwords",
        sa.Column("user_name", sa.String(64), primary_key=True),
        sa.Column("hash", sa.String(200), nullable=False),
        sa.Column("set_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "setup_codes",
        sa.Column("code_sha256", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False, index=True),
        sa.Column("expires", sa.String(40), nullable=False),
    )
    op.create_table(
        "signin_failures",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last", sa.Float, nullable=False),
    )
