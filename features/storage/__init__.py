"""Where a registry is read from: the validated DuckDB store (one machine), PostgreSQL (a
city's registry, with its migrations) and Apache Spark (a province's)."""
