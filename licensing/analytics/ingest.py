"""``analytics import``: usage events from CSV or Parquet into the date-partitioned store.

Every row is validated against :data:`~connectsw.licensing.usage.COLUMNS` before
anything is written: one bad row and nothing is imported (the error gives the count
and the first few reasons). Events are deduplicated on ``event_id``, within the input
(the first wins) and against every event already stored, so importing a file twice
changes nothing. ``country`` and ``asn`` are filled from ``ip`` where missing
(:mod:`.geo`). Each date's new events become one Parquet file, written under a
temporary name and moved into place; then a date's small files are merged into one
(:func:`compact`), crash-safely (a journal names the files a merged file replaces).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectsw.core.errors import ConnectSWError, ExitCode
from connectsw.core.textfiles import check_path
from connectsw.licensing.analytics.rollup import from_rows, refresh
from connectsw.licensing.analytics.storage import Storage, licenses_file, usage_storage
from connectsw.licensing.usage import COLUMNS

if TYPE_CHECKING:
    import duckdb

    from connectsw.conf.settings import Settings

TIERS = ("FREE", "PRO", "BUSINESS", "ENTERPRISE")
LICENSE_STATUSES = ("active", "suspended", "revoked")
REASONS_SHOWN = 5
INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
TYPE_WORDS = {
    "INTEGER": "an integer",
    "SMALLINT": "an integer",
    "BIGINT": "an integer",
    "DOUBLE": "a number",
    "TIMESTAMP WITH TIME ZONE": "a timestamp",
}
Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: what an import is doing, for a progress bar."""


class InvalidImport(ConnectSWError):
    """An import file is missing, unreadable, or has invalid rows: nothing was written."""

    code = "invalid_import"
    exit_code = ExitCode.INVALID_INPUT


@dataclass
class ImportResult:
    """What an import did."""

    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    geo_filled: int = 0
    dates: list[str] = field(default_factory=list)
    files_written: int = 0
    files_compacted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet(step: str, done: int, total: int) -> None:
    pass


def connect_work() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for one import, reading times as UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reader(path: Path) -> str:
    """The DuckDB table function reading ``path``: Parquet (by its magic bytes) or CSV.

    A CSV's encoding follows the rule of every user file (core/textfiles.py): UTF-8,
    or what its byte-order mark says; DuckDB reads little-endian UTF-16 only, so a
    big-endian UTF-16 or a UTF-32 file, or text with NUL bytes (UTF-16 without its
    mark), is refused by name (InvalidImport) instead of read as garbled columns.
    """
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise InvalidImport(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    quoted = _sql_text(str(path))
    if magic == b"PAR1":
        return f"read_parquet({quoted}, hive_partitioning = false)"
    encoding = ", encoding = 'utf-16'" if _utf16_csv(path, magic) else ""
    return f"read_csv({quoted}, header = true, all_varchar = true, auto_detect = true{encoding})"


_SAVE_AS = "save it as UTF-8 (or UTF-16 with its byte-order mark)"


def _utf16_csv(path: Path, head: bytes) -> bool:
    """True for a CSV with a little-endian UTF-16 byte-order mark; InvalidImport for an
    encoding DuckDB cannot read (see :func:`_reader`); False for UTF-8."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise InvalidImport(f"{path}: UTF-32 text, which cannot be imported; {_SAVE_AS}")
    if head.startswith(b"\xfe\xff"):
        raise InvalidImport(f"{path}: big-endian UTF-16 text, which cannot be imported; {_SAVE_AS}")
    if head.startswith(b"\xff\xfe"):
        return True
    if b"\x00" in head:
        raise InvalidImport(
            f"{path}: contains NUL bytes (UTF-16 without a byte-order mark?); {_SAVE_AS}"
        )
    return False


def _unreadable(path: Path, exc: BaseException, what: str) -> InvalidImport:
    """The one-line error for a file DuckDB could not read: bytes that are not UTF-8
    by their line (as core/textfiles.py names them), else DuckDB's first line."""
    text = str(exc)
    if "Invalid unicode" in text:
        line = re.search(r"CSV Error on Line: (\d+)", text)
        where = f" (line {line.group(1)})" if line else ""
        return InvalidImport(f"{path}: not valid UTF-8{where}; {_SAVE_AS}")
    return InvalidImport(f"{path}: {what} ({_first_line(exc)})")


def _numbered(source: str) -> str:
    """``source``'s rows with ``_row``, the 1-based row number in the file: Parquet's
    own ``file_row_number`` (read in parallel), or a window over a CSV's rows."""
    if source.startswith("read_parquet("):
        numbered = source[:-1] + ", file_row_number = true)"
        return f"(SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) FROM {numbered})"
    return f"(SELECT row_number() OVER () AS _row, * FROM {source})"


def _check_file(path: Path) -> None:
    with check_path(str(path), InvalidImport):  # a name too long...: core/textfiles.py
        if not path.exists():
            raise InvalidImport(f"{path}: no such file")
        if not path.is_file():
            raise InvalidImport(f"{path}: not a file")


def _columns(con: duckdb.DuckDBPyConnection, source: str, path: Path) -> dict[str, str]:
    import duckdb

    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        raise _unreadable(path, exc, "not readable as CSV or Parquet") from None
    return {str(row[0]): str(row[1]) for row in described}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _problems_sql(present: dict[str, str]) -> tuple[str, str]:
    """(typed columns, list of problems) as SQL over a source with ``present`` columns."""
    typed, checks = [], []
    for name, kind in COLUMNS:
        if name not in present:
            typed.append(f"NULL::{kind} AS {name}")
            continue
        raw = f'"{name}"'
        source = present[name]
        if source == kind and kind != "VARCHAR":  # typed already (Parquet): nothing to check
            typed.append(f"{raw} AS {name}")
            continue
        if name == "ts" and source.startswith("TIMESTAMP") and "TIME ZONE" not in source:
            cast = f"CAST({raw} AS TIMESTAMPTZ)"  # a naive time is UTC (the session's zone)
        elif kind in INTEGERS and source == "VARCHAR":  # no rounding of "1.5"
            cast = (
                f"CASE WHEN regexp_full_match(TRIM({raw}), '[+-]?[0-9]+')"
                f" THEN TRY_CAST(TRIM({raw}) AS {kind}) END"
            )
        elif kind in INTEGERS and source not in INTEGERS:
            cast = f"CASE WHEN TRY_CAST({raw} AS DOUBLE) % 1 = 0 THEN TRY_CAST({raw} AS {kind}) END"
        else:
            cast = f"TRY_CAST({raw} AS {kind})"
        if kind == "VARCHAR":
            typed.append(f"NULLIF(TRIM(CAST({raw} AS VARCHAR)), '') AS {name}")
            continue
        typed.append(f"{cast} AS {name}")
        if kind == "DOUBLE":  # CSV text: an empty field is NULL
            not_blank = f"NULLIF(TRIM(CAST({raw} AS VARCHAR)), '') IS NOT NULL"
        else:
            not_blank = f"{raw} IS NOT NULL AND TRIM(CAST({raw} AS VARCHAR)) <> ''"
        checks.append(
            f"CASE WHEN {not_blank} AND {cast} IS NULL THEN '{name}: not {TYPE_WORDS[kind]}' END"
        )
    return ", ".join(typed), ", ".join(checks)


RULES = (
    ("event_id IS NULL", "event_id: missing"),
    ("ts IS NULL AND NOT list_contains(_problems, 'ts: not a timestamp')", "ts: missing"),
    ("status IS NOT NULL AND (status < 100 OR status > 599)", "status: not 100 to 599"),
    ("asn IS NOT NULL AND asn < 0", "asn: negative"),
    ("latency_ms IS NOT NULL AND (latency_ms < 0 OR isnan(latency_ms))", "latency_ms: negative"),
    ("bytes_in IS NOT NULL AND bytes_in < 0", "bytes_in: negative"),
    ("bytes_out IS NOT NULL AND bytes_out < 0", "bytes_out: negative"),
    (
        f"tier IS NOT NULL AND upper(tier) NOT IN ({', '.join(map(_sql_text, TIERS))})",
        "tier: not one of " + ", ".join(TIERS),
    ),
    ("country IS NOT NULL AND NOT regexp_full_match(country, '[A-Za-z]{2}')",
     "country: not an ISO 3166 alpha-2 code"),
    ("ip IS NOT NULL AND ip IN (SELECT ip FROM bad_ips)", "ip: not an IP address"),
)  # fmt: skip


def import_events(
    settings: Settings, paths: Sequence[Path], progress: Progress = _quiet
) -> ImportResult:
    """Validate, deduplicate, geo-fill and store the events of ``paths`` (all or nothing).

    Raises:
        InvalidImport: a file is missing or unreadable, lacks ``event_id`` or ``ts``, has
            a column that is not an event column, or has invalid rows (count and the
            first few reasons); nothing is written.
    """
    storage = usage_storage(settings)
    con = connect_work()
    try:
        _stage(con, paths, progress)
        result = ImportResult(rows=_count(con, "SELECT count(*) FROM staged"))
        _refuse_bad_rows(con, paths, result.rows)
        with storage.lock():
            recover(storage)
            progress("deduplicating", 0, 1)
            _dedupe(con, storage)
            result.imported = _count(con, "SELECT count(*) FROM fresh")
            result.duplicates = result.rows - result.imported
            progress("deduplicating", 1, 1)
            if result.imported:
                before = set(storage.dates())
                result.geo_filled = _fill_geo(con, settings)
                written = _write(con, storage, progress)
                result.dates = sorted(written)
                result.files_written = sum(written.values())
                for i, date in enumerate(result.dates):
                    progress("compacting", i, len(result.dates))
                    result.files_compacted += compact(
                        storage, date, settings.analytics.compact_below_bytes, con
                    )
                progress("compacting", len(result.dates), len(result.dates))
                progress("rolling up", 0, 1)
                new = [d for d in result.dates if d not in before]
                made = from_rows(storage, con, "filled", new)
                refresh(storage, con, [d for d in result.dates if d not in made])
                progress("rolling up", 1, 1)
        return result
    finally:
        con.close()


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _stage(con: duckdb.DuckDBPyConnection, paths: Sequence[Path], progress: Progress) -> None:
    """Every row of every file, typed, with its problems, in the temp table ``staged``."""
    import duckdb

    known = {name for name, _ in COLUMNS}
    for i, path in enumerate(paths):
        progress("reading", i, len(paths))
        _check_file(path)
        source = _reader(path)
        present = _columns(con, source, path)
        unknown = [c for c in present if c not in known]
        if unknown:
            raise InvalidImport(
                f"{path}: not event columns: {', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''} (the columns are DESIGN.md's usage events)"
            )
        missing = [c for c in ("event_id", "ts") if c not in present]
        if missing:
            raise InvalidImport(f"{path}: no {' and no '.join(missing)} column")
        typed, checks = _problems_sql(present)
        sql = (
            f"SELECT {i} AS _file, _row, {typed}, list_filter([{checks}], lambda x: x IS NOT NULL)"
            f" AS _problems FROM {_numbered(source)}"
        )
        verb = "CREATE TEMP TABLE staged AS" if i == 0 else "INSERT INTO staged"
        try:
            con.execute(f"{verb} {sql}")
        except duckdb.Error as exc:
            raise _unreadable(path, exc, "not readable as events") from None
    progress("reading", len(paths), len(paths))
    # Text addresses are checked by Python's ipaddress, once per distinct address.
    ips = [
        r[0] for r in con.execute("SELECT DISTINCT ip FROM staged WHERE ip IS NOT NULL").fetchall()
    ]
    bad = [ip for ip in ips if not _is_ip(ip)]
    con.execute("CREATE TEMP TABLE bad_ips (ip VARCHAR)")
    if bad:
        con.executemany("INSERT INTO bad_ips VALUES (?)", [(ip,) for ip in bad])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _refuse_bad_rows(con: duckdb.DuckDBPyConnection, paths: Sequence[Path], total: int) -> None:
    rules = ", ".join(f"CASE WHEN {cond} THEN {_sql_text(reason)} END" for cond, reason in RULES)
    con.execute(
        "CREATE TEMP TABLE bad AS SELECT _file, _row, reasons FROM ("
        " SELECT _file, _row, list_concat(_problems,"
        f" list_filter([{rules}], lambda x: x IS NOT NULL))"
        " AS reasons FROM staged) WHERE len(reasons) > 0"
    )
    count = _count(con, "SELECT count(*) FROM bad")
    if not count:
        return
    first = con.execute(
        f"SELECT _file, _row, reasons FROM bad ORDER BY _file, _row LIMIT {REASONS_SHOWN}"
    ).fetchall()
    shown = "; ".join(
        f"{paths[f].name} row {row}: {', '.join(reasons)}" for f, row, reasons in first
    )
    more = f"; and {count - len(first)} more" if count > len(first) else ""
    raise InvalidImport(f"{count} invalid row(s) of {total}, nothing imported: {shown}{more}")


def _dedupe(con: duckdb.DuckDBPyConnection, storage: Storage) -> None:
    """``fresh``: the first row of each event id that is not stored yet."""
    names = ", ".join(name for name, _ in COLUMNS)
    stored = storage.all_files()
    if _count(con, "SELECT count(*) - count(DISTINCT event_id) FROM staged"):
        con.execute(
            f"CREATE TEMP TABLE fresh AS SELECT {names} FROM staged"
            " QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _file, _row) = 1"
        )
        con.execute("DROP TABLE staged")
    else:  # the usual case: no repeats within the input, no copy
        con.execute("ALTER TABLE staged RENAME TO fresh")
    if stored:
        storage.register(con)
        files = "[" + ", ".join(_sql_text(storage.url(f)) for f in stored) + "]"
        con.execute(
            "DELETE FROM fresh WHERE event_id IN (SELECT event_id FROM"
            f" read_parquet({files}, hive_partitioning = false))"
        )


def _fill_geo(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """The view ``filled``: ``fresh`` with ``country`` and ``asn`` filled from ``ip`` where
    missing (a join on the distinct addresses' look-ups, no rewrite of the rows); the
    rows it fills."""
    from connectsw.licensing.analytics.geo import geo_for

    names = ", ".join(name for name, _ in COLUMNS)
    ips = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT ip FROM fresh"
            " WHERE ip IS NOT NULL AND (country IS NULL OR asn IS NULL)"
        ).fetchall()
    ]
    found: list[tuple[str, str | None, int | None]] = []
    if ips:
        geo = geo_for(settings.analytics.geo_country_db, settings.analytics.geo_asn_db)
        found = [(ip, p.country, p.asn) for ip, p in geo.lookup_many(ips).items()]
        found = [row for row in found if row[1] is not None or row[2] is not None]
    if not found:
        con.execute(f"CREATE TEMP VIEW filled AS SELECT {names} FROM fresh")
        return 0
    con.execute("CREATE TEMP TABLE geo (ip VARCHAR, country VARCHAR, asn INTEGER)")
    con.executemany("INSERT INTO geo VALUES (?, ?, ?)", found)
    own = ", ".join(f"f.{name}" for name, _ in COLUMNS if name not in ("country", "asn"))
    con.execute(
        f"CREATE TEMP VIEW filled AS SELECT {own}, coalesce(f.country, g.country) AS country,"
        " coalesce(f.asn, g.asn) AS asn FROM fresh f LEFT JOIN geo g ON f.ip = g.ip"
    )
    return _count(
        con,
        "SELECT count(*) FROM fresh f JOIN geo g ON f.ip = g.ip"
        " WHERE (f.country IS NULL AND g.country IS NOT NULL)"
        " OR (f.asn IS NULL AND g.asn IS NOT NULL)",
    )


def _write(con: duckdb.DuckDBPyConnection, storage: Storage, progress: Progress) -> dict[str, int]:
    """Write ``filled`` as one new file per date; the files written per date."""
    names = ", ".join(name for name, _ in COLUMNS)
    staging = storage.staging()
    try:
        progress("writing", 0, 1)
        con.execute(
            f"COPY (SELECT {names}, strftime(ts, '%Y-%m-%d') AS date FROM filled)"
            f" TO {_sql_text(str(staging))}"
            " (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd,"
            " FILENAME_PATTERN 'part-{uuid}')"
        )
        written: dict[str, int] = {}
        pending = sorted(staging.glob("date=*/*.parquet"))
        for i, local in enumerate(pending):
            progress("writing", i, len(pending))
            date = local.parent.name.removeprefix("date=")
            storage.put(local, f"{storage.partition(date)}/{local.name}")
            written[date] = written.get(date, 0) + 1
        progress("writing", len(pending), len(pending))
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- compaction ------------------------------------------------------------------------------


def compact(
    storage: Storage,
    date: str,
    below_bytes: int,
    con: duckdb.DuckDBPyConnection | None = None,
) -> int:
    """Merge a date's files smaller than ``below_bytes`` into one; the files merged.

    Crash-safe: a journal (``.compact-ID.json``) names the merged file and the files it
    replaces before the merged file is moved in; :func:`recover` finishes or undoes a
    compaction that a crash interrupted, so no event is ever stored twice or lost.
    """
    small = sorted(f for f, size in storage.files(date).items() if size < below_bytes)
    if len(small) < 2:
        return 0
    own = con is None
    con = con or connect_work()
    staging = storage.staging()
    try:
        storage.register(con)
        names = ", ".join(name for name, _ in COLUMNS)
        files = "[" + ", ".join(_sql_text(storage.url(f)) for f in small) + "]"
        merged_name = f"compact-{uuid.uuid4().hex}.parquet"
        local = staging / merged_name
        con.execute(
            f"COPY (SELECT {names} FROM read_parquet({files}, hive_partitioning = false,"
            f" union_by_name = true) ORDER BY ts) TO {_sql_text(str(local))}"
            " (FORMAT parquet, COMPRESSION zstd)"
        )
        partition = storage.partition(date)
        journal = f"{partition}/.{merged_name}.journal"
        with storage.fs.open(journal, "w") as out:
            json.dump({"merged": f"{partition}/{merged_name}", "replaces": small}, out)
        storage.put(local, f"{partition}/{merged_name}")
        for old in small:
            storage.remove(old)
        storage.remove(journal)
        return len(small)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if own:
            con.close()


def recover(storage: Storage) -> None:
    """Finish compactions a crash interrupted; remove staging leftovers."""
    if not storage.fs.exists(storage.root):
        return
    for entry in storage.fs.ls(storage.root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(".staging-") and storage.local:
            shutil.rmtree(entry, ignore_errors=True)
    for date in storage.dates():
        for entry in storage.fs.ls(storage.partition(date), detail=False):
            if not entry.endswith(".journal"):
                continue
            with storage.fs.open(entry, "r") as handle:
                plan = json.load(handle)
            if storage.fs.exists(plan["merged"]):  # moved in: the old files go
                for old in plan["replaces"]:
                    storage.remove(old)
            storage.remove(entry)


# -- licenses kept elsewhere -----------------------------------------------------------------

LICENSE_COLUMNS = (
    ("license_id", "VARCHAR"),
    ("tier", "VARCHAR"),
    ("max_users", "INTEGER"),
    ("status", "VARCHAR"),
)


@dataclass
class LicenseImport:
    rows: int
    licenses: int


def import_licenses(settings: Settings, path: Path) -> LicenseImport:
    """Load licenses kept in another store (``license_id, tier, max_users, status``).

    They are kept in ``DATA_DIR/analytics/licenses.parquet``; a license imported again
    replaces its earlier import. All rows valid or nothing is written.
    """
    import duckdb

    _check_file(path)
    con = connect_work()
    try:
        source = _reader(path)
        present = _columns(con, source, path)
        wanted = [name for name, _ in LICENSE_COLUMNS]
        missing = [c for c in wanted if c not in present]
        unknown = [c for c in present if c not in wanted]
        if missing or unknown:
            raise InvalidImport(
                f"{path}: expected the columns {', '.join(wanted)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown[:5])}" if unknown else "")
            )
        tiers = ", ".join(map(_sql_text, TIERS))
        statuses = ", ".join(map(_sql_text, LICENSE_STATUSES))
        try:
            con.execute(
                "CREATE TEMP TABLE incoming AS SELECT row_number() OVER () AS _row,"
                " NULLIF(TRIM(CAST(license_id AS VARCHAR)), '') AS license_id,"
                " upper(TRIM(CAST(tier AS VARCHAR))) AS tier,"
                " TRY_CAST(max_users AS INTEGER) AS max_users,"
                " lower(TRIM(CAST(status AS VARCHAR))) AS status,"
                " list_filter(["
                " CASE WHEN NULLIF(TRIM(CAST(license_id AS VARCHAR)), '') IS NULL"
                "  THEN 'license_id: missing' END,"
                " CASE WHEN NOT coalesce(upper(TRIM(CAST(tier AS VARCHAR)))"
                f" IN ({tiers}), false)"
                f"  THEN 'tier: not one of {', '.join(TIERS)}' END,"
                " CASE WHEN coalesce(TRY_CAST(max_users AS INTEGER), 0) < 1"
                "  THEN 'max_users: not an integer of at least 1' END,"
                " CASE WHEN NOT coalesce(lower(TRIM(CAST(status AS VARCHAR)))"
                f" IN ({statuses}), false)"
                f"  THEN 'status: not one of {', '.join(LICENSE_STATUSES)}' END"
                f" ], lambda x: x IS NOT NULL) AS _problems FROM {source}"
            )
        except duckdb.Error as exc:
            raise _unreadable(path, exc, "not readable") from None
        rows = _count(con, "SELECT count(*) FROM incoming")
        bad = con.execute(
            "SELECT _row, _problems FROM incoming WHERE len(_problems) > 0 ORDER BY _row"
        ).fetchall()
        if bad:
            shown = "; ".join(f"row {r}: {', '.join(p)}" for r, p in bad[:REASONS_SHOWN])
            more = f"; and {len(bad) - REASONS_SHOWN} more" if len(bad) > REASONS_SHOWN else ""
            raise InvalidImport(
                f"{len(bad)} invalid row(s) of {rows}, nothing imported: {shown}{more}"
            )
        target = licenses_file(settings)
        target.parent.mkdir(parents=True, exist_ok=True)
        previous = (
            f"SELECT license_id, tier, max_users, status, 1 AS _rank"
            f" FROM read_parquet({_sql_text(str(target))})"
            if target.exists()
            else "SELECT NULL::VARCHAR, NULL::VARCHAR, NULL::INTEGER, NULL::VARCHAR, 1 WHERE false"
        )
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        con.execute(
            "COPY (SELECT license_id, tier, max_users, status FROM ("
            " SELECT license_id, tier, max_users, status, 0 AS _rank, _row FROM incoming"
            f" UNION ALL SELECT *, 0 FROM ({previous}))"
            " QUALIFY row_number() OVER (PARTITION BY license_id ORDER BY _rank, _row DESC) = 1"
            f" ORDER BY license_id) TO {_sql_text(str(tmp))} (FORMAT parquet)"
        )
        tmp.replace(target)
        total = _count(con, f"SELECT count(*) FROM read_parquet({_sql_text(str(target))})")
        return LicenseImport(rows=rows, licenses=total)
    finally:
        con.close()
