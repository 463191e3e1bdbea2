"""Project memory's rows in LanceDB: one table per embedder, hybrid search, erasure.

The table ``memories_<embedder>`` holds one row per memory (the columns of
:data:`COLUMNS` and ``vector``, the embedder's ``dim`` float32s of norm 1). A
search is LanceDB's vector search alone (``memory.search`` vector) or hybrid: that
and LanceDB's full-text (BM25) search, fused by reciprocal rank; both are filtered
by project *before* they run (``prefilter``). A search filters on ``live_project``
(the project of a live memory, empty once superseded).

Below ``memory.index_threshold`` rows in the table the vector search is exact; from
there an IVF_RQ index (cosine, 2-bit RaBitQ codes, every partition probed, the best
``refine_factor`` x limit candidates re-ranked by their exact distance) and a bitmap
index on ``live_project`` are built and kept fresh by :meth:`MemoryTable._maintain`
(the figures: bench/memory_search.py and DESIGN.md's "Measured").

Searches run as one coroutine on LanceDB's own background event loop (its async
API): one thread hand-off per search instead of six with the sync API, and the two
halves of a hybrid search run at once.

Erasure (``forget``, GDPR ``purge``) leaves no byte of the erased rows on disk:
LanceDB's delete only marks rows (and its compaction rewrites a file only when
10 % of it is deleted), so the table is rewritten from its remaining rows, its
indexes rebuilt, and every older version's files removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from connectsw.core.errors import StoreError, one_line

log = logging.getLogger("connectsw.memory")

# LanceDB's Rust core logs warnings (e.g. k-means on few rows) to stderr: errors only.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")
# index_stats() without the IVF centroids (LanceDB's coming default; silences its warning).
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
#: RRF's constant (LanceDB's default, as in Cormack et al. 2009).
RRF_K = 60
#: The best fused score possible: first in both searches.
RRF_MAX = 2 / (RRF_K + 1)
COLUMNS = (
    "id",
    "project",
    "type",
    "content",
    "source",
    "user",
    "created_at",
    "updated_at",
    "superseded_by",
    "live_project",
)
#: What a search returns of each row (what ``/v1/memory/context`` shows, and the id).
RESULT_COLUMNS = ("id", "type", "content", "source", "updated_at")
# The upkeep's limits (bench/memory_search.py, 100k rows, 2 busy cores): a search pays
# ~0.35 ms per data file, ~3 us per unindexed row (~15 us in a hybrid search's full-text
# half) and ~0.6 ms per part of the vector index; a write that crosses a limit pays
# LanceDB's optimize (~2-5 s) or a new vector index (~8-15 s).
#: Data files a table may have before they are merged (``optimize``): every add writes one.
MAX_FRAGMENTS = 16
#: Rows not yet in the vector or full-text index from which ``optimize`` adds them
#: (until then a search compares each exactly).
MAX_UNINDEXED = 1000
#: Parts of the vector index from which it is built again as one: LanceDB's
#: ``optimize`` may index new rows as a new part and never merges parts.
MAX_INDEX_PARTS = 6
#: Rows per IVF partition when the vector index is built (LanceDB's default for IVF_RQ).
ROWS_PER_PARTITION = 8192
#: Tries of a LanceDB commit that another process's commit preempted (LanceDB says
#: "Retryable commit conflict ... Please retry": e.g. two first writes of a fresh
#: database both building the full-text index), the first included.
COMMIT_TRIES = 8
#: Seconds before the second try; doubled each time, times a random 0.5-1.5 (so the
#: racers spread out), at most about 6 s in all.
COMMIT_BACKOFF = 0.05
FTS_INDEX = "content_idx"
VECTOR_INDEX = "vector_idx"
PROJECT_INDEX = "live_project_idx"


def retryable(exc: BaseException) -> bool:
    """Whether LanceDB refused a commit because another one came first and asks for a
    retry (its message; the Python binding raises a plain RuntimeError or OSError)."""
    return "retryable commit conflict" in str(exc).lower()


def with_retries(op: Callable[[], Any]) -> Any:
    """``op()``, tried again up to :data:`COMMIT_TRIES` times in all while it fails with
    a :func:`retryable` commit conflict, after :data:`COMMIT_BACKOFF` s doubling (with
    jitter); any other error, or the last conflict, is raised. ``op`` must be safe to
    repeat after a refused commit (LanceDB wrote nothing then)."""
    for attempt in range(COMMIT_TRIES):
        try:
            return op()
        except Exception as exc:
            if attempt == COMMIT_TRIES - 1 or not retryable(exc):
                raise
            time.sleep(COMMIT_BACKOFF * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


_SOURCE_PLACE = re.compile(r",?\s*\(?(?:/|[A-Za-z]:\\)\S*?\.rs:\d+(?::\d+)?\)?")


def lance_message(exc: BaseException, uri: str = "") -> str:
    """``exc`` on one line without the Rust source places LanceDB appends
    (``, /root/.cargo/registry/src/.../conflict_resolver.rs:926:34``), nor the secrets of
    the database's ``uri`` (``memory.url``: a password, ``?sig=``..., masked by
    core/redact.py's one rule for URLs)."""
    from connectsw.core.redact import mask_secret, redact, url_secrets

    text = _SOURCE_PLACE.sub("", one_line(exc)).strip()
    if "://" in uri:
        text = text.replace(uri, redact(uri))
        for secret in sorted(url_secrets(uri), key=len, reverse=True):
            text = mask_secret(text, secret)
    return text


def quote(value: str) -> str:
    """``value`` as a SQL string literal for a LanceDB filter."""
    return "'" + value.replace("'", "''") + "'"


def schema(dim: int) -> pa.Schema:
    """The memory table's columns for vectors of ``dim`` floats."""
    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("id", pa.string()),
            ("project", pa.string()),
            ("type", pa.string()),
            ("content", pa.string()),
            ("source", pa.string()),
            ("user", pa.string()),
            ("created_at", ts),
            ("updated_at", ts),
            ("superseded_by", pa.string()),  # "" while live
            # The project while live, "" once superseded: a search's whole prefilter is
            # one equality on one indexed column (two conditions cost 2x).
            ("live_project", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


class MemoryTable:
    """The memory rows of one LanceDB database for one embedder (thread-safe writes).

    ``uri``: a directory or an object-storage URL (LanceDB's); ``name``: the
    embedder's name; ``dim``: its vector length; ``index_threshold``: rows in the table
    from which the vector index is built; ``nprobes``: IVF partitions a search visits;
    ``refine_factor``: candidates per result re-ranked by their exact distance. Errors
    reading or writing are :class:`StoreError` naming the operation.
    """

    def __init__(
        self,
        uri: str,
        name: str,
        dim: int,
        index_threshold: int,
        nprobes: int = 64,
        refine_factor: int = 5,
    ) -> None:
        import lancedb

        self.uri = uri
        self.name = "memories_" + re.sub(r"[^a-z0-9_]", "_", name)
        self.dim = dim
        self.index_threshold = index_threshold
        self.nprobes = nprobes
        self.refine_factor = refine_factor
        self._lock = threading.RLock()
        # One cache of indexes and file metadata for the writing (sync) and the
        # searching (async) connection.
        self._session = lancedb.Session()
        try:
            # Every read sees what other processes committed (the server reads what
            # the engine wrote): one manifest check per query, local (~0.3 ms, bench/).
            self.db = lancedb.connect(
                uri, read_consistency_interval=timedelta(0), session=self._session
            )
        except Exception as exc:
            raise self._failed("memory database could not be opened", exc) from None
        self._table: Any = None
        self._reader: Any = None  # the table's async handle, for searches

    def _failed(self, what: str, exc: BaseException) -> StoreError:
        """``what: LanceDB's message`` (:func:`lance_message`: no Rust source place, no
        secret of the database's URL)."""
        return StoreError(f"{what}: {lance_message(exc, self.uri)}")

    # -- table -------------------------------------------------------------------
    def table(self, create: bool = False) -> Any:
        """The LanceDB table (None if it does not exist and ``create`` is false)."""
        with self._lock:
            if self._table is None:
                try:
                    table = self._open() if self.name in self._names() else None
                    if table is None and create:
                        table = with_retries(self._create)
                    self._table = table
                except Exception as exc:
                    raise self._failed("memory table could not be opened", exc) from None
            return self._table

    def _open(self) -> Any:
        """The listed table; None while another process is creating it (its folder is
        listed before its first version is committed: LanceDB says it "was not found",
        and tells the same case by the same words in lancedb/db.py)."""
        try:
            return self.db.open_table(self.name)
        except Exception as exc:
            if "was not found" in str(exc) or "Table not found" in str(exc):
                return None
            raise

    def _create(self) -> Any:
        """Create the table, or open it when another process did (first writes of a
        fresh database at once). On a local database, under an exclusive lock on the
        file ``.create.lock`` in it: two processes creating the table at once made the
        second creation an overwrite of the first (LanceDB commits a creation as an
        Overwrite), which refused, or could drop, the first one's append. On object
        storage there is no lock: the first writes of a fresh database should not
        race there."""
        with self._creation_lock():
            if self.name in self._names():
                return self.db.open_table(self.name)
            return self.db.create_table(self.name, schema=schema(self.dim), exist_ok=True)

    @contextlib.contextmanager
    def _creation_lock(self) -> Iterator[None]:
        local = "://" not in self.uri or self.uri.startswith("file://")
        if not local:
            yield
            return
        root = Path(self.uri.removeprefix("file://")).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".create.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _names(self) -> list[str]:
        result = self.db.list_tables()
        return list(getattr(result, "tables", result))

    def other_tables(self) -> list[str]:
        """Memory tables of other embedders in the same database."""
        return [n for n in self._names() if n.startswith("memories_") and n != self.name]

    def _read(self, query: Callable[[Any], Awaitable[list[Any]]]) -> list[Any] | None:
        """Run ``query`` (a coroutine function of the table's async handle) on LanceDB's
        background event loop and wait for it; None if the table does not exist."""
        from lancedb.background_loop import LOOP

        reader = self._reader  # no lock once open: a write's upkeep may take seconds
        if reader is None:
            with self._lock:
                if self._reader is None:
                    if self.table() is None:
                        return None

                    async def open_reader() -> Any:
                        import lancedb

                        db = await lancedb.connect_async(
                            self.uri,
                            read_consistency_interval=timedelta(0),
                            session=self._session,
                        )
                        return await db.open_table(self.name)

                    self._reader = LOOP.run(open_reader())
                reader = self._reader
        result: list[Any] = LOOP.run(query(reader))
        return result

    # -- writing -------------------------------------------------------------------
    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (dicts of :data:`COLUMNS` and ``vector``), then keep indexes fresh."""
        if not rows:
            return
        with self._lock:
            table = self.table(create=True)
            data = pa.Table.from_pylist(rows, schema=schema(self.dim))
            try:
                with_retries(lambda: table.add(data))
            except Exception as exc:
                raise self._failed("memory could not be written", exc) from None
            self._upkeep(table)

    def update(self, where: str, values: dict[str, Any]) -> None:
        """Set ``values`` on the rows matching ``where`` (then keep indexes fresh: LanceDB
        writes updated rows anew)."""
        with self._lock:
            table = self.table()
            if table is None:
                return
            try:
                with_retries(lambda: table.update(where=where, values=values))
            except Exception as exc:
                raise self._failed("memory could not be updated", exc) from None
            self._upkeep(table)

    def _upkeep(self, table: Any) -> None:
        """:meth:`_maintain` after a write, again on a :func:`retryable` conflict (it
        looks afresh each time: an index another process built meanwhile is not built
        twice). A failure is logged, not raised: the rows are written (a search without
        an index is exact) and the next write tries again."""
        try:
            with_retries(lambda: self._maintain(table))
        except Exception as exc:
            log.warning(
                "memory: the rows are written, but their indexes could not be updated"
                " (the next write tries again): %s",
                lance_message(exc, self.uri),
            )

    def _indexes(self, table: Any) -> set[str]:
        return {i.name for i in table.list_indices()}

    def _maintain(self, table: Any) -> None:
        """Keep the indexes fresh after a write (the rule measured in bench/):

        - the full-text index from the first row;
        - the vector and ``live_project`` indexes once the table has
          ``index_threshold`` rows (below it an exact search is fast enough);
        - LanceDB's ``optimize`` (merges the data files and indexes the new rows) once
          :data:`MAX_UNINDEXED` rows are not in the full-text or vector index or the
          table has more than :data:`MAX_FRAGMENTS` files;
        - the vector index built again as one once it has more than
          :data:`MAX_INDEX_PARTS` parts (``optimize`` may add one each time).
        """
        names = self._indexes(table)
        if FTS_INDEX not in names:
            self._build_fts(table)
        fragments = table.stats()["fragment_stats"]["num_fragments"]
        if VECTOR_INDEX not in names and table.count_rows() >= self.index_threshold:
            if fragments > 1:
                table.optimize()  # one file first: the index is built over it
            self._build_indexes(table)
            return
        indexed = [table.index_stats(name) for name in (FTS_INDEX, VECTOR_INDEX)]
        unindexed = max((s.num_unindexed_rows for s in indexed if s is not None), default=0)
        if unindexed >= MAX_UNINDEXED or fragments > MAX_FRAGMENTS:
            table.optimize()
            indexed[1] = table.index_stats(VECTOR_INDEX)
        if indexed[1] is not None and (indexed[1].num_indices or 1) > MAX_INDEX_PARTS:
            self._build_vector_index(table)

    @staticmethod
    def _build_fts(table: Any) -> None:
        from lancedb.index import FTS

        # English stemming and stop words (LanceDB's defaults, named here).
        config = FTS(stem=True, remove_stop_words=True, language="English")
        table.create_index("content", config=config, name=FTS_INDEX, replace=True)

    def _build_indexes(self, table: Any) -> None:
        from lancedb.index import Bitmap

        self._build_vector_index(table)
        # A bitmap (few distinct projects, many rows each): the prefilter of 100k rows
        # took ~14 ms p50 with it against ~21 ms with a B-tree (bench/, same run).
        table.create_index("live_project", config=Bitmap(), name=PROJECT_INDEX, replace=True)

    def _build_vector_index(self, table: Any) -> None:
        """The vector index over every row, as one part (replacing any older one).

        IVF_RQ: RaBitQ codes of 2 bits a dimension, scanned in every partition, the best
        candidates re-ranked exactly (``refine_factor``). Measured on 100k 384-d hashing
        vectors (bench/, same run, 2 busy cores), top-10 recall against the exact search
        and p50: IVF_RQ 2-bit, refine 5: 0.99 at ~14 ms (built in ~8 s); 1-bit, refine
        10: 0.92 at ~13 ms (~3 s); IVF_SQ: 0.93 at ~18 ms (~8 s); IVF_HNSW_SQ: 0.84 at
        ~19 ms (~72 s), and LanceDB's ``optimize`` after more rows took minutes on it
        and left 0.42. IVF_RQ needs a length divisible by 8; else IVF_SQ (8-bit codes).
        """
        from lancedb.index import IvfRq, IvfSq

        partitions = max(1, min(256, math.ceil(table.count_rows() / ROWS_PER_PARTITION)))
        dim = table.schema.field("vector").type.list_size  # another embedder's table too
        config: Any
        if dim % 8 == 0:
            config = IvfRq(distance_type="cosine", num_partitions=partitions, num_bits=2)
        else:
            config = IvfSq(distance_type="cosine", num_partitions=partitions)
        table.create_index("vector", config=config, name=VECTOR_INDEX, replace=True)

    # -- reading -------------------------------------------------------------------
    def rows(self, where: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows matching ``where`` (without vectors), in storage order."""
        with self._lock:
            table = self.table()
        if table is None:
            return []
        try:
            count = limit or table.count_rows(where)
            if not count:
                return []
            query = table.search().where(where).select(list(COLUMNS)).limit(count)
            return list(query.to_list())
        except Exception as exc:
            raise self._failed("memory could not be read", exc) from None

    def nearest(self, vector: np.ndarray, where: str) -> tuple[dict[str, Any], float] | None:
        """The row matching ``where`` most similar to ``vector``, and its cosine similarity."""
        if not np.any(vector):
            return None
        found = self._vector_rows(vector, where, 1, list(COLUMNS))
        if not found:
            return None
        return found[0], 1.0 - float(found[0]["_distance"])

    def vector_search(self, vector: np.ndarray, where: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` rows matching ``where`` nearest to ``vector`` (cosine; the vector
        index once built), each with ``relevance`` = cosine similarity clipped to 0..1."""
        if not np.any(vector):
            return []
        rows = self._vector_rows(vector, where, limit, list(RESULT_COLUMNS))
        for row in rows:
            row["relevance"] = min(1.0, max(0.0, 1.0 - float(row.pop("_distance"))))
        return rows

    def _vector_rows(
        self, vector: np.ndarray, where: str, limit: int, columns: list[str]
    ) -> list[dict[str, Any]]:
        async def query(table: Any) -> list[Any]:
            found = await self._vector_query(table, vector, where, limit, columns).to_arrow()
            return list(found.to_pylist())

        try:
            return self._read(query) or []
        except Exception as exc:
            raise self._failed("memory could not be searched", exc) from None

    def _vector_query(
        self, table: Any, vector: np.ndarray, where: str, limit: int, columns: list[str]
    ) -> Any:
        """The async vector query (prefiltered: LanceDB's async queries filter first)."""
        return (
            table.query()
            .nearest_to(vector)
            .column("vector")
            .distance_type("cosine")
            .where(where)
            .nprobes(self.nprobes)
            .refine_factor(self.refine_factor)
            .select([*columns, "_distance"])
            .limit(limit)
        )

    def hybrid(self, vector: np.ndarray, text: str, where: str, limit: int) -> list[dict[str, Any]]:
        """The best ``limit`` rows matching ``where`` for ``text`` (full text) and ``vector``,
        fused by RRF; each with ``relevance`` in 0..1 (1: first in both searches).

        LanceDB's vector and full-text (BM25) queries, each prefiltered, each of
        ``limit`` rows, run at once in one coroutine and fused here by reciprocal rank
        (RRF, k = :data:`RRF_K`, as LanceDB's ``RRFReranker``): LanceDB's own hybrid
        query fuses the same way but in Python over pyarrow rows, and cost ~2x the two
        queries (bench/)."""
        import asyncio

        columns = list(RESULT_COLUMNS)

        async def query(table: Any) -> list[Any]:
            fts = (
                table.query()
                .nearest_to_text(text, columns="content")
                .where(where)
                .select([*columns, "_score"])
                .limit(limit)
                .to_arrow()
            )
            if not np.any(vector):  # nothing the embedder knows: the full text alone
                return [[], (await fts).to_pylist()]
            near = self._vector_query(table, vector, where, limit, columns).to_arrow()
            return [found.to_pylist() for found in await asyncio.gather(near, fts)]

        try:
            found = self._read(query)
        except Exception as exc:
            raise self._failed("memory could not be searched", exc) from None
        if not found:
            return []
        fused: dict[str, tuple[float, dict[str, Any]]] = {}
        for ranked in found:
            for rank, row in enumerate(ranked, 1):
                score, _ = fused.get(row["id"], (0.0, row))
                fused[row["id"]] = (score + 1 / (rank + RRF_K), row)
        best = sorted(fused.values(), key=lambda item: -item[0])[:limit]
        rows = []
        for score, row in best:
            row.pop("_distance", None)
            row.pop("_score", None)
            row["relevance"] = min(1.0, score / RRF_MAX)
            rows.append(row)
        return rows

    def brute_force(self, vector: np.ndarray, where: str, limit: int) -> list[dict[str, Any]]:
        """Exact vector search (no index), prefiltered, by the same path as
        :meth:`vector_search`: the baseline of ``bench/`` and of recall."""

        async def query(table: Any) -> list[Any]:
            found = await (
                table.query()
                .nearest_to(vector)
                .column("vector")
                .distance_type("cosine")
                .where(where)
                .bypass_vector_index()
                .select([*RESULT_COLUMNS, "_distance"])
                .limit(limit)
                .to_arrow()
            )
            return list(found.to_pylist())

        return self._read(query) or []

    # -- erasing -------------------------------------------------------------------
    def erase(self, where: str) -> int:
        """Remove the rows matching ``where`` for good, here and in the memory tables of
        other embedders; the number removed from this table.

        A table holding such rows is rewritten from its remaining rows, its indexes
        rebuilt and all its older versions deleted, so no file under the database
        holds the rows' text or vectors afterwards. Another process reading an older
        version at that moment gets an error and must retry (LanceDB's cleanup rule).
        """
        with self._lock:
            for name in self.other_tables():
                self._erase_in(self.db.open_table(name), name, where)
            table = self.table()
            if table is None:
                return 0
            count, table = self._erase_in(table, self.name, where)
            self._table = table
            self._reader = None  # the table was written anew: a new handle
            return count

    def _erase_in(self, table: Any, name: str, where: str) -> tuple[int, Any]:
        try:
            count = table.count_rows(where)
            if not count:
                return 0, table
            had_vector_index = VECTOR_INDEX in self._indexes(table)
            table.delete(where)
            remaining = table.to_arrow()
            table = self.db.create_table(name, data=remaining, mode="overwrite")
            if remaining.num_rows:
                self._build_fts(table)
                if had_vector_index and remaining.num_rows >= 256:
                    self._build_indexes(table)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "removes every version"
                table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)
        except Exception as exc:
            raise self._failed("memory could not be erased", exc) from None
        return count, table
