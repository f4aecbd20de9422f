"""One counter every worker and host polls: an admin's reload bumps it, and each service
reloads the registry's champions when it sees it move."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    reloads = op.create_table(
        "reloads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("requested", sa.String(40), nullable=False),
        sa.CheckConstraint("id = 1", name="reloads_one_row"),
    )
    op.bulk_insert(reloads, [{"id": 1, "generation": 0, "requested": ""}])
