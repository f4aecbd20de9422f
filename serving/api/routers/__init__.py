"""The API routes, one module per concern: risk, scoring, admin, health."""
