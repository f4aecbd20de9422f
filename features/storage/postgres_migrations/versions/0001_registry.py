"""A registry's tables: persons, their events, the codebook of their assessments, and the
dataset's reference date. `row_id` names a row in the contract's rejects, as a line number
does in a file."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _row_id() -> sa.Column:
    return sa.Column("row_id", sa.BigInteger, sa.Identity(always=False), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "persons",
        _row_id(),
        sa.Column("person_id", sa.Text, nullable=False, unique=True),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("sex", sa.Text),
        sa.Column("district", sa.Text),
        sa.Column("ethnicity", sa.Text),
        sa.Column("registration_date", sa.Date),
        sa.Column("primary_substance", sa.Text),
    )
    op.create_table(
        "events",
        _row_id(),
        sa.Column("person_id", sa.Text, sa.ForeignKey("persons.person_id"), nullable=False),
        sa.Column("event_time", sa.DateTime, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("value", sa.Float(precision=53)),
        sa.Column("detail", sa.Text),
        sa.Column("recorded_time", sa.DateTime),
    )
    op.create_index("events_person_time", "events", ["person_id", "event_time"])
    # what the serving process polls for new rows
    op.create_index("events_recorded_time", "events", ["recorded_time"])
    op.create_table(
        "codebook",
        sa.Column("code", sa.Text, primary_key=True),
        *(
            sa.Column(name, sa.Text)
            for name in ("label_en", "label_zh", "kind", "min", "max", "values", "direction")
        ),
    )
    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("reference_date", sa.Date, nullable=False),
        sa.CheckConstraint("id = 1", name="dataset_one_row"),
    )
