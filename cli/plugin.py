"""``connectsw plugin new NAME``: write a complete plugin distribution for a plugin author.

The files come from templates under ``connectsw/plugins/templates/`` (``common/``
for every kind, then one folder per kind), filled with :class:`string.Template`
(standard library; ``$name``-style placeholders do not clash with Python's braces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import click

from connectsw.cli.context import console, json_option, print_json
from connectsw.core.errors import InvalidInput
from connectsw.core.textfiles import check_path

KINDS = ("agent", "gate", "workflow")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 40
TEMPLATES = Path(__file__).resolve().parent.parent / "plugins" / "templates"


@dataclass(frozen=True)
class PluginNames:
    """How a plugin called ``name`` is spelled in each place."""

    name: str  # entry point and registered name: "my-agent"
    distribution: str  # "connectsw-my-agent"
    module: str  # "connectsw_my_agent"
    cls: str  # "MyAgent"
    kind_id: str  # an Intent kind for a workflow: "my_agent"


def _reserved() -> set[str]:
    """Names a generated module or test uses: a plugin class must not hide them."""
    import builtins
    import keyword

    import connectsw

    return {*connectsw.__all__, *keyword.kwlist, *dir(builtins), "Any", "Callable"}


def plugin_names(name: str) -> PluginNames:
    """Check ``name`` and derive the others from it.

    Raises:
        InvalidInput: not lowercase words of letters and digits joined by ``-``,
            longer than :data:`MAX_NAME`, or a class name that would hide a name the
            generated code uses (``agent`` -> ``Agent``, ``none`` -> ``None``).
    """
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid plugin name {name[: MAX_NAME + 1]!r}: lowercase letters and digits in "
            f"words joined by '-', starting with a letter, at most {MAX_NAME} characters "
            "(e.g. my-agent)"
        )
    base = name.removeprefix("connectsw-") or name
    words = base.split("-")
    cls = "".join(w.capitalize() for w in words)
    if cls in _reserved():
        raise InvalidInput(
            f"invalid plugin name {name!r}: its class {cls} would hide Python's or "
            f"connectsw's {cls}"
        )
    return PluginNames(
        name=base,
        distribution=f"connectsw-{base}",
        module="connectsw_" + "_".join(words),
        cls=cls,
        kind_id="_".join(words),
    )


USAGE = {
    "agent": (
        "A task graph (`connectsw run graph.yaml`) names the agent:\n\n"
        "```yaml\nname: try-$name\ntasks:\n  - id: write\n    agent: $name\n"
        '    with: {text: "Hello", output: hello.md}\n```'
    ),
    "gate": (
        "A task graph lists the rule in `gates` (or a checkpoint's `gates`), or the\n"
        'settings add it to a rule set (`[gates.rule_sets.TYPE] rules = ["$name"]`);\n'
        "`connectsw gates check --rule $name` runs it on the current directory."
    ),
    "workflow": (
        '`connectsw $name "..." [--yes] [--plan-only] [--json]` submits a request to it\n'
        "(its `commands`); it claims requests whose intent kind is `$kind_id`, and its\n"
        "plan is a note (product-manager), a checkpoint, then a check."
    ),
}


def _not_taken(kind: str, name: str) -> None:
    """Refuse a name the loaded plugins already registered for ``kind`` (a built-in's):
    the new plugin would collide with it and never load."""
    from connectsw.plugins.registry import get_registries

    registry = getattr(
        get_registries(), {"agent": "agents", "gate": "gates"}.get(kind, "workflows")
    )
    if name in registry:
        raise InvalidInput(
            f'invalid plugin name {name!r}: plugin "{registry.owners[name]}" already registers '
            f"{'an' if registry.kind[0] in 'aeiou' else 'a'} {registry.kind} called {name!r}"
        )
    if kind == "workflow":
        from connectsw.plugins.registry import cli_command_words

        if (
            name in cli_command_words()
            or name in get_registries().workflow_commands()
            or name in _plugin_cli_commands()
        ):
            raise InvalidInput(
                f"invalid plugin name {name!r}: `connectsw {name}` is already a command, and a"
                " workflow plugin claims its name as its command"
            )


def _plugin_cli_commands() -> set[str]:
    """The CLI commands installed plugins add (``register_commands``), when run from the CLI."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().command if ctx is not None else None
    add = getattr(root, "add_plugin_commands", None)
    if not isinstance(root, click.Group) or not callable(add):
        return set()
    add()
    return set(root.commands)


def render(kind: str, names: PluginNames) -> dict[str, str]:
    """Relative path -> text of every file of a new ``kind`` plugin."""
    values: dict[str, Any] = {**names.__dict__, "kind": kind}
    values["usage"] = Template(USAGE[kind]).substitute(values)
    files = {
        "pyproject.toml": TEMPLATES / "common" / "pyproject.toml.tmpl",
        "README.md": TEMPLATES / "common" / "README.md.tmpl",
        f"{names.module}.py": TEMPLATES / kind / "module.py.tmpl",
        f"tests/test_{names.module}.py": TEMPLATES / kind / "test_module.py.tmpl",
    }
    return {
        path: Template(source.read_text(encoding="utf-8")).substitute(values)
        for path, source in files.items()
    }


def write_plugin(directory: Path, kind: str, name: str) -> tuple[PluginNames, list[str]]:
    """Write a new plugin distribution into ``directory`` (created; must be empty).

    Raises:
        InvalidInput: an invalid name or kind, or ``directory`` exists and is not an
            empty folder.
    """
    if kind not in KINDS:
        raise InvalidInput(f"unknown plugin kind {kind!r} (kinds: {', '.join(KINDS)})")
    names = plugin_names(name)
    _not_taken(kind, names.name)
    files = render(kind, names)
    with check_path(str(directory), InvalidInput):  # a name too long...: core/textfiles.py
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise InvalidInput(
                f"{directory} already exists and is not empty: choose another --directory"
            )
        for relpath, text in files.items():
            target = directory / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return names, sorted(files)


@click.group("plugin")
def plugin_group() -> None:
    """Plugin authors: start a new plugin distribution (`plugin new NAME`)."""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="agent",
    show_default=True,
    help="What the plugin registers.",
)
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: ./NAME); must not exist or be empty.",
)
@json_option
def new(name: str, kind: str, directory: Path | None, as_json: bool) -> None:
    """Write a plugin distribution: pyproject with the `connectsw` entry point, the
    module, a README and tests that use connectsw.testing; it installs and its tests
    pass as written."""
    target = directory if directory is not None else Path(name)
    names, files = write_plugin(target, kind, name)
    if as_json:
        print_json(
            {
                "name": names.name,
                "kind": kind,
                "directory": str(target.resolve()),
                "distribution": names.distribution,
                "module": names.module,
                "entry_point": f"{names.name} = {names.module}",
                "files": files,
            }
        )
        return
    console.print(f"Wrote {names.distribution} ({kind} {names.name!r}) in {target}:", markup=False)
    for path in files:
        console.print(f"  {path}", markup=False)
    console.print(f"Next: pip install -e '{target}[test]' && (cd {target} && pytest)", markup=False)
