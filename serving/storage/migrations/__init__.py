"""Schema migrations of the service's own database (Alembic): `sunshine db upgrade`."""
