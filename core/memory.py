"""Project memory: decisions, architecture notes, patterns and preferences, per project.

Reference §2.2 ("Memory System") and DESIGN.md's "Intelligence layer". A memory
is a :class:`MemoryRecord`; :class:`Memory` writes, searches, lists, exports and
erases them (rows in LanceDB: :mod:`connectsw.core.memory_store`; vectors from the
embedder named by ``memory.embedder``: :mod:`connectsw.core.memory_embedders`).

Rules:

- A memory of the same project and type that says the same thing is never a
  second row: the same text returns the existing memory; a new text that
  replaces a live one supersedes it. It replaces one when it says so
  (``supersedes=ID``), when it comes from the same source (an ADR rewritten, a
  PRD of a new round), or when its vector is at least ``memory.supersede_similarity``
  similar (a near duplicate). A superseded memory keeps its row (``superseded_by``
  names its successor) and is no longer listed or found.
- Searches return the reference's ``/v1/memory/context`` items (type, content,
  relevance 0..1, source, timestamp), best first.
- ``export(user)`` returns every row of a user (superseded ones too);
  ``purge(user)`` and ``forget(id)`` remove rows and vectors from disk for good.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import Field

from connectsw.conf.settings import MemorySettings, Settings
from connectsw.core.errors import InvalidInput, NotFound
from connectsw.core.memory_embedders import Embedder, get_embedder
from connectsw.core.memory_store import MemoryTable, quote
from connectsw.core.models import ApiModel, utcnow

MemoryType = Literal["decision", "architecture", "pattern", "preference"]
MEMORY_TYPES: tuple[str, ...] = get_args(MemoryType)
LIVE = "superseded_by = ''"


def live(project: str) -> str:
    """The filter of ``project``'s live memories (one indexed column)."""
    return f"live_project = {quote(project)}"


#: Longest project, source and user names (characters).
MAX_NAME = 200


class MemoryRecord(ApiModel):
    """One memory as stored (without its vector)."""

    id: str
    project: str
    type: MemoryType
    content: str
    source: str = ""
    user: str = ""
    created_at: datetime
    updated_at: datetime
    superseded_by: str | None = None
    """Id of the memory that replaced this one; None while it is live."""


class Recalled(ApiModel):
    """A search hit: the reference's ``/v1/memory/context`` item, plus the memory's id."""

    id: str
    type: str
    content: str
    relevance: float = Field(ge=0, le=1)
    """``memory.search`` vector: the cosine similarity of query and memory (below 0:
    0). hybrid: reciprocal-rank fusion of the vector and full-text ranks, scaled so
    that 1 is first in both."""
    source: str
    timestamp: datetime
    """When the memory was last written (``updated_at``)."""


def _record(row: dict[str, Any]) -> MemoryRecord:
    data = {k: row[k] for k in MemoryRecord.model_fields}
    data["superseded_by"] = data["superseded_by"] or None
    return MemoryRecord(**data)


def _check_name(what: str, value: str, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what}: required")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{what}: at most {MAX_NAME} characters")
    if "\x00" in value:
        raise InvalidInput(f"{what}: must not contain a NUL character")
    return value


def check_type(value: str) -> MemoryType:
    """``value`` as a memory type, or :class:`InvalidInput` listing the types."""
    if value not in MEMORY_TYPES:
        raise InvalidInput(f"type: must be one of {', '.join(MEMORY_TYPES)}")
    return value  # type: ignore[return-value]


class Memory:
    """The memories of one LanceDB database, embedded by one embedder."""

    def __init__(self, uri: str, embedder: Embedder, settings: MemorySettings) -> None:
        self.settings = settings
        self.embedder = embedder
        self.table = MemoryTable(
            uri,
            embedder.name,
            embedder.dim,
            settings.index_threshold,
            settings.nprobes,
            settings.refine_factor,
        )
        self._lock = threading.Lock()
        self._adopt_other_tables()

    def _adopt_other_tables(self) -> None:
        """Memories written with another embedder are embedded again with this one (once)."""
        if self.table.table() is not None:
            return
        for name in self.table.other_tables():
            rows = self.table.db.open_table(name).to_arrow().drop_columns(["vector"]).to_pylist()
            for project in {r["project"] for r in rows}:
                mine = [r for r in rows if r["project"] == project]
                vectors = self.embedder.embed([r["content"] for r in mine])
                for row, vector in zip(mine, vectors, strict=True):
                    row["vector"] = vector
                self.table.add(mine)
            return

    # -- writing -------------------------------------------------------------------
    def remember(
        self,
        project: str,
        type: str,
        content: str,
        source: str = "",
        user: str = "",
        supersedes: str | None = None,
    ) -> MemoryRecord:
        """Store a memory of ``project`` and return it (see the module's rules).

        ``type``: decision, architecture, pattern or preference; ``content``: the
        text (cut at ``memory.max_content_chars``); ``source``: where it comes from
        (a path, ``EXECUTION:CHECKPOINT``); ``user``: who it is about or by (for
        GDPR export and purge). Used by the CLI, by the engine (ADRs, documents,
        checkpoint feedback) and by learning (preferences from change requests).

        Raises:
            InvalidInput: an unknown type, an empty text or project, a name too long.
            NotFound: ``supersedes`` names no live memory of the project.
            StoreError: the memory database could not be written.
        """
        project = _check_name("project", project, required=True)
        kind = check_type(type)
        source = _check_name("source", source, required=False)
        user = _check_name("user", user, required=False)
        content = content.strip()[: self.settings.max_content_chars]
        if not content:
            raise InvalidInput("content: must not be empty")
        scope = f"{live(project)} AND type = {quote(kind)}"
        with self._lock:
            vector = self.embedder.embed([content])[0]
            near = self.table.nearest(vector, scope)
            if near is not None and near[0]["content"] == content:
                return _record(near[0])  # the same text again: the same memory
            if not vector.any():  # nothing to embed: only an exact match is the same
                same = self.table.rows(f"{scope} AND content = {quote(content)}", limit=1)
                if same:
                    return _record(same[0])
            replaced: list[str] = []
            if supersedes:
                old = self.table.rows(f"{scope} AND id = {quote(supersedes)}", limit=1)
                if not old:
                    raise NotFound(f"no live {kind} memory {supersedes} in project {project}")
                replaced.append(supersedes)
            if source:
                replaced += [
                    r["id"] for r in self.table.rows(f"{scope} AND source = {quote(source)}")
                ]
            if near is not None and near[1] >= self.settings.supersede_similarity:
                replaced.append(near[0]["id"])
            now = utcnow()
            row = {
                "id": uuid.uuid4().hex,
                "project": project,
                "type": kind,
                "content": content,
                "source": source,
                "user": user,
                "created_at": now,
                "updated_at": now,
                "superseded_by": "",
                "live_project": project,
                "vector": vector,
            }
            self.table.add([row])
            replaced = list(dict.fromkeys(replaced))
            if replaced:
                ids = ", ".join(quote(i) for i in replaced)
                self.table.update(
                    f"id IN ({ids})",
                    {"superseded_by": row["id"], "live_project": "", "updated_at": now},
                )
            return _record(row)

    def add_many(
        self, project: str, items: list[tuple[str, str]], source: str = "", user: str = ""
    ) -> int:
        """Bulk import of ``(type, content)`` pairs into ``project``: one write, no
        supersede checks (for imports and benchmarks); the number added."""
        project = _check_name("project", project, required=True)
        kinds = [check_type(kind) for kind, _ in items]
        texts = [content.strip()[: self.settings.max_content_chars] for _, content in items]
        if not all(texts):
            raise InvalidInput("content: must not be empty")
        vectors = self.embedder.embed(texts)
        now = utcnow()
        rows = [
            {
                "id": uuid.uuid4().hex,
                "project": project,
                "type": kind,
                "content": text,
                "source": source,
                "user": user,
                "created_at": now,
                "updated_at": now,
                "superseded_by": "",
                "live_project": project,
                "vector": vector,
            }
            for kind, text, vector in zip(kinds, texts, vectors, strict=True)
        ]
        with self._lock:
            self.table.add(rows)
        return len(rows)

    # -- reading -------------------------------------------------------------------
    def search(self, project: str, query: str, limit: int = 10) -> list[Recalled]:
        """The live memories of ``project`` best matching ``query``, best first: by
        ``memory.search``, the vector search alone or hybrid (vector + full text, RRF).

        An empty query returns the newest memories (relevance 1).
        """
        where = live(project)
        if not query.strip():
            rows = sorted(self.table.rows(where), key=lambda r: r["updated_at"], reverse=True)
            for row in rows:
                row["relevance"] = 1.0
            rows = rows[:limit]
        else:
            vector = self.embedder.embed([query])[0]
            if self.settings.search == "vector" and vector.any():
                rows = self.table.vector_search(vector, where, limit)
            else:  # hybrid, or nothing the embedder knows (full text alone)
                rows = self.table.hybrid(vector, query, where, limit)
        return [
            Recalled(
                id=r["id"],
                type=r["type"],
                content=r["content"],
                relevance=round(r["relevance"], 3),
                source=r["source"],
                timestamp=r["updated_at"],
            )
            for r in rows
        ]

    def records(
        self, project: str | None = None, user: str | None = None, superseded: bool = False
    ) -> list[MemoryRecord]:
        """Memories (of a project, of a user), oldest first; superseded ones only if asked."""
        where = [LIVE] if not superseded else ["true"]
        if project is not None:
            where.append(f"project = {quote(project)}")
        if user is not None:
            where.append(f"user = {quote(user)}")
        rows = self.table.rows(" AND ".join(where))
        return sorted((_record(r) for r in rows), key=lambda r: (r.created_at, r.id))

    def get(self, memory_id: str) -> MemoryRecord:
        """The memory ``memory_id`` (live or superseded), or :class:`NotFound`."""
        rows = self.table.rows(f"id = {quote(memory_id)}", limit=1)
        if not rows:
            raise NotFound(f"no memory {memory_id}")
        return _record(rows[0])

    # -- erasing -------------------------------------------------------------------
    def forget(self, memory_id: str) -> MemoryRecord:
        """Remove one memory for good (row, vector, older versions); returns what it was."""
        record = self.get(memory_id)
        with self._lock:
            self.table.erase(f"id = {quote(memory_id)}")
        return record

    def export(self, user: str) -> list[MemoryRecord]:
        """Everything stored about ``user``: all their memories, superseded ones too."""
        return self.records(user=_check_name("user", user, required=True), superseded=True)

    def purge(self, user: str) -> int:
        """Remove every memory of ``user`` from disk for good; the number removed."""
        user = _check_name("user", user, required=True)
        with self._lock:
            return self.table.erase(f"user = {quote(user)}")


def memory_uri(settings: Settings) -> str:
    """Where the memory database lives: ``memory.url`` or ``DATA_DIR/memory``."""
    return settings.memory.url or str(settings.data_dir.expanduser() / "memory")


_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], Memory] = {}


def open_memory(settings: Settings) -> Memory:
    """The process's :class:`Memory` for these settings (one per database and embedder).

    Raises:
        ConfigError: the embedder is not registered or cannot load.
        StoreError: the database cannot be opened.
    """
    uri = memory_uri(settings)
    name = settings.memory.embedder
    with _cache_lock:
        memory = _cache.get((uri, name))
        if memory is None:
            memory = _cache[(uri, name)] = Memory(uri, get_embedder(name), settings.memory)
        return memory


def memory_exists(settings: Settings) -> bool:
    """Whether any memory was ever written there (a local directory that exists, or a URL)."""
    from pathlib import Path

    uri = memory_uri(settings)
    return "://" in uri or Path(uri).is_dir()
