"""Inspecting the installation: ``plugins`` and ``schema``.

``plugins`` lists every plugin found, including those that failed to load (with
their error and how to leave them out) and those ``CONNECTSW_LOAD_PLUGINS``
left out. It imports neither dask nor distributed.
"""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from connectsw.cli.context import console, json_option, print_json
from connectsw.plugins.manager import plugin_infos

STATUS_STYLE = {"loaded": "green", "failed": "red", "skipped": "dim"}


@click.command("plugins")
@json_option
def plugins(as_json: bool) -> None:
    """List plugins: where they come from, whether they loaded, their hooks, what they provide.

    JSON: a list of objects with name, builtin, distribution, version, status
    (loaded, failed, skipped), error, warnings, hint (how to leave it out), hooks,
    agents, workflows, gates, embedders and llm_providers.
    """
    infos = plugin_infos()
    if as_json:
        print_json(infos)
        return
    table = Table("plugin", "version", "status", "hooks", "provides", box=None, header_style="bold")
    for info in infos:
        source = "built-in" if info["builtin"] else f"{info['distribution']} {info['version']}"
        provides = "; ".join(
            f"{kind}: {', '.join(info[kind])}"
            for kind in ("agents", "workflows", "gates", "embedders", "llm_providers")
            if info[kind]
        )
        status = info["status"]
        if info["warnings"] and status == "loaded":
            status = "loaded, warnings"
        table.add_row(
            escape(info["name"]),
            escape(source),
            f"[{STATUS_STYLE[info['status']]}]{status}[/]",
            ", ".join(info["hooks"]),
            escape(provides),
        )
    console.print(table)
    problems = [i for i in infos if i["error"] or i["warnings"]]
    if problems:
        console.print("\n[bold]Problems[/bold]")
    for info in problems:
        lines = ([f"failed to load: {info['error']}"] if info["error"] else []) + info["warnings"]
        for line in lines:
            console.print(
                f"  {info['name']}: {line}", markup=False, highlight=False, soft_wrap=True
            )
        if info["hint"]:
            console.print(
                f"    to leave it out: {info['hint']}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


@click.command("schema")
@click.option("--json", "as_json", is_flag=True, help="Accepted: the schema is JSON already.")
def schema(as_json: bool) -> None:
    """Print the JSON Schema of task-graph files."""
    from connectsw.core.taskgraph import json_schema

    print_json(json_schema())
