"""Every hook ConnectSW calls, typed and documented.

Plugin authors implement them with ``@connectsw.hookimpl``. Discovery hooks
receive a ``register`` callback: call it once per thing the plugin provides;
the host checks names and collisions in one place. Built-in plugins implement
them with ``trylast=True`` so a third-party plugin comes first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from connectsw.core.models import Event

hookspec = pluggy.HookspecMarker("connectsw")


# -- discovery -----------------------------------------------------------------
# Each call is bounded as a plugin's import is (plugins/manager.py, call_bounded): it
# runs in a daemon thread waited for at most CONNECTSW_PLUGIN_IMPORT_TIMEOUT seconds
# (default 10; a light command such as --help waits about 1 s in all). Past it the
# plugin is failed ("register_agents did not return within 10 s"; for
# register_commands a warning, as when it raises), it is asked nothing more, what
# the abandoned call registers later is ignored, and the others load (issue 5, kind 7).


@hookspec
def register_agents(register: Callable[[Any], None]) -> None:
    """Register agent types: call ``register(agent)`` for each.

    An agent (:class:`connectsw.plugins.contracts.AgentProtocol`) has a ``name``
    (the ``agent:`` of a task), a ``description``, an optional pydantic
    ``input_model`` validating the task's ``with`` block when the plan is made, and
    ``run(ctx: TaskContext) -> AgentOutput`` (see :mod:`connectsw.agents.base`),
    which raises :class:`connectsw.core.errors.TaskError` to fail its attempt.
    Called once per process, when a registry is first needed.
    """


@hookspec
def register_workflows(register: Callable[[Any], None]) -> None:
    """Register workflows (decomposers): call ``register(workflow)`` for each.

    A workflow (:class:`connectsw.plugins.contracts.WorkflowProtocol`) has a
    ``name``, ``claims(intent) -> bool`` and ``decompose(intent, **options) ->
    Plan`` (it may raise :class:`connectsw.core.errors.PlanError`). The planner
    asks workflows in order, third-party ones first, and the first that claims an
    intent decomposes it (see :mod:`connectsw.core.workflows`). Called once per
    process, when a registry is first needed. Commands come from the workflows:
    ``commands = ("release",)`` (lowercase words) and ``kind = "release"`` make
    ``connectsw release v1.2`` a request planned by this workflow (intent
    ``release``, subject ``v1.2``), on the CLI and through ``POST /v1/execute``; a
    command another workflow has fails the later plugin. Register an instance, not
    the class (a class fails the plugin at once).
    """


@hookspec
def register_gates(register: Callable[[Any], None]) -> None:
    """Register quality-gate rules: call ``register(rule)`` for each.

    A rule has a ``name``, a ``description``, ``applies_to`` (the workspace traits
    it judges, :data:`connectsw.gates.detect.TRAITS`; shown by ``connectsw gates
    list``), ``applies(ctx) -> bool`` and ``evaluate(ctx) -> RuleResult`` (see
    :class:`connectsw.plugins.contracts.GateRuleProtocol`). A rule runs where a stage names it or
    where the rule set of the stage's checkpoint type (``[gates.rule_sets.TYPE]``)
    lists it; a rule that cannot run returns ``GateRule.not_run(reason)``.
    """


@hookspec
def register_embedders(register: Callable[[Any], None]) -> None:
    """Register embedders for project memory: call ``register(embedder)`` for each.

    An embedder has a ``name`` (the setting ``memory.embedder`` picks one), a
    ``dim`` (vector length) and ``embed(texts: Sequence[str]) -> numpy.ndarray``
    of shape ``(len(texts), dim)``, float32, each row of L2 norm 1 (zeros for a
    text with nothing to embed). It must give the same vector for the same text
    in every process, and load its model lazily (on the first ``embed``) and
    without the network. See :mod:`connectsw.core.memory_embedders`.
    """


@hookspec
def register_llm_providers(register: Callable[[Any], None]) -> None:
    """Register language-model providers: call ``register(provider)`` for each.

    A provider (:class:`connectsw.agents.llm.base.LLMProvider`) has a ``name`` (the
    value of the ``llm.provider`` setting that selects it), a ``description``,
    ``complete(messages, *, model, max_tokens, temperature, timeout) -> Completion``
    (text, tokens in and out, cost or None) and ``stream(...)`` with the same
    arguments, yielding text chunks then one :class:`~connectsw.agents.llm.base.Usage`.
    It raises :class:`connectsw.core.errors.LLMError` (one line, never a key).
    Built-ins: ``openai`` (any OpenAI-compatible chat-completions server) and
    ``anthropic``. Called once per process, when a registry is first needed.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``connectsw`` CLI with ``cli.add_command``.

    Each implementation is called on its own
    (:func:`connectsw.plugins.manager.add_plugin_commands`): one that raises keeps
    none of its commands and is reported by ``connectsw plugins``; using one of its
    commands is then a :class:`~connectsw.core.errors.PluginError` (exit 3) naming
    the plugin, its entry point, the exception and how to leave the plugin out. An
    exception in a command's own code is reported the same way. A command submits
    work with :func:`connectsw.submission.submit` (local and server mode).
    """


# -- events ----------------------------------------------------------------------
# Called once an event is persisted, in the process that persisted it: the
# engine's for almost every event; the Dask worker's for the start of a task that
# runs longer than 50 ms and for a failed attempt that will be retried (or a
# dependent's worker, which writes the records a task handed it ahead of its own,
# core/tasklog.py); each event once. Return values are ignored; an exception is
# logged and does not stop the execution.
# Each call is bounded (core/events.py): it runs in a daemon thread waited for at
# most CONNECTSW_PLUGIN_LISTENER_TIMEOUT seconds (default 10); past it one warning
# names the plugin and the hook, the command goes on and that listener is not
# called again in the process (issue 5, kind 7).


@hookspec
def on_execution_event(event: Event) -> None:
    """An execution changed state: ``execution.*`` and ``stage.*`` and ``gate.*`` events.

    Bounded: a call still running after ``CONNECTSW_PLUGIN_LISTENER_TIMEOUT`` seconds
    (default 10) is left behind with one warning; the command goes on.
    """


@hookspec
def on_task_event(event: Event) -> None:
    """A task attempt started, succeeded, failed, is being retried or was skipped.

    Bounded: a call still running after ``CONNECTSW_PLUGIN_LISTENER_TIMEOUT`` seconds
    (default 10) is left behind with one warning; the command goes on.
    """


@hookspec
def on_checkpoint_event(event: Event) -> None:
    """A checkpoint was reached (``checkpoint.reached``) or decided (``checkpoint.decided``).

    Bounded: a call still running after ``CONNECTSW_PLUGIN_LISTENER_TIMEOUT`` seconds
    (default 10) is left behind with one warning; the command goes on.
    """
