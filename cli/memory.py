"""``connectsw memory ...``: a project's remembered decisions, architecture notes,
patterns and preferences (issue 8; reference §2.2)."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import click

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.render import id_table, line
from connectsw.core.wording import counted

if TYPE_CHECKING:
    from connectsw.core.memory import Memory, MemoryRecord

TYPES = ("decision", "architecture", "pattern", "preference")


def _memory(state: State) -> Memory:
    from connectsw.core.memory import open_memory

    return open_memory(state.settings)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_records(records: list[MemoryRecord]) -> None:
    if not records:
        console.print("No memories.")
        return
    table = id_table("id", "project", "type", "updated", "user", "content")
    for r in records:
        table.add_row(
            r.id,
            line(r.project),
            r.type,
            f"{r.updated_at:%Y-%m-%d %H:%M}",
            line(r.user),
            line(_short(r.content)),
        )
    console.print(table)


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return ""


@click.group("memory")
def memory_group() -> None:
    """Project memory: add, search, list, forget; export or purge a user's (GDPR)."""


@memory_group.command("add")
@click.option("--project", "-p", required=True, help="The project (a plan's name).")
@click.option("--type", "kind", required=True, type=click.Choice(TYPES), help="What it is.")
@click.option("--source", default="", help="Where it comes from (a path, a URL).")
@click.option("--user", default=None, help="Whose it is (default: your login name).")
@click.option("--supersedes", default=None, help="Id of the memory this one replaces.")
@click.argument("text")
@json_option
@pass_state
def add(
    state: State,
    project: str,
    kind: str,
    source: str,
    user: str | None,
    supersedes: str | None,
    text: str,
    as_json: bool,
) -> None:
    """Remember TEXT for a project. A decision from the same source, or one nearly the
    same, supersedes the earlier one."""
    record = _memory(state).remember(
        project, kind, text, source, _default_user() if user is None else user, supersedes
    )
    if as_json:
        print_json(record.to_api())
        return
    console.print(line("Remembered ", (record.id, "bold"), f" ({record.type} of ", project, ")"))


@memory_group.command("search")
@click.option("--project", "-p", required=True, help="The project to search.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
@click.argument("query")
@json_option
@pass_state
def search(state: State, project: str, limit: int, query: str, as_json: bool) -> None:
    """The project's memories best matching QUERY (meaning and words), best first."""
    hits = _memory(state).search(project, query, limit)
    if as_json:
        print_json([h.to_api() for h in hits])
        return
    if not hits:
        console.print("No memories.")
        return
    table = id_table("id", "relevance", "type", "source", "content")
    for h in hits:
        table.add_row(h.id, f"{h.relevance:.2f}", h.type, line(h.source), line(_short(h.content)))
    console.print(table)


@memory_group.command("list")
@click.option("--project", "-p", default=None, help="Only this project's memories.")
@click.option("--superseded", is_flag=True, help="Also the memories that were replaced.")
@json_option
@pass_state
def list_memories(state: State, project: str | None, superseded: bool, as_json: bool) -> None:
    """List memories, oldest first."""
    records = _memory(state).records(project=project, superseded=superseded)
    if as_json:
        print_json([r.to_api() for r in records])
        return
    _print_records(records)


@memory_group.command("forget")
@click.argument("memory_id")
@json_option
@pass_state
def forget(state: State, memory_id: str, as_json: bool) -> None:
    """Remove one memory for good (its text and vector leave the disk)."""
    record = _memory(state).forget(memory_id)
    if as_json:
        print_json({"forgotten": record.to_api()})
        return
    console.print(line("Forgot ", (record.id, "bold"), " (", record.project, ")"))


@memory_group.command("export")
@click.option("--user", required=True, help="The user whose memories are exported.")
@json_option
@pass_state
def export(state: State, user: str, as_json: bool) -> None:
    """Print everything stored about a user as JSON (superseded memories too; the output
    is JSON with or without --json)."""
    print_json([r.to_api() for r in _memory(state).export(user)])


@memory_group.command("purge")
@click.option("--user", required=True, help="The user whose memories are removed.")
@json_option
@pass_state
def purge(state: State, user: str, as_json: bool) -> None:
    """Remove every memory of a user for good: rows, vectors and old versions."""
    count = _memory(state).purge(user)
    if as_json:
        print_json({"user": user, "purged": count})
        return
    console.print(line(f"Purged {counted(count, 'memory', 'memories', zero='0')} of ", user))
