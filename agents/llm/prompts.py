"""The agents' prompts: Markdown files a user can replace.

``NAME.md`` is looked for, first found wins, in the project's
``.connectsw/prompts/`` (the workspace), then the ``llm.prompts_dir`` setting's
directory, then the files shipped in ``connectsw/agents/prompts/``.
"""

from __future__ import annotations

from pathlib import Path

from connectsw.core import textfiles
from connectsw.core.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "prompts"
PROJECT_DIR = ".connectsw/prompts"


def prompt_dirs(workspace: Path | None) -> list[Path]:
    """Where prompts are looked for, first first."""
    dirs = []
    if workspace is not None:
        dirs.append(workspace / PROJECT_DIR)
    from connectsw.conf.settings import get_settings

    configured = get_settings().llm.prompts_dir
    if configured:
        dirs.append(Path(configured).expanduser())
    dirs.append(SHIPPED)
    return dirs


MAX_PROMPT_BYTES = 1_048_576
"""A prompt file is at most this many bytes (1 MiB)."""


def load_prompt(name: str, workspace: Path | None = None) -> str:
    """The text of prompt ``name`` (``product-manager``, ``file-format`` ...).

    Prompt files are read as every user file is (core/textfiles.py), at most
    :data:`MAX_PROMPT_BYTES`. Raises :class:`ConfigError` if no directory has it or it
    cannot be read, is larger or is not text.
    """
    for directory in prompt_dirs(workspace):
        path = directory / f"{name}.md"
        if path.is_file():
            try:  # as every user file is: UTF-8, or what its byte-order mark says
                return textfiles.read_text(path, MAX_PROMPT_BYTES)
            except textfiles.TextFileError as exc:
                raise ConfigError(f"cannot read the prompt {path}: {exc}") from None
    raise ConfigError(f"no prompt {name}.md in {', '.join(str(d) for d in prompt_dirs(workspace))}")


def system_prompt(name: str, workspace: Path | None, files: bool = False) -> str:
    """Prompt ``name``, followed by ``file-format`` when the reply is files."""
    text = load_prompt(name, workspace)
    return text + "\n" + load_prompt("file-format", workspace) if files else text
