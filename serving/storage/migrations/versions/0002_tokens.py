"""Access tokens, as SHA-256 hashes, with their user, role, scope and revocation."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(200), nullable=False, index=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("districts", sa.String(500), nullable=False, server_default=""),
        sa.Column("scopes", sa.String(200), nullable=False, server_default=""),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("expires", sa.String(40), nullable=False, server_default=""),
        sa.Column("revoked", sa.String(40), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("tokens")
