"""Project memory's rows in LanceDB: one table per embedder, hybrid search, erasure.

The table ``memories_<embedder>`` holds one row per memory (the columns of
:data:`COLUMNS` and ``vector``, the embedder's ``dim`` float32s of norm 1). A
search is LanceDB's vector search alone (``memory.search`` vector) or hybrid: that
and LanceDB's full-text (BM25) search, fused by reciprocal rank; both are filtered
by project *before* they run (``prefilter``). Below ``memory.index_threshold`` rows of
a project the vector search is exact; from there an IVF_HNSW_SQ index (cosine) and a
bitmap index on ``live_project`` are built and kept up to date (DESIGN.md, "Measured": 100k
vectors brute force ~263 ms, indexed ~9-16 ms). A search filters on ``live_project``
(the project of a live memory, empty once superseded).

Erasure (``forget``, GDPR ``purge``) leaves no byte of the erased rows on disk:
LanceDB's delete only marks rows (and its compaction rewrites a file only when
10 % of it is deleted), so the table is rewritten from its remaining rows, its
indexes rebuilt, and every older version's files removed.
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from connectsw.core.errors import StoreError, one_line

# LanceDB's Rust core logs warnings (e.g. k-means on few rows) to stderr: errors only.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")
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
#: Data files a table may have before they are merged (``optimize``).
MAX_FRAGMENTS = 32
FTS_INDEX = "content_idx"
VECTOR_INDEX = "vector_idx"
PROJECT_INDEX = "live_project_idx"


_pool_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The process's threads for a hybrid search's full-text half (made on first use)."""
    global _executor
    with _pool_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memory-fts")
        return _executor


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
    embedder's name; ``dim``: its vector length. Errors reading or writing are
    :class:`StoreError` naming the operation.
    """

    def __init__(
        self, uri: str, name: str, dim: int, index_threshold: int, nprobes: int = 64
    ) -> None:
        import lancedb

        self.uri = uri
        self.name = "memories_" + re.sub(r"[^a-z0-9_]", "_", name)
        self.dim = dim
        self.index_threshold = index_threshold
        self.nprobes = nprobes
        self._lock = threading.RLock()
        try:
            # Every read sees what other processes committed (the server reads what
            # the engine wrote): one manifest check per query, local.
            self.db = lancedb.connect(uri, read_consistency_interval=timedelta(0))
        except Exception as exc:
            raise StoreError(f"memory database could not be opened: {one_line(exc)}") from None
        self._table: Any = None

    # -- table -------------------------------------------------------------------
    def table(self, create: bool = False) -> Any:
        """The LanceDB table (None if it does not exist and ``create`` is false)."""
        with self._lock:
            if self._table is None:
                try:
                    if self.name in self._names():
                        self._table = self.db.open_table(self.name)
                    elif create:
                        self._table = self.db.create_table(
                            self.name, schema=schema(self.dim), exist_ok=True
                        )
                except Exception as exc:
                    raise StoreError(f"memory table could not be opened: {one_line(exc)}") from None
            return self._table

    def _names(self) -> list[str]:
        result = self.db.list_tables()
        return list(getattr(result, "tables", result))

    def other_tables(self) -> list[str]:
        """Memory tables of other embedders in the same database."""
        return [n for n in self._names() if n.startswith("memories_") and n != self.name]

    # -- writing -------------------------------------------------------------------
    def add(self, rows: list[dict[str, Any]], project: str) -> None:
        """Append rows (dicts of :data:`COLUMNS` and ``vector``), then keep indexes fresh."""
        if not rows:
            return
        with self._lock:
            table = self.table(create=True)
            try:
                table.add(pa.Table.from_pylist(rows, schema=schema(self.dim)))
                self._maintain(table, project)
            except Exception as exc:
                raise StoreError(f"memory could not be written: {one_line(exc)}") from None

    def update(self, where: str, values: dict[str, Any]) -> None:
        """Set ``values`` on the rows matching ``where``."""
        with self._lock:
            table = self.table()
            if table is None:
                return
            try:
                table.update(where=where, values=values)
            except Exception as exc:
                raise StoreError(f"memory could not be updated: {one_line(exc)}") from None

    def _indexes(self, table: Any) -> set[str]:
        return {i.name for i in table.list_indices()}

    def _maintain(self, table: Any, project: str) -> None:
        """Full-text index from the first row; vector and scalar indexes once the project
        passes the threshold; then, when new rows reach a tenth of the threshold or the
        table has more than :data:`MAX_FRAGMENTS` files (every add writes one), LanceDB's
        ``optimize`` merges the files and adds the new rows to the indexes."""
        names = self._indexes(table)
        if FTS_INDEX not in names:
            self._build_fts(table)
        if VECTOR_INDEX not in names:
            if table.count_rows(f"project = {quote(project)}") >= self.index_threshold:
                self._build_indexes(table)
                return
            if table.stats()["fragment_stats"]["num_fragments"] > MAX_FRAGMENTS:
                table.optimize()
            return
        stats = table.index_stats(VECTOR_INDEX)
        unindexed = stats.num_unindexed_rows if stats is not None else 0
        fragments = table.stats()["fragment_stats"]["num_fragments"]
        if unindexed >= max(256, self.index_threshold // 10) or fragments > MAX_FRAGMENTS:
            table.optimize()

    @staticmethod
    def _build_fts(table: Any) -> None:
        from lancedb.index import FTS

        # English stemming and stop words (LanceDB's defaults, named here).
        config = FTS(stem=True, remove_stop_words=True, language="English")
        table.create_index("content", config=config, name=FTS_INDEX, replace=True)

    @staticmethod
    def _build_indexes(table: Any) -> None:
        from lancedb.index import Bitmap, IvfHnswSq

        # IVF_HNSW_SQ: an HNSW graph per partition over int8-quantised vectors. Measured
        # on 100k 384-d vectors (bench/, busy 2-core machine), top-10 recall against the
        # exact search and p50: IVF_PQ 0.31 at ~22 ms, IVF_FLAT 0.40 at ~8 ms (nprobes
        # 20) and 0.75 at ~23 ms (160), IVF_HNSW_SQ 0.84 at ~12 ms with every partition
        # probed. Few partitions (~sqrt(rows)/8): each graph is searched, not scanned.
        partitions = max(1, min(256, int(math.sqrt(table.count_rows())) // 8))
        config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
        table.create_index("vector", config=config, name=VECTOR_INDEX, replace=True)
        # A bitmap (few distinct projects, many rows each): the prefilter of 100k rows
        # took ~14 ms p50 with it against ~21 ms with a B-tree (bench/, same run).
        table.create_index("live_project", config=Bitmap(), name=PROJECT_INDEX, replace=True)

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
            raise StoreError(f"memory could not be read: {one_line(exc)}") from None

    def nearest(self, vector: np.ndarray, where: str) -> tuple[dict[str, Any], float] | None:
        """The row matching ``where`` most similar to ``vector``, and its cosine similarity."""
        table = self.table()
        if table is None or not np.any(vector):
            return None
        try:
            found = (
                table.search(vector, vector_column_name="vector")
                .distance_type("cosine")
                .where(where, prefilter=True)
                .nprobes(self.nprobes)
                .limit(1)
                .to_list()
            )
        except Exception as exc:
            raise StoreError(f"memory could not be searched: {one_line(exc)}") from None
        if not found:
            return None
        return found[0], 1.0 - float(found[0]["_distance"])

    def vector_search(self, vector: np.ndarray, where: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` rows matching ``where`` nearest to ``vector`` (cosine; the vector
        index once built), each with ``relevance`` = cosine similarity clipped to 0..1."""
        table = self.table()
        if table is None or not np.any(vector):
            return []
        try:
            rows = self._vector_query(table, vector, where, limit).to_arrow().to_pylist()
        except Exception as exc:
            raise StoreError(f"memory could not be searched: {one_line(exc)}") from None
        for row in rows:
            row["relevance"] = min(1.0, max(0.0, 1.0 - float(row.pop("_distance"))))
        return rows

    def _vector_query(self, table: Any, vector: np.ndarray, where: str, limit: int) -> Any:
        return (
            table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .where(where, prefilter=True)
            .nprobes(self.nprobes)
            .select([*RESULT_COLUMNS, "_distance"])
            .limit(limit)
        )

    def hybrid(self, vector: np.ndarray, text: str, where: str, limit: int) -> list[dict[str, Any]]:
        """The best ``limit`` rows matching ``where`` for ``text`` (full text) and ``vector``,
        fused by RRF; each with ``relevance`` in 0..1 (1: first in both searches).

        LanceDB's vector and full-text (BM25) queries, each prefiltered, each of
        ``limit`` rows, fused here by reciprocal rank (RRF, k = :data:`RRF_K`, as
        LanceDB's ``RRFReranker``): LanceDB's own hybrid query fuses the same way but
        in Python over pyarrow rows, and cost ~2x the two queries (bench/)."""
        table = self.table()
        if table is None:
            return []
        fts_query = (
            table.search(text, query_type="fts", fts_columns="content")
            .where(where, prefilter=True)
            .select([*RESULT_COLUMNS, "_score"])
            .limit(limit)
        )
        try:
            # The two queries at once: LanceDB runs each in its Rust runtime while the
            # calling thread waits (p50 ~16 ms against ~37 ms one after the other, bench/).
            fts = _pool().submit(lambda: fts_query.to_arrow().to_pylist())
            near = []
            if np.any(vector):  # else nothing the embedder knows: the full text alone
                near = self._vector_query(table, vector, where, limit).to_arrow().to_pylist()
            fts_rows = fts.result()
        except Exception as exc:
            raise StoreError(f"memory could not be searched: {one_line(exc)}") from None
        fused: dict[str, tuple[float, dict[str, Any]]] = {}
        for ranked in (near, fts_rows):
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
        """Exact vector search (no index), prefiltered: the baseline of ``bench/``."""
        table = self.table()
        return (
            table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .where(where, prefilter=True)
            .bypass_vector_index()
            .limit(limit)
            .to_list()
        )

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
            raise StoreError(f"memory could not be erased: {one_line(exc)}") from None
        return count, table
