"""What the engine requires of what a plugin registers: typed protocols.

The base classes :class:`connectsw.agents.base.Agent`,
:class:`connectsw.core.workflows.Workflow` and :class:`connectsw.gates.base.GateRule`
satisfy them (checked by mypy below); a plugin may subclass them or write any
class with the same members. The registries check the callables at registration
(``register(thing)``); these protocols say the types. All three are
``runtime_checkable``: ``isinstance(obj, AgentProtocol)`` checks that the members
exist (not their signatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from connectsw.agents.base import AgentOutput, TaskContext
    from connectsw.core.models import Intent, Plan, RuleResult
    from connectsw.gates.base import GateContext


@runtime_checkable
class AgentProtocol(Protocol):
    """An agent: what a task's ``agent:`` names.

    Required: ``name`` (lowercase letters, digits, ``-_.``; unique among agents)
    and ``run(ctx)``. ``run`` receives a :class:`~connectsw.agents.base.TaskContext`
    and returns an :class:`~connectsw.agents.base.AgentOutput`, a dict of the same
    shape (``summary``, ``outputs``, ``artifacts``) or None; it raises
    :class:`~connectsw.core.errors.TaskError` to fail the attempt (retried up to
    the task's ``retries``). Any other exception fails the attempt too, with its
    type in the error. Optional attributes the engine reads with a default:
    ``description`` (``""``), ``input_model`` (a pydantic model validating the
    task's ``with`` block when the plan is made; None), ``isolation``
    (``"process"`` or ``"thread"``), ``brief`` (False), ``uses_memory`` (False).
    """

    @property
    def name(self) -> str: ...

    def run(self, ctx: TaskContext) -> AgentOutput | Mapping[str, Any] | None: ...


@runtime_checkable
class WorkflowProtocol(Protocol):
    """A workflow (decomposer): turns an :class:`~connectsw.core.models.Intent` into a plan.

    The planner asks the registered workflows in order (third-party plugins
    first, built-ins last); the first whose ``claims(intent)`` is True has its
    ``decompose(intent, **options)`` called, which returns a
    :class:`~connectsw.core.models.Plan` (build one with
    :func:`connectsw.core.planner.build_plan`) or raises
    :class:`~connectsw.core.errors.PlanError` (exit 2, its message shown). The
    plan is then validated against the registered agents and gate rules.
    ``options`` are the submitter's keyword options (none from the CLI today);
    accept and ignore what you do not know.

    Optional attributes: ``kind`` (the intent kind it claims; the
    :class:`~connectsw.core.workflows.Workflow` base claims intents of its
    ``kind``) and ``commands`` (a tuple of command words, e.g. ``("release",)``
    or ``("new release",)``: ``connectsw release v1.2`` then becomes an intent of
    ``kind``). A command word another workflow or a built-in command already has
    fails the later plugin at registration.
    """

    @property
    def name(self) -> str: ...

    def claims(self, intent: Intent) -> bool: ...

    def decompose(self, intent: Intent, **options: Any) -> Plan: ...


@runtime_checkable
class GateRuleProtocol(Protocol):
    """A quality-gate rule: judges a finished stage's workspace.

    ``applies(ctx)`` is False when the rule has nothing to judge (the rule then
    passes as "not applicable"); ``evaluate(ctx)`` returns a
    :class:`~connectsw.core.models.RuleResult` (``passed``, ``score`` 0-1,
    ``details`` as evidence, ``remediation`` sent back to the agents on failure).
    An exception in either fails the gate with "rule crashed: Type: message".
    Optional: ``description`` and ``applies_to`` (workspace traits, shown by
    ``connectsw gates list``).
    """

    @property
    def name(self) -> str: ...

    def applies(self, ctx: GateContext) -> bool: ...

    def evaluate(self, ctx: GateContext) -> RuleResult: ...


if TYPE_CHECKING:  # mypy: the base classes satisfy the protocols
    from connectsw.agents.base import Agent
    from connectsw.core.workflows import Workflow
    from connectsw.gates.base import GateRule

    _agent: AgentProtocol = Agent()
    _workflow: WorkflowProtocol = Workflow()
    _rule: GateRuleProtocol = GateRule()
