"""The analysts' views: DuckDB over the usage Parquet files and the licenses.

:func:`connect` opens an in-memory DuckDB with the views of :data:`VIEWS`; with
``read_only`` (the default) the connection is then locked down by
:func:`connectsw.licensing.analytics.readonly.harden`. ``analytics views`` and the
README print :data:`VIEWS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectsw.licensing.analytics.storage import licenses_file, usage_storage
from connectsw.licensing.usage import COLUMNS

if TYPE_CHECKING:
    import duckdb

    from connectsw.conf.settings import Settings

LICENSES_READ = 1_000_000
"""At most this many licenses of the relational store are read into the ``licenses`` view."""


@dataclass(frozen=True)
class View:
    name: str
    meaning: str
    columns: tuple[tuple[str, str, str], ...]
    """(name, DuckDB type, meaning)."""


_EVENT_MEANINGS = {
    "event_id": "unique id (UUID)",
    "ts": "when the request arrived (UTC)",
    "license_id": "the license's public id (never the key)",
    "tier": "FREE, PRO, BUSINESS or ENTERPRISE at the time of the request",
    "user_id": "user of the license, if known",
    "session_id": "session id (not the token), if any",
    "ip": "client address (IPv4 or IPv6)",
    "country": "ISO 3166 alpha-2 country of the IP",
    "asn": "autonomous system number of the IP, when known",
    "method": "HTTP method",
    "endpoint": "route template, e.g. /v1/execution/{id}",
    "status": "HTTP status",
    "latency_ms": "server time, milliseconds",
    "bytes_in": "request body size, bytes",
    "bytes_out": "response body size, bytes",
    "user_agent": "client's User-Agent",
}

VIEWS: tuple[View, ...] = (
    View(
        "usage",
        "One row per API request (DESIGN.md's usage events), from every date partition.",
        (
            *((name, kind, _EVENT_MEANINGS[name]) for name, kind in COLUMNS),
            ("date", "DATE", "the UTC date of ts (the partition: filter on it to read less)"),
        ),
    ),
    View(
        "usage_hourly",
        "Requests per license and UTC hour.",
        (
            ("hour", "TIMESTAMP WITH TIME ZONE", "start of the hour (UTC)"),
            ("license_id", "VARCHAR", "the license"),
            ("requests", "BIGINT", "requests in the hour"),
            ("errors", "BIGINT", "of which answered with status >= 400"),
            ("ips", "BIGINT", "distinct client IPs"),
            ("users", "BIGINT", "distinct user ids"),
            ("sessions", "BIGINT", "distinct session ids"),
            ("countries", "BIGINT", "distinct countries"),
            ("avg_latency_ms", "DOUBLE", "mean server time, ms"),
            ("bytes_in", "HUGEINT", "request bytes"),
            ("bytes_out", "HUGEINT", "response bytes"),
        ),
    ),
    View(
        "license_ips_24h",
        "Per license, the addresses seen in the last 24 hours of the data (ending at the"
        " latest event's time, so that imported history reads the same as live traffic).",
        (
            ("license_id", "VARCHAR", "the license"),
            ("window_start", "TIMESTAMP WITH TIME ZONE", "start of the 24 h window"),
            ("window_end", "TIMESTAMP WITH TIME ZONE", "the latest event's time"),
            ("ips", "BIGINT", "distinct client IPs in the window"),
            ("countries", "BIGINT", "distinct countries"),
            ("asns", "BIGINT", "distinct autonomous systems"),
            ("requests", "BIGINT", "requests in the window"),
            ("ip_list", "VARCHAR[]", "the addresses, sorted"),
        ),
    ),
    View(
        "sessions_concurrent",
        "Sessions of each license active in each UTC hour (a session is active in an hour"
        " when it made a request then), with the license's seats.",
        (
            ("hour", "TIMESTAMP WITH TIME ZONE", "start of the hour (UTC)"),
            ("license_id", "VARCHAR", "the license"),
            ("sessions", "BIGINT", "distinct sessions active in the hour"),
            ("users", "BIGINT", "distinct users active in the hour"),
            ("ips", "BIGINT", "distinct IPs in the hour"),
            ("max_users", "INTEGER", "the license's seats (licenses view), NULL if unknown"),
        ),
    ),
    View(
        "licenses",
        "Licenses: the relational store's, then those loaded by `analytics import --licenses`"
        " for licenses the store does not have (a local license is never overridden).",
        (
            ("license_id", "VARCHAR", "the license's public id"),
            ("tier", "VARCHAR", "FREE, PRO, BUSINESS or ENTERPRISE"),
            ("max_users", "INTEGER", "seats"),
            ("status", "VARCHAR", "active, suspended or revoked"),
            ("source", "VARCHAR", "local (the relational store) or imported"),
        ),
    ),
    View(
        "learned_patterns",
        "What the execution history taught (reference §2.4's learned_patterns), read from"
        " the relational store's view of that name: per workflow, the outcome of its"
        " executions, of each task (by agent), the approvals at each checkpoint type, and"
        " the changes people requested there.",
        (
            (
                "pattern_type",
                "VARCHAR",
                "workflow_outcome, task_outcome, checkpoint_approval or change_request",
            ),
            ("workflow", "VARCHAR", "the workflow (new-product, task-graph, ...)"),
            ("subject", "VARCHAR", "the workflow, task id or checkpoint type"),
            ("agent", "VARCHAR", "the task's agent (task_outcome), else NULL"),
            ("frequency", "BIGINT", "executions, attempts, decisions or requests counted"),
            (
                "success_rate",
                "DECIMAL(5,2)",
                "percent completed, succeeded or approved; NULL for change_request",
            ),
            ("detail", "VARCHAR", "the requested change (change_request), else NULL"),
        ),
    ),
)


def _empty_usage() -> str:
    cols = ", ".join(f"NULL::{kind} AS {name}" for name, kind in COLUMNS)
    return f"SELECT {cols}, NULL::DATE AS date WHERE false"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(settings: Settings, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the views; ``read_only``: locked down for analysts."""
    import duckdb

    storage = usage_storage(settings)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    storage.register(con)
    names = ", ".join(name for name, _ in COLUMNS)
    if storage.all_files():
        root = storage.url(storage.glob())
        source = (
            f"SELECT {names}, date FROM read_parquet({_text(root)}, hive_partitioning = true,"
            " hive_types = {'date': DATE}, union_by_name = true)"
        )
    else:
        source = _empty_usage()
    con.execute(f"CREATE VIEW usage AS {source}")
    con.execute(
        "CREATE VIEW usage_hourly AS SELECT date_trunc('hour', ts) AS hour, license_id,"
        " count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,"
        " count(DISTINCT ip) AS ips, count(DISTINCT user_id) AS users,"
        " count(DISTINCT session_id) AS sessions, count(DISTINCT country) AS countries,"
        " avg(latency_ms) AS avg_latency_ms, sum(bytes_in)::HUGEINT AS bytes_in,"
        " sum(bytes_out)::HUGEINT AS bytes_out FROM usage GROUP BY ALL"
    )
    con.execute(
        "CREATE VIEW license_ips_24h AS WITH bounds AS (SELECT max(ts) AS window_end FROM usage)"
        " SELECT license_id, any_value(window_end) - INTERVAL 24 HOUR AS window_start,"
        " any_value(window_end) AS window_end, count(DISTINCT ip) AS ips,"
        " count(DISTINCT country) AS countries, count(DISTINCT asn) AS asns,"
        " count(*) AS requests, list_sort(list_distinct(list(ip))) AS ip_list"
        " FROM usage, bounds WHERE ts > window_end - INTERVAL 24 HOUR GROUP BY license_id"
    )
    _licenses(con, settings)
    _learned_patterns(con, settings)
    con.execute(
        "CREATE VIEW sessions_concurrent AS SELECT u.hour, u.license_id, u.sessions, u.users,"
        " u.ips, l.max_users FROM (SELECT date_trunc('hour', ts) AS hour, license_id,"
        " count(DISTINCT session_id) AS sessions, count(DISTINCT user_id) AS users,"
        " count(DISTINCT ip) AS ips FROM usage WHERE session_id IS NOT NULL GROUP BY ALL) u"
        " LEFT JOIN licenses l USING (license_id)"
    )
    if read_only:
        from connectsw.licensing.analytics.readonly import harden

        allowed = [storage.root] if storage.local else []
        harden(con, settings, allowed)
    return con


def scan_connection(settings: Settings) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """The detectors' connection (not locked down: their own SQL, not an analyst's) and
    the name of its hourly-rollup view, every date's rollup made current first, or None
    (:func:`connectsw.licensing.analytics.rollup.attach`)."""
    from connectsw.licensing.analytics.rollup import attach

    con = connect(settings, read_only=False)
    try:
        return con, attach(usage_storage(settings), con)
    except BaseException:
        con.close()
        raise


PATTERNS_READ = 1_000_000
"""At most this many rows of the store's learned_patterns are read into the view."""


def _learned_patterns(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """The ``learned_patterns`` view over an in-memory copy of the store's rows."""
    from connectsw.core.stores import get_store

    rows = [
        (p.pattern_type, p.workflow, p.subject, p.agent, p.frequency, p.success_rate, p.detail)
        for p in get_store(settings.store_url).learned_patterns(PATTERNS_READ)
    ]
    con.execute(
        "CREATE TABLE learned_pattern_rows (pattern_type VARCHAR, workflow VARCHAR,"
        " subject VARCHAR, agent VARCHAR, frequency BIGINT, success_rate DECIMAL(5,2),"
        " detail VARCHAR)"
    )
    if rows:
        con.executemany("INSERT INTO learned_pattern_rows VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("CREATE VIEW learned_patterns AS SELECT * FROM learned_pattern_rows")


def _licenses(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """The ``licenses`` view over an in-memory copy (so analysts read no store file)."""
    from connectsw.core.stores import get_store

    local = [
        (lic.id, lic.tier.value, lic.entitlements.max_users, lic.status.value)
        for lic in get_store(settings.store_url).list_licenses(LICENSES_READ)
    ]
    con.execute(
        "CREATE TABLE license_records (license_id VARCHAR, tier VARCHAR, max_users INTEGER,"
        " status VARCHAR, source VARCHAR)"
    )
    if local:
        con.executemany("INSERT INTO license_records VALUES (?, ?, ?, ?, 'local')", local)
    imported = licenses_file(settings)
    if imported.is_file():
        con.execute(
            "INSERT INTO license_records SELECT license_id, tier, max_users, status, 'imported'"
            f" FROM read_parquet({_text(str(imported))})"
            " WHERE license_id NOT IN (SELECT license_id FROM license_records)"
        )
    con.execute(
        "CREATE VIEW licenses AS SELECT license_id, tier, max_users, status, source"
        " FROM license_records"
    )
