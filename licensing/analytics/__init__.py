"""Usage analytics and anti-piracy: DuckDB over the usage events (DESIGN.md).

Modules, each for one role: :mod:`.storage` (where the Parquet files live),
:mod:`.ingest` (``analytics import``), :mod:`.geo` (country, ASN, distances),
:mod:`.views` (the documented views), :mod:`.readonly` (the analysts' guard),
:mod:`.detectors`, :mod:`.scoring` and :mod:`.report` (anti-piracy, reference §3.2),
:mod:`.simulate` and :mod:`.evaluate` (labelled synthetic traffic and rates).
"""
