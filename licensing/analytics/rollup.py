"""The hourly rollup: the anti-piracy scan's pre-aggregation, stored once per date.

A date's events (``ROOT/date=D/*.parquet``) are grouped into
:func:`connectsw.licensing.analytics.detectors.hourly` rows (about a tenth as many),
kept in ``ROOT/_hourly/date=D/hourly-DIGEST.parquet``. ``DIGEST`` names the event
files the rollup was made from (their names and sizes), so a rollup is used only
while its date's files are exactly those: an import, a compaction or the server's
appended events make a new digest, and the next :func:`refresh` rebuilds that date
alone. Nothing in the rollup depends on the settings (user agents are kept; what is
automation is decided per scan), so changing a threshold never makes it stale.

:func:`refresh` runs after every import and before each scan that reads rollups
(:func:`attach`); a scan then reads the rollup for the window's whole hours and the
events only for the partial hours at its ends.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from connectsw.licensing.analytics.detectors import HOURLY_COLUMNS, KEY_COLUMNS, hourly, keyed
from connectsw.licensing.analytics.storage import Storage
from connectsw.licensing.usage import COLUMNS

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("connectsw.analytics.rollup")

ROLLUP_DIR = "_hourly"
ROLLUP_VIEW = "usage_rollup"
"""The view :func:`attach` makes: every date's current rollup."""


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


FORMAT = 1
"""The rollup's format: part of every digest, so a new format makes every rollup again."""


def digest(files: dict[str, int]) -> str:
    """16 hex digits naming a set of event files (base names and sizes in bytes), the
    rollup :data:`FORMAT` and DuckDB's version (its keys are DuckDB's ``hash``)."""
    import duckdb

    h = hashlib.sha256(f"{FORMAT}\0{duckdb.__version__}\n".encode())
    for name, size in sorted((p.rsplit("/", 1)[-1], s) for p, s in files.items()):
        h.update(f"{name}\0{size}\n".encode())
    return h.hexdigest()[:16]


def _folder(storage: Storage, date: str) -> str:
    return f"{storage.root}/{ROLLUP_DIR}/date={date}"


def current(storage: Storage, date: str) -> str | None:
    """The path of ``date``'s rollup if it matches the date's event files, else None."""
    files = storage.files(date)
    if not files:
        return None
    path = f"{_folder(storage, date)}/hourly-{digest(files)}.parquet"
    return path if storage.fs.exists(path) else None


def build(storage: Storage, date: str, con: duckdb.DuckDBPyConnection) -> str | None:
    """(Re)make ``date``'s rollup from its event files; its path (None: no events).

    Written under a hidden name and moved in (:meth:`Storage.put`); rollups of older
    file sets in the folder are removed after."""
    files = storage.files(date)
    if not files:
        return None
    folder = _folder(storage, date)
    target = f"{folder}/hourly-{digest(files)}.parquet"
    names = ", ".join(name for name, _ in COLUMNS)
    listed = "[" + ", ".join(_text(storage.url(f)) for f in sorted(files)) + "]"
    source = (
        f"(SELECT {names} FROM read_parquet({listed}, hive_partitioning = false,"
        " union_by_name = true))"
    )
    staging = storage.staging()
    try:
        local = staging / f"hourly-{uuid.uuid4().hex}.parquet"
        rows = keyed(hourly("u.license_id IS NOT NULL", "duckdb", source))
        con.execute(
            f"COPY (SELECT {', '.join((*HOURLY_COLUMNS, *KEY_COLUMNS))} FROM ({rows}) r"
            " ORDER BY license_id, hour_no)"
            f" TO {_text(str(local))} (FORMAT parquet, COMPRESSION zstd)"
        )
        storage.put(local, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _drop_others(storage, date, target)
    return target


def from_rows(
    storage: Storage, con: duckdb.DuckDBPyConnection, table: str, dates: Iterable[str]
) -> list[str]:
    """Rollups of ``dates`` made in one pass from ``table`` (events just imported, the
    usage columns) instead of from the files: for each date whose files hold exactly
    those events (as many rows as ``table`` has of that date; an import's new dates).
    The dates rolled up; the others are left to :func:`refresh`."""
    wanted = sorted(dates)
    if not wanted:
        return []
    storage.register(con)
    mine = dict(
        con.execute(
            f"SELECT strftime(ts, '%Y-%m-%d') AS date, count(*) FROM {table} GROUP BY 1"
        ).fetchall()
    )
    staging = storage.staging()
    made = []
    try:
        rows = keyed(hourly("u.license_id IS NOT NULL", "duckdb", table))
        con.execute(
            f"COPY (SELECT {', '.join((*HOURLY_COLUMNS, *KEY_COLUMNS))},"
            " strftime(make_timestamp(day_no * 86400000000), '%Y-%m-%d') AS date"
            f" FROM ({rows}) r) TO {_text(str(staging))}"
            " (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)"
        )
        for date in wanted:
            built = sorted((staging / f"date={date}").glob("*.parquet"))
            files = storage.files(date)
            if len(built) != 1 or not files or _rows(storage, con, files) != mine.get(date):
                continue  # another writer's events are there too: made from the files
            target = f"{_folder(storage, date)}/hourly-{digest(files)}.parquet"
            storage.put(built[0], target)
            _drop_others(storage, date, target)
            made.append(date)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return made


def _rows(storage: Storage, con: duckdb.DuckDBPyConnection, files: dict[str, int]) -> int:
    listed = "[" + ", ".join(_text(storage.url(f)) for f in sorted(files)) + "]"
    row = con.execute(f"SELECT count(*) FROM read_parquet({listed})").fetchone()
    return int(row[0]) if row else 0


def _drop_others(storage: Storage, date: str, keep: str) -> None:
    folder = _folder(storage, date)
    if storage.fs.exists(folder):
        for old in storage.fs.ls(folder, detail=False):
            if old.rstrip("/") != keep and old.endswith(".parquet"):
                storage.remove(old)


def refresh(
    storage: Storage, con: duckdb.DuckDBPyConnection, dates: Iterable[str] | None = None
) -> list[str]:
    """Make every stale rollup of ``dates`` (default: all dates) current; the current
    rollup paths of those dates, in date order."""
    storage.register(con)
    paths = []
    for date in sorted(dates if dates is not None else storage.dates()):
        path = current(storage, date) or build(storage, date, con)
        if path is not None:
            paths.append(path)
    return paths


def attach(storage: Storage, con: duckdb.DuckDBPyConnection) -> str | None:
    """Refresh every date's rollup and create the view :data:`ROLLUP_VIEW` over them on
    ``con``; its name (for :func:`connectsw.licensing.analytics.detectors.scan`), or
    None when a rollup could not be written (a read-only store: the scan then reads
    every event, slower but the same findings)."""
    try:
        paths = refresh(storage, con)
    except OSError as exc:
        log.warning("hourly rollup not written (%s): the scan reads every event", exc)
        return None
    if paths:
        listed = "[" + ", ".join(_text(storage.url(p)) for p in paths) + "]"
        source = f"SELECT * FROM read_parquet({listed}, hive_partitioning = false)"
    else:
        source = f"SELECT * FROM ({_EMPTY}) WHERE false"
    con.execute(f"CREATE OR REPLACE VIEW {ROLLUP_VIEW} AS {source}")
    return ROLLUP_VIEW


_EMPTY = (
    "SELECT NULL::VARCHAR AS license_id, NULL::VARCHAR AS user_id, NULL::VARCHAR AS session_id,"
    " NULL::VARCHAR AS ip, NULL::VARCHAR AS country, NULL::INTEGER AS asn,"
    " NULL::VARCHAR AS user_agent, NULL::BIGINT AS hour_no, NULL::BIGINT AS day_no,"
    " NULL::VARCHAR AS place, NULL::VARCHAR AS tier, NULL::BIGINT AS n,"
    " NULL::TIMESTAMPTZ AS t0, NULL::TIMESTAMPTZ AS t1, NULL::BIGINT AS minutes,"
    " NULL::UBIGINT AS lk, NULL::UBIGINT AS uk, NULL::UBIGINT AS sk, NULL::UBIGINT AS ipk"
)
