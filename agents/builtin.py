"""Registers the built-in agents (``trylast``: a third-party agent is asked first)."""

from __future__ import annotations

from typing import Any

from connectsw import hookimpl
from connectsw.agents.architect import ArchitectAgent
from connectsw.agents.backend_engineer import BackendEngineerAgent
from connectsw.agents.frontend_engineer import FrontendEngineerAgent
from connectsw.agents.product_manager import ProductManagerAgent
from connectsw.agents.qa_engineer import QAEngineerAgent
from connectsw.agents.shell import NoopAgent, ShellAgent

BUILTIN_AGENTS = (
    ProductManagerAgent,
    ArchitectAgent,
    BackendEngineerAgent,
    FrontendEngineerAgent,
    QAEngineerAgent,
    ShellAgent,
    NoopAgent,
)


@hookimpl(trylast=True)
def register_agents(register: Any) -> None:
    """Register every built-in agent."""
    for cls in BUILTIN_AGENTS:
        register(cls())
