"""Prompts: shipped files, replaced by a settings directory, then by the project's."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.agents.llm.prompts import SHIPPED, load_prompt, system_prompt
from connectsw.conf.settings import get_settings
from connectsw.core.errors import ConfigError

AGENTS = ["product-manager", "architect", "backend-engineer", "frontend-engineer", "qa-engineer"]


@pytest.mark.parametrize("name", [*AGENTS, "file-format", "fix-tests"])
def test_every_prompt_is_shipped(name: str) -> None:
    assert (SHIPPED / f"{name}.md").is_file()
    assert len(load_prompt(name)) > 100


def test_file_format_prompt_documents_the_format_the_parser_reads() -> None:
    from connectsw.agents.llm.files import parse_files

    text = load_prompt("file-format")
    assert [f.path for f in parse_files(text)] == ["service/app.py"]
    assert system_prompt("architect", None, files=True).endswith(text)


def test_settings_dir_then_project_dir_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "architect.md").write_text("my architect", encoding="utf-8")
    monkeypatch.setenv("CONNECTSW_LLM__PROMPTS_DIR", str(mine))
    get_settings.cache_clear()
    project = tmp_path / "project"
    assert load_prompt("architect", project) == "my architect"
    assert load_prompt("qa-engineer", project) == (SHIPPED / "qa-engineer.md").read_text()
    (project / ".connectsw/prompts").mkdir(parents=True)
    (project / ".connectsw/prompts/architect.md").write_text("project's", encoding="utf-8")
    assert load_prompt("architect", project) == "project's"


def test_a_missing_prompt_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^no prompt nobody\.md in "):
        load_prompt("nobody")


def test_a_prompt_file_is_read_as_every_user_file_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTF-16 with its byte-order mark is text (as config and graph files are); bad
    bytes are named by place, not by Python's codec message (found by the new-user trial)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("CONNECTSW_LLM__PROMPTS_DIR", str(mine))
    get_settings.cache_clear()
    (mine / "architect.md").write_bytes("my architect\n".encode("utf-16"))
    assert load_prompt("architect") == "my architect\n"
    (mine / "architect.md").write_bytes(b"my caf\xe9 architect\n")
    with pytest.raises(ConfigError) as info:
        load_prompt("architect")
    assert str(info.value) == (
        f"cannot read the prompt {mine / 'architect.md'}: not valid UTF-8"
        " (byte 0xe9 at line 1, offset 6)"
    )
