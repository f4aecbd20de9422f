"""The web pages' records: sign-in sessions, each user's language, caseworkers' follow-ups."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("sid_sha256", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("expires", sa.String(40), nullable=False, index=True),
    )
    op.create_table(
        "preferences",
        sa.Column("user_name", sa.String(200), primary_key=True),
        sa.Column("lang", sa.String(8), nullable=False),
    )
    op.create_table(
        "followups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recorded", sa.String(40), nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False, index=True),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("option", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("note", sa.String(500), nullable=False, server_default=""),
        sa.Column("model_version", sa.String(32)),
        sa.CheckConstraint(
            "outcome IN ('offered', 'accepted', 'declined')", name="followups_outcome"
        ),
    )


def downgrade() -> None:
    for table in ("followups", "preferences", "sessions"):
        op.drop_table(table)
