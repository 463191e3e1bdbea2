"""Registries of what plugins provide (agents, workflows, gate rules, embedders,
LLM providers).

Discovery hooks are called one implementation at a time, in pluggy's call order,
so every registered item is attributed to its plugin: a collision or an invalid
item fails that plugin (not the others), with an error naming both.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from connectsw.core.errors import ConnectSWError, PlanError, PluginError, one_line
from connectsw.plugins.manager import (
    DEFAULT_PLUGINS,
    UNFINISHED,
    PluginSource,
    broken_plugin_hint,
    call_bounded,
    check_strict,
    describe_error,
    fail_plugin,
    failed_may_provide,
    get_plugin_manager,
    hook_bound,
    left_out_plugins,
    plugin_sources,
    trace,
    trace_done,
)

T = TypeVar("T")
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")
COMMAND_RE = re.compile(r"^[a-z][a-z0-9-]*( [a-z][a-z0-9-]*)*$")
"""A workflow's command: lowercase words of letters, digits and '-', one space apart."""


def cli_command_words() -> frozenset[str]:
    """The CLI's built-in top-level command names (``status``, ``fix``, ``new``...): a
    plugin workflow's command may not start with one (the built-in command would
    answer), but for ``new``, whose group workflow commands join."""
    from connectsw.cli.commands import COMMANDS

    return frozenset(COMMANDS)


def workflow_commands(workflow: Any, plugin: str | None = None) -> list[str]:
    """The command words a workflow claims (its ``commands`` attribute), normalised.

    ``commands`` is an optional sequence of strings such as ``("release",)`` or
    ``("fix", "fix bug")``: ``connectsw release v1.2`` becomes a request with command
    ``release``, planned by that workflow. Words are lower-cased and single-spaced.

    Raises:
        PluginError: (only when ``plugin`` is given, at registration) ``commands``
            is not a list or tuple of such words.
    """
    raw = getattr(workflow, "commands", None) or ()
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        if plugin is None:
            return []
        raise PluginError(
            f'Plugin "{plugin}" registered workflow "{workflow.name}" whose commands is not a '
            f'list or tuple of strings (e.g. commands = ("release",))'
        )
    commands = []
    for command in raw:
        words = " ".join(command.lower().split()) if isinstance(command, str) else ""
        if not COMMAND_RE.match(words):
            if plugin is None:
                continue
            raise PluginError(
                f'Plugin "{plugin}" registered workflow "{workflow.name}" with an invalid '
                f"command {command!r} (lowercase words of letters, digits and '-')"
            )
        commands.append(words)
    return list(dict.fromkeys(commands))


def check_applies_to(rule: Any, name: str, plugin: str) -> None:
    """Refuse a gate rule whose ``applies_to`` is not a list or tuple of known traits.

    The traits are a closed set (:data:`connectsw.gates.detect.TRAITS`): a misspelt one
    (``"pyhton"``) would make the rule "not applicable", so pass, on every workspace.

    Raises:
        PluginError: one line naming the plugin, the rule and the known traits.
    """
    from connectsw.gates.detect import TRAITS

    raw = getattr(rule, "applies_to", ())
    known = ", ".join(TRAITS)
    if isinstance(raw, str) or not isinstance(raw, list | tuple | frozenset | set):
        raise PluginError(
            f'Plugin "{plugin}" registered gate rule "{name}" whose applies_to is not a '
            f'tuple of traits (e.g. applies_to = ("python",); known: {known})'
        )
    unknown = [t for t in raw if not isinstance(t, str) or t not in TRAITS]
    if unknown:
        raise PluginError(
            f'Plugin "{plugin}" registered gate rule "{name}" with unknown applies_to '
            f"{unknown[0]!r} (known: {known})"
        )


def workflow_kind(workflow: Any) -> str:
    """The intent kind a workflow's commands produce: its ``kind``, else its ``name``."""
    kind = getattr(workflow, "kind", "")
    return kind if isinstance(kind, str) and kind else str(workflow.name)


@dataclass
class Registry(Generic[T]):
    """Named items of one kind, in registration order, with the plugin of each."""

    kind: str
    required: tuple[str, ...]
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def add(self, item: T, plugin: str) -> None:
        """Validate and add ``item``, registered by ``plugin``.

        Raises:
            PluginError: one line naming the plugin: a class given instead of an
                instance, an invalid name, a missing method, a name (or, for a
                workflow, a command) another item already has.
        """
        if isinstance(item, type):
            article = "an" if self.kind[0] in "aeiouAEIOUL" else "a"
            raise PluginError(
                f'Plugin "{plugin}" registered the class {item.__name__} as {article} '
                f"{self.kind}; register an instance: register({item.__name__}())"
            )
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(
                f'Plugin "{plugin}" registered a {self.kind} with an invalid name {name!r} '
                "(lowercase letters, digits, '-', '_', '.')"
            )
        missing = [a for a in self.required if not callable(getattr(item, a, None))]
        if missing:
            raise PluginError(
                f'Plugin "{plugin}" registered {self.kind} "{name}" without {", ".join(missing)}()'
            )
        if self.kind == "agent":
            _check_agent(item, name, plugin)
        if self.kind == "gate rule":
            check_applies_to(item, name, plugin)
            _check_rule_limits(item, name, plugin)
        if name in self.items:
            raise PluginError(
                f'{self.kind.capitalize()} "{name}" from plugin "{plugin}" collides with the one '
                f'from plugin "{self.owners[name]}"'
            )
        if self.kind == "workflow":
            commands = workflow_commands(item, plugin)
            for other_name, other in self.items.items():
                taken = set(commands) & set(workflow_commands(other))
                if taken:
                    raise PluginError(
                        f'Command "{min(taken)}" of workflow "{name}" from plugin "{plugin}" '
                        f'collides with workflow "{other_name}" from plugin '
                        f'"{self.owners[other_name]}"'
                    )
        self.items[name] = item
        self.owners[name] = plugin

    def get(self, name: str) -> T | None:
        """The item called ``name``, or None."""
        return self.items.get(name)

    def names_of(self, plugin: str) -> list[str]:
        """Names registered by ``plugin``."""
        return [n for n, p in self.owners.items() if p == plugin]

    def items_of(self, plugin: str) -> list[T]:
        """Items registered by ``plugin``, in registration order."""
        return [self.items[n] for n in self.names_of(plugin)]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items.values())

    def __contains__(self, name: object) -> bool:
        return name in self.items


ISOLATIONS = ("process", "thread")
"""Where an agent runs: a forked process (default) or a thread of the worker."""


def _check_rule_limits(rule: Any, name: str, plugin: str) -> None:
    """Refuse a gate rule whose ``isolation`` or ``timeout`` would fail only when a gate
    runs (a typo such as ``"proces"``, a timeout of ``"30"``, ``-1``, NaN or ``True``).

    Raises:
        PluginError: one line naming the plugin, the rule and what is expected.
    """
    where = f'Plugin "{plugin}" registered gate rule "{name}"'
    isolation = getattr(rule, "isolation", "process")
    if isolation not in ISOLATIONS:
        raise PluginError(f"{where} with isolation {isolation!r} (one of: {', '.join(ISOLATIONS)})")
    timeout = getattr(rule, "timeout", None)
    if timeout is not None and not _positive_seconds(timeout):
        shown = repr(timeout)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise PluginError(
            f"{where} with timeout {shown} (seconds: a finite number above 0, or None)"
        )


def _positive_seconds(value: Any) -> bool:
    """Whether ``value`` is a finite number of seconds above 0 (not a bool; an int past
    a float's range is not: ``10**400`` raised OverflowError when a gate ran)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return math.isfinite(seconds) and seconds > 0


def _check_agent(item: Any, name: str, plugin: str) -> None:
    """Refuse an agent that would fail only at run time (one line naming the plugin).

    Raises:
        PluginError: ``isolation`` is not one of :data:`ISOLATIONS`; ``input_model``
            is not a pydantic model class; ``run`` is the ``Agent`` base class's own.
    """
    from pydantic import BaseModel

    from connectsw.agents.base import Agent

    where = f'Plugin "{plugin}" registered agent "{name}"'
    isolation = getattr(item, "isolation", "process")
    if isolation not in ISOLATIONS:
        raise PluginError(f"{where} with isolation {isolation!r} (one of: {', '.join(ISOLATIONS)})")
    model = getattr(item, "input_model", None)
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(
            f"{where} whose input_model is {model!r}, not a pydantic model class "
            "(subclass connectsw.AgentInput)"
        )
    if isinstance(item, Agent) and type(item).run is Agent.run:
        raise PluginError(f"{where} without its own run(ctx) (Agent.run only raises)")


@dataclass
class Registries:
    """Everything the loaded plugins registered.

    ``failures`` maps each plugin whose ``register_*`` hooks failed to its error
    (nothing it registered is kept); ``offered`` maps it to what it tried to
    register, by kind. ``broken`` lists every plugin that failed to load, for
    the planner's messages (filled by :func:`get_registries`).
    """

    agents: Registry[Any]
    workflows: Registry[Any]
    gates: Registry[Any]
    embedders: Registry[Any] = field(default_factory=lambda: Registry("embedder", ("embed",)))
    llm_providers: Registry[Any] = field(
        default_factory=lambda: Registry("LLM provider", ("complete", "stream"))
    )
    failures: dict[str, str] = field(default_factory=dict)
    offered: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    broken: list[PluginSource] = field(default_factory=list)

    def unknown_error(
        self, kind: str, name: str, message: str, error: type[ConnectSWError] = PlanError
    ) -> ConnectSWError:
        """The error for an unknown ``kind`` called ``name``: ``message`` and the hint.

        A :class:`PluginError` (exit 3) when a plugin that failed to load may provide
        it (the fault is that plugin's); else ``error`` (e.g. :class:`PlanError`, exit 2).
        """
        hint = self.unknown_hint(kind, name)
        if failed_may_provide(kind, name, self.broken) or _unmarked(kind):
            return PluginError(message + hint)
        return error(message + hint)

    def unknown_hint(self, kind: str, name: str) -> str:
        """What to tell a user about an unknown ``kind`` called ``name`` (may be empty).

        Names the failed plugins that may provide it, the loaded plugins whose hook
        function for that kind is not marked ``@connectsw.hookimpl`` (so never called),
        and the plugins ``CONNECTSW_LOAD_PLUGINS`` left out that do provide it, with
        the setting that includes them.
        """
        unmarked = "".join(f"; {clause} {kind}" for clause in _unmarked(kind))
        return broken_plugin_hint(kind, name, self.broken, left_out_plugins()) + unmarked

    def workflow_commands(self) -> dict[str, Any]:
        """Every command a registered workflow claims -> that workflow (no two share one)."""
        return {c: wf for wf in self.workflows for c in workflow_commands(wf)}


HOOKS: tuple[tuple[str, str], ...] = (
    ("register_agents", "agents"),
    ("register_workflows", "workflows"),
    ("register_gates", "gates"),
    ("register_embedders", "embedders"),
    ("register_llm_providers", "llm_providers"),
)
KINDS = {
    "agents": "agent",
    "workflows": "workflow",
    "gates": "gate rule",
    "embedders": "embedder",
    "llm_providers": "LLM provider",
}
"""Registries' attribute -> the kind of item (as messages name it)."""


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Ask every plugin what it provides; a plugin that fails is left out whole.

    Each plugin's ``register_*`` implementations are called on their own, in
    pluggy's call order, each bounded (:func:`connectsw.plugins.manager.hook_bound`,
    issue 5, kind 7). A plugin that raises, does not return in time, registers an
    invalid item or an item whose name another plugin already has (built-ins have
    it first) is recorded in :attr:`Registries.failures` and none of its items are
    kept; one whose hook did not return is asked nothing more, and what its
    abandoned call registers later is ignored.
    """
    regs = Registries(
        agents=Registry(KINDS["agents"], ("run",)),
        workflows=Registry(KINDS["workflows"], ("claims", "decompose")),
        gates=Registry(KINDS["gates"], ("applies", "evaluate")),
    )
    # 1. ask each plugin, checking each item on its own (scratch registries)
    offered: dict[str, dict[str, list[Any]]] = {}
    unfinished: dict[str, set[str]] = {}  # plugin -> registries whose hook raised
    stuck: set[str] = set()  # plugins whose hook did not return: asked no more
    order: dict[str, list[str]] = {}
    for hook_name, attr in HOOKS:
        caller: pluggy.HookCaller = getattr(pm.hook, hook_name)
        # pluggy calls the last-registered implementation first; keep that order.
        order[attr] = []
        for impl in reversed(caller.get_hookimpls()):
            plugin = impl.plugin_name
            order[attr].append(plugin)
            if plugin in stuck:
                unfinished[plugin].add(attr)
                continue
            items = offered.setdefault(plugin, {}).setdefault(attr, [])
            scratch: Registry[Any] = Registry(
                getattr(regs, attr).kind, getattr(regs, attr).required
            )
            trace(hook_name, plugin, "call")
            started = time.perf_counter()

            def register(
                item: Any,
                scratch: Registry[Any] = scratch,
                plugin: str = plugin,
                hook: str = hook_name,
            ) -> None:
                if plugin in stuck:
                    return  # an abandoned call, registering late: nothing of it is used
                scratch.add(item, plugin)
                commands = workflow_commands(item) if scratch.kind == "workflow" else []
                also = f" (commands: {', '.join(commands)})" if commands else ""
                trace(hook, plugin, f'registered {scratch.kind} "{item.name}"{also}')

            bound, late = hook_bound(hook_name)
            try:
                returned = call_bounded(
                    impl.function, {"register": register}, bound, f"hook-{plugin}"
                )
            except PluginError as exc:
                regs.failures.setdefault(plugin, one_line(exc))
                trace(hook_name, plugin, f"failed: {one_line(exc)}")
                unfinished.setdefault(plugin, set()).add(attr)
            except BaseException as exc:  # a hook may even sys.exit()
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = describe_error(exc, where=True)
                regs.failures.setdefault(plugin, f"{hook_name} failed: {error}")
                trace(hook_name, plugin, f"failed: {error}")
                unfinished.setdefault(plugin, set()).add(attr)
            else:
                if returned is UNFINISHED:
                    stuck.add(plugin)
                    regs.failures[plugin] = late  # this is why, whatever failed before
                    trace(hook_name, plugin, f"failed: {late}")
                    unfinished.setdefault(plugin, set()).add(attr)
                    continue
                trace_done(hook_name, plugin, started, f" ({len(scratch.items)} registered)")
            items.extend(scratch)
    # 2. collisions: built-ins claim their names first, then the others in call order
    plugins = list(dict.fromkeys(p for attr in order for p in order[attr]))
    builtin = set(DEFAULT_PLUGINS)
    plugins.sort(key=lambda p: p not in builtin)
    claimed: dict[str, dict[str, str]] = {attr: {} for _h, attr in HOOKS}
    commands: dict[str, tuple[str, str]] = {}  # command -> (workflow, plugin)
    for plugin in plugins:
        if plugin in regs.failures:
            continue
        clash = next(
            (
                (attr, item.name)
                for attr, items in offered.get(plugin, {}).items()
                for item in items
                if item.name in claimed[attr]
            ),
            None,
        )
        if clash is not None:
            attr, name = clash
            kind = getattr(regs, attr).kind
            other = claimed[attr][name]
            regs.failures[plugin] = (
                f'{kind.capitalize()} "{name}" from plugin "{plugin}" collides with the one '
                f'from plugin "{other}"'
            )
            if other not in builtin:
                # Neither third-party plugin may take the name: the one asked first is
                # not more right than the other, and a new install must not silently
                # replace what a plan used.
                regs.failures.setdefault(
                    other,
                    f'{kind.capitalize()} "{name}" from plugin "{other}" collides with the one '
                    f'from plugin "{plugin}"',
                )
            trace("register", plugin, f"failed: {regs.failures[plugin]}")
            if other in regs.failures:
                trace("register", other, f"failed: {regs.failures[other]}")
            continue
        taken = next(
            (
                (command, wf.name)
                for wf in offered.get(plugin, {}).get("workflows", [])
                for command in workflow_commands(wf)
                if command in commands
            ),
            None,
        )
        if taken is not None:
            command, name = taken
            other_workflow, other = commands[command]
            regs.failures[plugin] = (
                f'Command "{command}" of workflow "{name}" from plugin "{plugin}" collides with '
                f'workflow "{other_workflow}" from plugin "{other}"'
            )
            if other not in builtin:  # as for names: neither third-party plugin takes it
                regs.failures.setdefault(
                    other,
                    f'Command "{command}" of workflow "{other_workflow}" from plugin "{other}" '
                    f'collides with workflow "{name}" from plugin "{plugin}"',
                )
            trace("register", plugin, f"failed: {regs.failures[plugin]}")
            continue
        shadowed = (
            None
            if plugin in builtin
            else next(
                (
                    (command, wf.name)
                    for wf in offered.get(plugin, {}).get("workflows", [])
                    for command in workflow_commands(wf)
                    if command.split()[0] in cli_command_words() and command.split()[0] != "new"
                ),
                None,
            )
        )
        if shadowed is not None:
            command, name = shadowed
            regs.failures[plugin] = (
                f'Command "{command}" of workflow "{name}" from plugin "{plugin}" starts with the'
                f' built-in command "{command.split()[0]}" (only "new ..." can be added to a'
                " built-in command)"
            )
            continue
        for attr, items in offered.get(plugin, {}).items():
            for item in items:
                claimed[attr][item.name] = plugin
        for wf in offered.get(plugin, {}).get("workflows", []):
            for command in workflow_commands(wf):
                commands[command] = (wf.name, plugin)
    # 3. keep the items of the plugins that did not fail, in call order
    for _hook, attr in HOOKS:
        registry = getattr(regs, attr)
        for plugin in order[attr]:
            if plugin not in regs.failures:
                for item in offered[plugin][attr]:
                    registry.add(item, plugin)
    for plugin in regs.failures:
        regs.offered[plugin] = _offered(pm, plugin, offered.get(plugin, {}), unfinished)
    return regs


def _offered(
    pm: pluggy.PluginManager,
    plugin: str,
    items: dict[str, list[Any]],
    unfinished: dict[str, set[str]],
) -> dict[str, list[str]]:
    """What a failed plugin registered, by kind, for the kinds whose list is complete.

    A kind whose hook raised is missing (the plugin may have had more of it); so is
    ``command`` when its workflows are unfinished or it adds CLI commands of its own
    (``register_commands`` is not asked once a plugin failed).
    """
    raised = unfinished.get(plugin, set())
    known = {
        KINDS[attr]: [i.name for i in items.get(attr, [])]
        for _h, attr in HOOKS
        if attr not in raised
    }
    module = pm.get_plugin(plugin)
    adds_commands = module is not None and any(
        h.name == "register_commands" for h in pm.get_hookcallers(module) or []
    )
    if "workflows" not in raised and not adds_commands:
        known["command"] = [c for wf in items.get("workflows", []) for c in workflow_commands(wf)]
    return known


KIND_HOOKS = {
    **{KINDS[attr]: (hook,) for hook, attr in HOOKS},
    "command": ("register_workflows", "register_commands"),
}
"""The kind of an item -> the hooks that register it."""


def _unmarked(kind: str) -> list[str]:
    """``plugin "x" has a function register_agents that is not marked ...; it may
    provide this`` for each loaded plugin whose hook for ``kind`` pluggy ignored."""
    clauses = []
    for source in plugin_sources():
        for hook in KIND_HOOKS.get(kind, ()):
            if any(w.startswith(f"function {hook} is ") for w in source.warnings):
                clauses.append(
                    f'plugin "{source.name}" has a function {hook} that is not marked '
                    "@connectsw.hookimpl, so it was never called; it may provide this"
                )
    return clauses


_lock = threading.Lock()
_registries: Registries | None = None


def get_registries() -> Registries:
    """The registries of the process's plugin manager (built once).

    A plugin that failed in a ``register_*`` hook is recorded as failed (see
    :func:`connectsw.plugins.manager.fail_plugin`); in strict mode that is a
    :class:`PluginError`.
    """
    global _registries
    pm = get_plugin_manager()
    with _lock:
        if _registries is None:
            regs = build_registries(pm)
            for plugin, error in regs.failures.items():
                fail_plugin(plugin, error, regs.offered.get(plugin))
            check_strict()
            regs.broken = [s for s in plugin_sources() if s.status == "failed"]
            _registries = regs
        return _registries


def reset_registries() -> None:
    """Forget the registries (after the plugin manager is reset)."""
    global _registries
    with _lock:
        _registries = None
