"""Usage analytics and anti-piracy: DuckDB over the usage events (DESIGN.md)."""
