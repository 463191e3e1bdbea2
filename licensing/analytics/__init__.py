"""Usage analytics: import events, geography, DuckDB views, and analysts' read-only SQL.

Modules, each for one role: :mod:`.storage` (where the Parquet files live),
:mod:`.ingest` (``analytics import``), :mod:`.geo` (country, ASN, distances),
:mod:`.views` (the documented views) and :mod:`.readonly` (the analysts' guard).
"""
