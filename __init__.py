"""ConnectSW: an open-core orchestrator for agentic software work.

The names a plugin needs are importable from here (``from connectsw import
hookimpl, Agent, AgentOutput, TaskContext, TaskError``); see docs/plugins.md.
They are loaded on first use (:data:`_EXPORTS`): ``import connectsw`` stays cheap,
which the CLI's start-up time depends on (bench/cli_startup.py).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker
    """Marker plugin authors decorate their hook implementations with."""

if TYPE_CHECKING:
    from connectsw.agents.base import Agent, AgentInput, AgentOutput, TaskContext
    from connectsw.core.errors import ConnectSWError, PlanError, PluginError, TaskError
    from connectsw.core.models import (
        Artifact,
        CheckpointSpec,
        Event,
        Intent,
        LLMUsage,
        Plan,
        Request,
        RuleResult,
        TaskResult,
        TaskSpec,
    )
    from connectsw.core.planner import CheckpointAt, build_plan, slugify
    from connectsw.core.workflows import Workflow
    from connectsw.gates.base import GateContext, GateRule
    from connectsw.plugins.contracts import AgentProtocol, GateRuleProtocol, WorkflowProtocol
    from connectsw.submission import ExecutionNotCompleted, submit

_EXPORTS: dict[str, str] = {
    # agents
    "Agent": "connectsw.agents.base",
    "AgentInput": "connectsw.agents.base",
    "AgentOutput": "connectsw.agents.base",
    "TaskContext": "connectsw.agents.base",
    # workflows and plans
    "Workflow": "connectsw.core.workflows",
    "Intent": "connectsw.core.models",
    "Request": "connectsw.core.models",
    "Plan": "connectsw.core.models",
    "TaskSpec": "connectsw.core.models",
    "CheckpointSpec": "connectsw.core.models",
    "CheckpointAt": "connectsw.core.planner",
    "build_plan": "connectsw.core.planner",
    "slugify": "connectsw.core.planner",
    # gate rules
    "GateRule": "connectsw.gates.base",
    "GateContext": "connectsw.gates.base",
    "RuleResult": "connectsw.core.models",
    # results and events
    "Artifact": "connectsw.core.models",
    "TaskResult": "connectsw.core.models",
    "LLMUsage": "connectsw.core.models",
    "Event": "connectsw.core.models",
    # contracts
    "AgentProtocol": "connectsw.plugins.contracts",
    "WorkflowProtocol": "connectsw.plugins.contracts",
    "GateRuleProtocol": "connectsw.plugins.contracts",
    # errors
    "ConnectSWError": "connectsw.core.errors",
    "TaskError": "connectsw.core.errors",
    "PlanError": "connectsw.core.errors",
    "PluginError": "connectsw.core.errors",
    # submitting work from a plugin's own command
    "submit": "connectsw.submission",
    "ExecutionNotCompleted": "connectsw.submission",
}
"""Public name -> the module that defines it (imported on first access)."""


def __getattr__(name: str) -> Any:
    if name == "hookimpl":  # made on first use: light commands never import pluggy
        import pluggy

        value = globals()["hookimpl"] = pluggy.HookimplMarker("connectsw")
        return value
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(import_module(module), name)
        globals()[name] = value  # the next access does not come here
        return value
    # ``__version__`` is read from the installed metadata only when asked for:
    # importlib.metadata costs the light commands (--help, status) ~30 ms.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("connectsw")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0.0.0"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__", "hookimpl"})


__all__ = [
    "__version__",
    "hookimpl",
    "Agent",
    "AgentInput",
    "AgentOutput",
    "TaskContext",
    "Workflow",
    "Intent",
    "Request",
    "Plan",
    "TaskSpec",
    "CheckpointSpec",
    "CheckpointAt",
    "build_plan",
    "slugify",
    "GateRule",
    "GateContext",
    "RuleResult",
    "Artifact",
    "TaskResult",
    "LLMUsage",
    "Event",
    "AgentProtocol",
    "WorkflowProtocol",
    "GateRuleProtocol",
    "ConnectSWError",
    "TaskError",
    "PlanError",
    "PluginError",
    "submit",
    "ExecutionNotCompleted",
]
