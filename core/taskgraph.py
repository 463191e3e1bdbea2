"""The task-graph file: an explicit plan written by a person (YAML or JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectsw.core.errors import PlanError, describe_validation_error

ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
SCHEMA_FILE = Path(__file__).with_name("taskgraph.schema.json")


class GraphTask(BaseModel):
    """One task: the agent that runs it, its input (``with``) and what it needs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=ID_PATTERN, description="Unique task id.")
    agent: str = Field(description="Agent type, e.g. shell, product-manager.")
    title: str = Field("", description="Human-readable title.")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="Input given to the agent."
    )
    needs: list[str] = Field(default_factory=list, description="Ids of tasks that run first.")
    retries: int = Field(0, ge=0, le=20, description="Extra attempts after a failure.")
    timeout: float | None = Field(None, gt=0, description="Seconds per attempt.")


class GraphCheckpoint(BaseModel):
    """A human checkpoint once the listed tasks (and all they need) have finished."""

    model_config = ConfigDict(extra="forbid")

    after: list[str] = Field(min_length=1, description="Task ids this checkpoint waits for.")
    question: str = Field(min_length=1, description="What the person is asked.")
    name: str | None = Field(None, pattern=ID_PATTERN, description="Checkpoint type name.")
    gates: list[str] = Field(
        default_factory=list, description="Gate rules that must pass before asking."
    )


class GraphFile(BaseModel):
    """A task-graph file (``connectsw run FILE``)."""

    model_config = ConfigDict(extra="forbid", title="ConnectSW task graph")

    name: str = Field(min_length=1, description="Name of the plan.")
    description: str = ""
    tasks: list[GraphTask] = Field(min_length=1)
    checkpoints: list[GraphCheckpoint] = Field(default_factory=list)
    gates: list[str] = Field(
        default_factory=list, description="Gate rules for the last stage (after all tasks)."
    )


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the task-graph file."""
    schema = GraphFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def load_graph_file(path: Path) -> GraphFile:
    """Read and validate a task-graph file; any problem is one :class:`PlanError` line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping with 'name' and 'tasks' at the top")
    try:
        return GraphFile.model_validate(data)
    except ValidationError as exc:
        raise PlanError(f"{path}: {describe_validation_error(exc)}") from None
