"""Registers the built-in LLM providers (``trylast``: a plugin's provider comes first)."""

from __future__ import annotations

from typing import Any

from connectsw import hookimpl
from connectsw.agents.llm.anthropic import AnthropicProvider
from connectsw.agents.llm.llm_library import LLMLibraryProvider
from connectsw.agents.llm.openai import OpenAIProvider


@hookimpl(trylast=True)
def register_llm_providers(register: Any) -> None:
    """Register ``openai`` (OpenAI-compatible servers), ``anthropic`` and ``llm`` (the
    ``llm`` library's models, an optional extra)."""
    register(OpenAIProvider())
    register(AnthropicProvider())
    register(LLMLibraryProvider())
