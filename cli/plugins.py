"""Inspecting the installation: ``plugins`` and ``schema``."""

from __future__ import annotations

import click
from rich.table import Table

from connectsw.cli.context import console, json_option, print_json
from connectsw.core.taskgraph import json_schema
from connectsw.plugins.manager import plugin_infos


@click.command("plugins")
@json_option
def plugins(as_json: bool) -> None:
    """List loaded plugins: where they come from, their hooks, what they provide."""
    infos = plugin_infos()
    if as_json:
        print_json(infos)
        return
    table = Table("plugin", "version", "hooks", "provides", box=None, header_style="bold")
    for info in infos:
        source = "built-in" if info["builtin"] else f"{info['distribution']} {info['version']}"
        provides = "; ".join(
            f"{kind}: {', '.join(info[kind])}"
            for kind in ("agents", "workflows", "gates")
            if info[kind]
        )
        table.add_row(info["name"], source, ", ".join(info["hooks"]), provides)
    console.print(table)


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of task-graph files."""
    print_json(json_schema())
