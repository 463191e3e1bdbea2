"""CLI commands for the commands plugin workflows claim (``connectsw release v1.2``).

A workflow declares its command words (``commands = ("release",)``, see
:func:`connectsw.plugins.registry.workflow_commands`); each becomes a command that
takes the request's text and the options of the built-in submitting commands
(``--yes``, ``--workspace``, ``--plan-only``, ``--json``) and submits as they do.
One word is a top-level command; more words make a group per first word (a first
word that is a built-in group, such as ``new``, adds to that group). Built-in
workflows' commands are the built-in commands themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connectsw.cli.context import State

BUILTIN_COMMANDS = frozenset({"new product", "new feature", "fix", "fix bug", "run"})
"""Workflow commands the CLI has its own commands for (cli/submit.py)."""


def _plugin_commands() -> dict[str, Any]:
    from connectsw.plugins.registry import get_registries

    table = get_registries().workflow_commands()
    return {c: wf for c, wf in table.items() if c not in BUILTIN_COMMANDS}


def first_words() -> list[str]:
    """The first words of the commands plugin workflows claim, sorted."""
    return sorted({c.split()[0] for c in _plugin_commands()})


def _command(name: str, words: str, workflow: Any) -> click.Command:
    from connectsw.cli.submit import submit, submit_options

    description = getattr(workflow, "description", "")
    text = description if isinstance(description, str) and description else ""

    @click.command(name, help=text or f"Submit a request to the {workflow.name} workflow.")
    @click.argument("text", nargs=-1, required=True)
    @submit_options
    def command(state: State, text: tuple[str, ...], workspace: Path | None, **flags: bool) -> None:
        submit(state, words, " ".join(text), workspace or Path.cwd(), **flags)

    return command


def add_workflow_commands(group: click.Group, prefix: list[str]) -> None:
    """Add to ``group`` (reached by the words ``prefix``) the workflow commands under it."""
    for words, workflow in sorted(_plugin_commands().items()):
        parts = words.split()
        if len(parts) != len(prefix) + 1 or parts[: len(prefix)] != prefix:
            continue
        if parts[-1] not in group.commands:
            group.add_command(_command(parts[-1], words, workflow))


def workflow_command(name: str) -> click.Command | None:
    """The command for workflow commands starting with the word ``name``, or None.

    Raises:
        PlanError: no loaded workflow claims it, but a plugin that failed or that
            ``CONNECTSW_LOAD_PLUGINS`` left out may: the error names it and the fix.
    """
    from connectsw.core.planner import unknown_command
    from connectsw.plugins.registry import get_registries

    commands = _plugin_commands()
    if name in commands:
        return _command(name, name, commands[name])
    longer = sorted(c for c in commands if c.split()[0] == name)
    if longer:
        group = click.Group(name, help=f"Workflow commands: {', '.join(longer)}.")
        _fill(group, [name], longer, commands)
        return group
    registries = get_registries()
    if registries.unknown_hint("command", name):
        raise unknown_command(name, registries)
    return None


def _fill(
    group: click.Group, prefix: list[str], commands: list[str], table: dict[str, Any]
) -> None:
    """Add sub-commands and sub-groups of ``group`` for ``commands`` (all under ``prefix``)."""
    depth = len(prefix)
    for word in sorted({c.split()[depth] for c in commands}):
        under = [c for c in commands if c.split()[depth] == word]
        exact = " ".join([*prefix, word])
        if exact in under:
            group.add_command(_command(word, exact, table[exact]))
        else:
            sub = click.Group(word, help=f"Workflow commands: {', '.join(under)}.")
            _fill(sub, [*prefix, word], under, table)
            group.add_command(sub)
