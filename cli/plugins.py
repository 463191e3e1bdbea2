"""Inspecting the installation: ``plugins`` and ``schema``.

``plugins`` lists every plugin found, including those that failed to load (with
their error and how to leave them out) and those ``CONNECTSW_LOAD_PLUGINS``
left out. It imports neither dask nor distributed.
"""

from __future__ import annotations

import textwrap
from typing import Any

import click
from rich.markup import escape

from connectsw.cli.context import console, json_option, print_json
from connectsw.plugins.manager import get_plugin_manager, plugin_infos

STATUS_STYLE = {"loaded": "green", "failed": "red", "skipped": "dim"}


@click.command("plugins")
@json_option
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins: where they come from, whether they loaded, their hooks, what they provide.

    \b
    JSON (stable): a list, built-ins first, of one object per plugin:
      name            entry-point name (a built-in: its module)
      builtin         true for ConnectSW's own plugins
      distribution    installed distribution's name, or null
      version         distribution's version, or null
      entry_point     the entry point's "module:attr", or null for a built-in
      status          "loaded", "failed" (nothing of it is used) or "skipped"
                      (left out by CONNECTSW_LOAD_PLUGINS, not imported)
      error           why it failed, one line ("register_agents failed:
                      KeyError: 'missing' (plugin.py:12)"), or null
      warnings        problems that did not stop it loading (one line each)
      hint            how to leave it out: the exact CONNECTSW_LOAD_PLUGINS value
      hooks           the hooks it implements
      agents, workflows, gates, embedders, llm_providers
                      names of what it registered
      registered      what it registered, described: {"agents": [{name,
                      description}], "workflows": [{name, description,
                      commands}], "gates": [...], "embedders": [...],
                      "llm_providers": [...], "commands": [{name, help}]}
                      (commands: the CLI commands its register_commands added)
    """
    from connectsw.plugins.manager import strict_deferred

    with strict_deferred():  # in strict mode: the whole listing, then the error (exit 3)
        _list(ctx, as_json)


def _list(ctx: click.Context, as_json: bool) -> None:
    # Loaded first: then asking for plugin commands does not look through every
    # installed distribution's entry points a second time (about 2 % of the listing).
    get_plugin_manager()
    add_commands = getattr(ctx.find_root().command, "add_plugin_commands", None)
    if callable(add_commands):  # the CLI commands plugins add are part of the listing
        add_commands()
    infos = plugin_infos()
    if as_json:
        print_json(infos)
        return
    # One block per plugin, wrapped to the terminal: a table would cut the long
    # names of built-in plugins at 80 columns.
    for info in infos:
        source = "built-in" if info["builtin"] else f"{info['distribution']} {info['version']}"
        status = info["status"]
        if info["warnings"] and status == "loaded":
            status = "loaded, warnings"
        console.print(
            f"[bold]{escape(info['name'])}[/bold]  {escape(source)}  "
            f"[{STATUS_STYLE[info['status']]}]{status}[/]",
            soft_wrap=True,
        )
        registered = info["registered"]
        lines = [("hooks", ", ".join(info["hooks"]))] if info["hooks"] else []
        lines += [
            (kind.replace("_", " "), ", ".join(_item(kind, item) for item in registered[kind]))
            for kind in ("agents", "workflows", "gates", "embedders", "llm_providers", "commands")
            if registered[kind]
        ]
        for label, text in lines:  # wrapped lines keep an indent
            wrapped = textwrap.fill(
                f"{label}: {text}",
                width=max(console.width, 40),
                initial_indent="  ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
            console.print(wrapped, markup=False, highlight=False, soft_wrap=True)
    problems = [i for i in infos if i["error"] or i["warnings"]]
    if problems:
        console.print("\n[bold]Problems[/bold]")
    for info in problems:
        lines = ([f"failed to load: {info['error']}"] if info["error"] else []) + info["warnings"]
        where = f" (entry point {info['entry_point']})" if info["entry_point"] else ""
        for line in lines:
            console.print(
                f"  {info['name']}{where}: {line}", markup=False, highlight=False, soft_wrap=True
            )
        if info["hint"]:
            console.print(
                f"    to leave it out: {info['hint']}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def _item(kind: str, item: dict[str, Any]) -> str:
    """A registered item in the text view: a workflow shows its commands."""
    commands = item.get("commands") if kind == "workflows" else None
    return f"{item['name']} ({', '.join(commands)})" if commands else str(item["name"])


@click.command("schema")
@click.option("--json", "as_json", is_flag=True, help="Accepted: the schema is JSON already.")
def schema(as_json: bool) -> None:
    """Print the JSON Schema of task-graph files."""
    from connectsw.core.taskgraph import json_schema

    print_json(json_schema())
