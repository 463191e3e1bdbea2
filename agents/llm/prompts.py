"""The agents' prompts: Markdown files a user can replace.

``NAME.md`` is looked for, first found wins, in the project's
``.connectsw/prompts/`` (the workspace), then the ``llm.prompts_dir`` setting's
directory, then the files shipped in ``connectsw/agents/prompts/``.
"""

from __future__ import annotations

from pathlib import Path

from connectsw.conf.settings import get_settings
from connectsw.core.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "prompts"
PROJECT_DIR = ".connectsw/prompts"


def prompt_dirs(workspace: Path | None) -> list[Path]:
    """Where prompts are looked for, first first."""
    dirs = []
    if workspace is not None:
        dirs.append(workspace / PROJECT_DIR)
    configured = get_settings().llm.prompts_dir
    if configured:
        dirs.append(Path(configured).expanduser())
    dirs.append(SHIPPED)
    return dirs


def load_prompt(name: str, workspace: Path | None = None) -> str:
    """The text of prompt ``name`` (``product-manager``, ``file-format`` ...).

    Raises :class:`ConfigError` if no directory has it or it cannot be read.
    """
    for directory in prompt_dirs(workspace):
        path = directory / f"{name}.md"
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read the prompt {path}: {exc}") from None
    raise ConfigError(f"no prompt {name}.md in {', '.join(str(d) for d in prompt_dirs(workspace))}")


def system_prompt(name: str, workspace: Path | None, files: bool = False) -> str:
    """Prompt ``name``, followed by ``file-format`` when the reply is files."""
    text = load_prompt(name, workspace)
    return text + "\n" + load_prompt("file-format", workspace) if files else text
