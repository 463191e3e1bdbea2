"""Pydantic models of the orchestrator; their JSON is the API's JSON (camelCase)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    computed_field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from connectsw.core.durations import NotBool, TimeoutOrZero
from connectsw.core.errors import is_utf8, storable


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def new_execution_id() -> str:
    """A fresh execution id such as ``exec_3f9c2a1b7d4e``."""
    return "exec_" + secrets.token_hex(6)


class ApiModel(BaseModel):
    """Base: camelCase aliases in JSON, snake_case in Python, unknown keys refused.

    ``defer_build``: a model's validator is built on its first use, not at import, so
    commands that import the models but validate few of them (``status``, ``plugins``)
    do not pay for building all of them (about 50 ms).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        defer_build=True,
    )

    def to_api(self) -> dict[str, Any]:
        """The JSON-ready dict the API and ``--json`` output serve."""
        return self.model_dump(mode="json", by_alias=True)


# -- request and intent ------------------------------------------------------


class RequestContext(ApiModel):
    """Where the request was made: what the CLI knows of the user's machine."""

    working_directory: str = ""
    git_info: dict[str, Any] = Field(default_factory=dict)
    file_tree: list[str] = Field(default_factory=list)


class Request(ApiModel):
    """What a person asked for: ``new product "AI-powered code reviewer"``."""

    command: str
    args: list[str] = Field(default_factory=list)
    context: RequestContext = Field(default_factory=RequestContext)

    @property
    def text(self) -> str:
        """The request's free text (its arguments joined)."""
        return " ".join(self.args).strip()


class Intent(ApiModel):
    """The parsed meaning of a request; workflows claim intents by ``kind``."""

    kind: str
    subject: str = ""
    request: Request
    source_file: str | None = None


# -- plan -------------------------------------------------------------------


class TaskLearning(ApiModel):
    """What the execution history changed in a task's plan (:mod:`connectsw.core.learning`,
    reference §2.4): its estimate, extra retries, and the project's preferences."""

    estimated_seconds: float = Field(ge=0)
    """Expected duration of one attempt, seconds: the p50 of its succeeded attempts in
    this workflow (``basis`` "history"), else ``learning.default_task_seconds``."""
    p90_seconds: float = Field(ge=0)
    """The p90 of the same durations (the estimate again when there is no history)."""
    runs: int = Field(0, ge=0)
    """Runs of this task (workflow, task id and agent) in the history."""
    basis: Literal["history", "default"] = "default"
    failure_rate: float | None = Field(None, ge=0, le=1)
    """Failed attempts / attempts in the history (None: fewer than ``learning.min_runs``)."""
    extra_retries: int = Field(0, ge=0)
    """Retries added to ``engine.default_retries``, because the task is failure-prone and
    left its retries to the engine (an author's ``retries`` is never changed)."""
    preferences: list[str] = Field(default_factory=list)
    """The project's preferences from earlier checkpoints of this task's stage, oldest
    first: applied from the start (the product manager's PRD honours them)."""


class TaskSpec(ApiModel):
    """One task of a plan: which agent runs it, with what input, after what."""

    id: str
    agent: str
    title: str = ""
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list)
    retries: Annotated[int, NotBool] | None = Field(None, ge=0, le=20)
    """Extra attempts after a failure, 0 to 20 (as in task-graph files); None: the
    setting ``engine.default_retries``."""
    timeout: TimeoutOrZero | None = None
    """Seconds per attempt, finite (NaN and infinity refused); above 604800 (7 days)
    it is 7 days; 0 or None: the engine's default (core/durations.py)."""
    stage: int = 0
    learned: TaskLearning | None = None
    """Set by the learning engine when the plan is made (None: not applied)."""


class CheckpointSpec(ApiModel):
    """A human checkpoint at the end of a stage."""

    type: str
    question: str
    options: list[str] = Field(default_factory=lambda: ["approve", "request_changes", "cancel"])


class Stage(ApiModel):
    """The tasks between two checkpoints: one Dask graph."""

    index: int
    name: str
    task_ids: list[str]
    checkpoint: CheckpointSpec | None = None
    gates: list[str] = Field(default_factory=list)


class Plan(ApiModel):
    """A decomposed request: tasks, their stages and the checkpoints between them."""

    name: str
    workflow: str
    tasks: list[TaskSpec]
    stages: list[Stage]
    estimated_duration: str | None = None
    """The reference's ``estimatedDuration``, for people: e.g. ``"2-4 min"`` (p50 to p90
    of the whole plan), without the time spent waiting at checkpoints."""
    estimated_seconds: float | None = Field(None, ge=0)
    """The p50 estimate of the whole plan, seconds: the sum over stages of the longest
    chain of estimated tasks in each (a stage's tasks run in parallel)."""
    # id -> task, built on first use and rebuilt when ``tasks`` is another list or
    # another length (a plan of 10,000 tasks is looked up 10,000 times per stage).
    _index: tuple[list[TaskSpec], dict[str, TaskSpec]] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # ``checkpoints`` is derived from the stages; accept it back from JSON and ignore it.
        if isinstance(data, dict) and "checkpoints" in data:
            data = {k: v for k, v in data.items() if k != "checkpoints"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def checkpoints(self) -> list[CheckpointSpec]:
        """The checkpoints in order (the API's ``plan.checkpoints``)."""
        return [s.checkpoint for s in self.stages if s.checkpoint is not None]

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id (KeyError if none)."""
        index = self._index
        if index is None or index[0] is not self.tasks or len(index[1]) != len(self.tasks):
            index = self._index = (self.tasks, {t.id: t for t in reversed(self.tasks)})
        return index[1][task_id]

    def stage_tasks(self, index: int) -> list[TaskSpec]:
        """The tasks of stage ``index``, in plan order."""
        ids = set(self.stages[index].task_ids)
        return [t for t in self.tasks if t.id in ids]


# -- execution state -------------------------------------------------------


class ExecutionStatus(StrEnum):
    """Lifecycle of an execution."""

    PENDING = "pending"
    EXECUTING = "executing"
    INTERRUPTED = "interrupted"  # shown when EXECUTING but its process is gone
    AWAITING_CHECKPOINT = "awaiting_checkpoint"
    GATE_FAILED = "gate_failed"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True once nothing more will run (``states.FINISHED``)."""
        from connectsw.core.states import FINISHED

        return self in FINISHED


class TaskStatus(StrEnum):
    """Lifecycle of one task attempt."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"  # stopped, or never started, because the execution was cancelled
    INTERRUPTED = "interrupted"  # its process died before it ended; a new attempt runs


MAX_USER_TEXT = 10_000
"""Characters: the longest text a person gives to be kept and passed on: a request's
description, checkpoint feedback, a cancel reason (CLI and API alike)."""


def check_user_text(what: str, text: str | None) -> None:
    """Refuse ``text`` longer than :data:`MAX_USER_TEXT` characters (never repeating it).

    A text holding a surrogate (bytes that were not UTF-8, a JSON ``\\udce9``) is
    refused too: no record can hold it.

    Raises:
        InvalidInput: ``the WHAT is N characters long; at most 10000 are allowed``;
            ``the WHAT is not valid UTF-8``.
    """
    if text is not None and not is_utf8(text):
        from connectsw.core.errors import InvalidInput

        raise InvalidInput(f"the {what} is not valid UTF-8")
    if text is not None and len(text) > MAX_USER_TEXT:
        from connectsw.core.errors import InvalidInput

        raise InvalidInput(
            f"the {what} is {len(text)} characters long; at most {MAX_USER_TEXT} are allowed"
        )


class Decision(StrEnum):
    """The answers a person can give at a checkpoint."""

    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    CANCEL = "cancel"


class Artifact(ApiModel):
    """A file a task produced, relative to the workspace."""

    type: str = "file"
    path: str
    description: str = ""
    preview: str = ""
    url: str | None = None


class LLMUsage(ApiModel):
    """Language-model use: calls, tokens in and out, cost in US dollars (``llm.prices``)."""

    calls: int = Field(0, ge=0)
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    cost: float = Field(0.0, ge=0)

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            cost=self.cost + other.cost,
        )

    def __bool__(self) -> bool:
        return bool(self.calls or self.tokens_in or self.tokens_out or self.cost)


class ExecutionUsage(LLMUsage):
    """An execution's language-model use: its total, and each task's over all its
    attempts and rounds (a failed attempt's tokens were paid for too)."""

    tasks: dict[str, LLMUsage] = Field(default_factory=dict)


class TaskResult(ApiModel):
    """The persisted outcome of one attempt of one task."""

    execution_id: str
    task_id: str
    round: int = 0
    attempt: int = 1
    status: TaskStatus
    summary: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    commit: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The process group running this attempt (supervisor ProcessRef as a dict), if any:
    #: a resumed execution stops a crashed owner's leftovers through it.
    process: dict[str, Any] | None = None
    #: The attempt's language-model use, if it called a model.
    usage: LLMUsage | None = None


StorableText = Annotated[str, AfterValidator(storable)]
"""Text a plugin or command gives (surrogates replaced: core/errors.py storable)."""


class RuleResult(ApiModel):
    """One gate rule's verdict on a stage."""

    rule: str
    passed: bool
    score: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """From 0 to 1 (the reference's validateCheckpoint score); NaN, an infinity or a value
    outside is refused (a rule returning one crashes, trial 8: -5 made "Gate passed (score -2)")."""
    details: StorableText = ""
    """The evidence: what was run and what it showed."""
    remediation: StorableText = ""
    """What to change so that the rule passes (sent to the stage's agents as feedback)."""
    ran: bool = True
    """False when the rule could not run (a tool is missing: ``details`` says "not run: ...")."""
    artifacts: list[Artifact] = Field(default_factory=list)
    """Files the rule kept as evidence (a screenshot); paths are absolute, outside the workspace."""


class GateResult(ApiModel):
    """All rules' verdicts for one stage: the stage may reach its checkpoint if passed."""

    stage: int
    passed: bool
    score: float
    rules: list[RuleResult] = Field(default_factory=list)

    @property
    def remediation(self) -> str:
        """The remediation hints of the failed rules, joined."""
        return " ".join(r.remediation for r in self.rules if not r.passed and r.remediation)


class CheckpointState(ApiModel):
    """A checkpoint reached by an execution, with its decision once given."""

    execution_id: str
    stage: int
    round: int = 0
    type: str
    question: str
    options: list[str] = Field(default_factory=lambda: [d.value for d in Decision])
    artifacts: list[Artifact] = Field(default_factory=list)
    decision: Decision | None = None
    feedback: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class Execution(ApiModel):
    """One run of a plan, as persisted."""

    id: str = Field(default_factory=new_execution_id)
    request: Request
    plan: Plan
    workspace: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    stage: int = 0
    round: int = 0
    feedback: list[str] = Field(default_factory=list)
    #: Rounds of the current stage started by a failed quality gate since a person last
    #: decided (``gates.remediation_rounds`` bounds them).
    remediations: int = 0
    error: str | None = None
    owner: str | None = None
    heartbeat_at: datetime | None = None
    #: Fencing token of the current lease: incremented by every claim; a write by a
    #: process holding an older token is refused (:class:`~connectsw.core.errors.LeaseLost`).
    lease_token: int = 0
    #: Public id of the license that submitted it through the API server (None in
    #: local mode): a license sees only its own executions.
    license_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def next_checkpoint(self) -> str | None:
        """Type of the next checkpoint this execution will reach (or is at)."""
        if self.status.finished:
            return None
        for stage in self.plan.stages[self.stage :]:
            if stage.checkpoint is not None:
                return stage.checkpoint.type
        return None


class Event(ApiModel):
    """A state change of an execution; ``seq`` orders events of one store."""

    seq: int = 0
    execution_id: str
    kind: str
    time: datetime = Field(default_factory=utcnow)
    stage: int | None = None
    task_id: str | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


# -- API views -----------------------------------------------------------------


class ExecuteResponse(ApiModel):
    """Body of ``POST /v1/execute``."""

    execution_id: str
    plan: Plan
    status: ExecutionStatus
    next_checkpoint: str | None = None


class CheckpointView(ApiModel):
    """The ``checkpoint`` object of ``GET /v1/execution/{id}``."""

    type: str
    artifacts: list[Artifact]
    question: str
    options: list[str]


class ExecutionView(ApiModel):
    """Body of ``GET /v1/execution/{id}``, plus the per-task states."""

    execution_id: str
    status: ExecutionStatus
    command: str | None = None
    """The request's command (``new product``, ``new feature``, ``fix``, ``run``)."""
    title: str | None = None
    """The request's text (a product's title names its workspace, ``./SLUG``)."""
    stage: int
    round: int
    next_checkpoint: str | None = None
    checkpoint: CheckpointView | None = None
    gate: GateResult | None = None
    tasks: dict[str, TaskStatus] = Field(default_factory=dict)
    workspace: str
    error: str | None = None
    usage: ExecutionUsage = Field(default_factory=ExecutionUsage)
    """Language-model calls, tokens and cost: the execution's total and per task."""
    estimated_duration: str | None = None
    """The plan's ``estimatedDuration`` (p50 to p90, for people), if it was estimated."""
    estimated_seconds: float | None = None
    """The plan's p50 estimate, seconds (:mod:`connectsw.core.learning`)."""
