"""What the engine remembers by itself, and what it gives agents to read (issue 8).

Written: when a stage reaches its checkpoint, the markdown documents its agents
wrote (ADRs and the PRD as decisions, architecture documents as architecture
notes), each from its file in the workspace; when a person decides a checkpoint
with feedback, that feedback as a preference. A document rewritten in a later
round or execution supersedes its earlier version (same source).

Read: before a stage runs, each task whose agent reads memory
(``Agent.uses_memory``) gets the project's ``memory.context_items`` memories best
matching its task, passed in its :class:`~connectsw.core.runner.TaskCall` (the
engine searches; Dask workers never open the memory database).

The project of an execution is its plan's name; for an execution submitted
through the API server, ``LICENSE/NAME`` (a license sees only its own). Memory
never stops an execution: a failure is logged and the execution goes on.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from connectsw.conf.settings import Settings
from connectsw.core.models import CheckpointState, Execution

log = logging.getLogger("connectsw.memory")


def project_key(execution: Execution) -> str:
    """The memory project of an execution (see the module docstring)."""
    name = execution.plan.name
    return f"{execution.license_id}/{name}" if execution.license_id else name


def requester(execution: Execution) -> str:
    """Whose an execution's documents are: its license, or the local login name."""
    if execution.license_id:
        return execution.license_id
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return ""


def document_type(path: str) -> str | None:
    """The memory type of a written document, or None for what is not remembered.

    Markdown only: an ADR (``adr`` in its folder or name) and any other document
    (a PRD) are decisions; a name with ``architecture`` is an architecture note.
    """
    p = PurePosixPath(path.lower())
    if p.suffix not in (".md", ".markdown"):
        return None
    if "architecture" in p.name:
        return "architecture"
    return "decision"


def _open(settings: Settings) -> Any:
    from connectsw.core.memory import open_memory

    return open_memory(settings)


def remember_checkpoint(
    settings: Settings, execution: Execution, checkpoint: CheckpointState
) -> int:
    """Remember the documents of a reached checkpoint; the number written (0 on error)."""
    if not settings.memory.auto:
        return 0
    written = 0
    try:
        memory = None
        for artifact in checkpoint.artifacts:
            kind = document_type(artifact.path)
            if kind is None or artifact.type != "document":
                continue
            file = Path(execution.workspace) / artifact.path
            text = file.read_text(encoding="utf-8") if file.is_file() else artifact.preview
            if not text.strip():
                continue
            memory = memory or _open(settings)
            memory.remember(project_key(execution), kind, text, artifact.path, requester(execution))
            written += 1
    except Exception as exc:
        log.warning("execution %s: documents not remembered: %s", execution.id, exc)
    return written


def remember_feedback(
    settings: Settings, execution: Execution, checkpoint: CheckpointState
) -> bool:
    """Remember a decided checkpoint's feedback as a preference of the execution's
    requester (:func:`requester`: whom GDPR export and purge find it under); whether
    it was written."""
    feedback = (checkpoint.feedback or "").strip()
    if not settings.memory.auto or not feedback:
        return False
    source = f"{execution.id}:{checkpoint.type}:{checkpoint.round}"
    try:
        _open(settings).remember(
            project_key(execution), "preference", feedback, source, requester(execution)
        )
    except Exception as exc:
        log.warning("execution %s: feedback not remembered: %s", execution.id, exc)
        return False
    return True


def context_for_stage(
    settings: Settings, execution: Execution, agents: dict[str, Any]
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Memories for each task of the current stage whose agent reads memory.

    ``agents``: agent name -> agent. Returns task id -> the reference's context
    items (dicts: type, content, relevance, source, timestamp). Empty when no
    memory was ever written, so an execution without memory opens no database.
    """
    from connectsw.core.memory import memory_exists

    k = settings.memory.context_items
    stage = execution.plan.stages[execution.stage]
    tasks = [
        execution.plan.task(tid)
        for tid in stage.task_ids
        if getattr(agents.get(execution.plan.task(tid).agent), "uses_memory", False)
    ]
    if not k or not tasks or not memory_exists(settings):
        return {}
    found: dict[str, tuple[dict[str, Any], ...]] = {}
    try:
        memory = _open(settings)
        project = project_key(execution)
        for task in tasks:
            agent = agents[task.agent]
            query = " ".join(
                p for p in (task.title, agent.description, execution.request.text) if p
            )
            hits = memory.search(project, query, limit=k)
            found[task.id] = tuple(h.model_dump(mode="json", exclude={"id"}) for h in hits)
    except Exception as exc:
        log.warning("execution %s: memory not read: %s", execution.id, exc)
    return found
