"""Nothing public goes undocumented or untested (datasette's tests/test_docs.py idea).

- every hook has a section in docs/plugins.md (a heading ``### `name(...)```) and a
  test that implements it (``def name(`` in test code outside tests/docs);
- every name of ``connectsw.__all__`` is in docs/plugins.md (as `` `name` ``);
- every CLI command, in built-in groups loaded lazily and in plugin commands, has
  help text, and every top-level command is shown in README.md or docs/plugins.md
  as ``connectsw NAME``.

Each check is a function returning what is missing, so the tests below can feed
each one a fake undocumented name and see it fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import click
import pytest

import connectsw
from connectsw.cli.main import cli
from connectsw.plugins.manager import HOOK_NAMES

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"
README = ROOT / "README.md"
TESTS = ROOT / "tests"


def suite_code() -> str:
    """The suite's test code, without this folder (which names every hook)."""
    return "\n".join(
        p.read_text(encoding="utf-8")
        for p in TESTS.rglob("*.py")
        if not p.is_relative_to(TESTS / "docs")
    )


def undocumented_hooks(hooks: Iterable[str], guide: str) -> list[str]:
    """Hooks without a ``### `name(`` heading in the guide."""
    return sorted(h for h in hooks if f"### `{h}(" not in guide)


def untested_hooks(hooks: Iterable[str], tests: str) -> list[str]:
    """Hooks that no test implements."""
    return sorted(h for h in hooks if not re.search(rf"\bdef {re.escape(h)}\(", tests))


def undocumented_names(names: Iterable[str], guide: str) -> list[str]:
    """Public names the guide never shows as code (`` `name` ``)."""
    return sorted(n for n in names if f"`{n}`" not in guide)


def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group`` as ("gates check", command), lazily loaded ones too."""
    ctx = click.Context(group, info_name="connectsw")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix}{name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path + " ")


def undocumented_commands(group: click.Group, docs: str) -> list[str]:
    """Commands without help text, and top-level ones the docs never show."""
    missing = []
    for path, command in commands(group):
        if not (command.help or command.short_help or "").strip():
            missing.append(f"{path}: no help text")
        if " " not in path and not command.hidden and f"connectsw {path}" not in docs:
            missing.append(f"{path}: not in README.md or docs/plugins.md")
    return missing


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


# -- the checks on the real project ---------------------------------------------------


def test_every_hook_has_a_section_in_the_guide() -> None:
    assert HOOK_NAMES
    assert undocumented_hooks(HOOK_NAMES, guide()) == []


def test_every_hook_has_a_test() -> None:
    assert untested_hooks(HOOK_NAMES, suite_code()) == []


def test_every_public_name_is_in_the_guide() -> None:
    assert undocumented_names(connectsw.__all__, guide()) == []


def test_every_command_is_documented() -> None:
    docs = README.read_text(encoding="utf-8") + guide()
    assert undocumented_commands(cli, docs) == []


# -- the checks can fail ------------------------------------------------------------------


def test_an_undocumented_or_untested_hook_is_found() -> None:
    hooks = [*HOOK_NAMES, "register_frobnicators"]
    assert undocumented_hooks(hooks, guide()) == ["register_frobnicators"]
    assert untested_hooks(hooks, suite_code()) == ["register_frobnicators"]


def test_an_undocumented_public_name_is_found() -> None:
    assert undocumented_names([*connectsw.__all__, "FrobnicatorProtocol"], guide()) == [
        "FrobnicatorProtocol"
    ]


def test_an_undocumented_command_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command("frobnicate")
    def frobnicate() -> None:
        pass

    @click.group("frob")
    def frob() -> None:
        """Frobnication."""

    frob.add_command(frobnicate)
    monkeypatch.setitem(cli.commands, "frob", frob)
    docs = README.read_text(encoding="utf-8") + guide()
    assert undocumented_commands(cli, docs) == [
        "frob: not in README.md or docs/plugins.md",
        "frob frobnicate: no help text",
    ]
