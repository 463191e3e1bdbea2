"""Choosing an agent's provider and model from [llm], pricing, deadlines, unknown names."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from connectsw import hookimpl
from connectsw.agents.architect import ArchitectAgent
from connectsw.agents.base import TaskContext
from connectsw.agents.llm.base import Completion, Message, Usage
from connectsw.agents.llm.session import Choice, choice_for, model_configured, open_session
from connectsw.agents.product_manager import ProductManagerAgent
from connectsw.conf.settings import get_settings, load_settings
from connectsw.core.errors import ConfigError, LLMError, TaskError, TaskTimeout
from connectsw.core.models import LLMUsage, Request, TaskSpec
from connectsw.plugins.manager import get_plugin_manager


class FixedProvider:
    """A third-party provider registered through the hook: fixed reply and usage."""

    name = "fixed"
    description = "Always the same reply"

    def __init__(self, cost: float | None) -> None:
        self.cost = cost
        self.calls: list[dict[str, Any]] = []

    def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        self.calls.append(options)
        return Completion("fixed reply", 1000, 500, self.cost)

    def stream(self, messages: Sequence[Message], **options: Any) -> Iterator[str | Usage]:
        yield "fixed reply"
        yield Usage(1000, 500, self.cost)


class FixedPlugin:
    def __init__(self, provider: FixedProvider) -> None:
        self.provider = provider

    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        register(self.provider)


def use(provider: FixedProvider, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    get_plugin_manager().register(FixedPlugin(provider), name="fixed-plugin")
    monkeypatch.setenv("CONNECTSW_LLM__PROVIDER", "fixed")
    monkeypatch.setenv("CONNECTSW_LLM__MODEL", "base-model")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def ctx(tmp_path: Path, **kw: Any) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="t", agent="architect"),
        workspace=tmp_path,
        request=Request(command="new product", args=["x"]),
        **kw,
    )


def test_no_provider_no_session(tmp_path: Path) -> None:
    assert choice_for("architect", load_settings().llm) is None
    assert open_session("architect", ctx(tmp_path)) is None
    assert not model_configured("architect")
    assert ArchitectAgent().brief is True  # a few file writes: start recorded with the end


def test_with_a_model_the_agents_are_not_brief(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__PROVIDER", "openai")
    monkeypatch.setenv("CONNECTSW_LLM__MODEL", "m")
    monkeypatch.setenv("CONNECTSW_LLM__AGENTS", '{"architect": {"provider": ""}}')
    get_settings.cache_clear()
    assert ProductManagerAgent().brief is False
    assert ArchitectAgent().brief is True  # this one keeps its template


def test_per_agent_overrides() -> None:
    llm = load_settings(
        llm={
            "provider": "openai",
            "model": "small",
            "agents": {
                "backend-engineer": {"model": "big", "max_tokens": 9000},
                "qa-engineer": {"provider": "anthropic", "model": "claude", "temperature": 0},
                "architect": {"provider": ""},
            },
        }
    ).llm
    assert choice_for("product-manager", llm) == Choice("openai", "small", 4096, 0.2)
    assert choice_for("backend-engineer", llm) == Choice("openai", "big", 9000, 0.2)
    assert choice_for("qa-engineer", llm) == Choice("anthropic", "claude", 4096, 0.0)
    assert choice_for("architect", llm) is None  # this agent keeps its template


def test_an_agent_with_its_own_provider_needs_a_model() -> None:
    llm = load_settings(llm={"agents": {"architect": {"provider": "openai"}}}).llm
    with pytest.raises(ConfigError, match="llm.agents.architect.model: needed"):
        choice_for("architect", llm)


def test_usage_priced_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = FixedProvider(cost=None)
    use(provider, monkeypatch, CONNECTSW_LLM__PRICES='{"base-model": {"input": 2, "output": 10}}')
    c = ctx(tmp_path)
    session = open_session("architect", c)
    assert session is not None
    assert session.complete([Message("user", "hi")]) == "fixed reply"
    session.complete([Message("user", "again")])
    assert c.usage == LLMUsage(calls=2, tokens_in=2000, tokens_out=1000, cost=0.014)
    assert provider.calls[0] == {
        "model": "base-model",
        "max_tokens": 4096,
        "temperature": 0.2,
        "timeout": 120.0,
    }


def test_the_providers_own_cost_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use(FixedProvider(cost=0.5), monkeypatch, CONNECTSW_LLM__PRICES='{"base-model": {"input": 2}}')
    c = ctx(tmp_path)
    session = open_session("architect", c)
    assert session is not None
    session.complete([Message("user", "hi")])
    assert c.usage.cost == 0.5


def test_an_unpriced_model_costs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use(FixedProvider(cost=None), monkeypatch)
    c = ctx(tmp_path)
    session = open_session("architect", c)
    assert session is not None
    session.complete([Message("user", "hi")])
    assert c.usage == LLMUsage(calls=1, tokens_in=1000, tokens_out=500, cost=0.0)


def test_the_call_timeout_is_what_is_left_of_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = FixedProvider(cost=None)
    use(provider, monkeypatch)
    c = ctx(tmp_path, timeout=30.0, deadline=time.monotonic() + 5)
    session = open_session("architect", c)
    assert session is not None
    session.complete([Message("user", "hi")])
    assert 4 < provider.calls[0]["timeout"] <= 5
    c.deadline = time.monotonic() - 1
    with pytest.raises(TaskTimeout, match="timed out after 30s before a model call"):
        session.complete([Message("user", "hi")])


def test_a_stop_request_stops_before_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = FixedProvider(cost=None)
    use(provider, monkeypatch)
    session = open_session("architect", ctx(tmp_path, should_stop=lambda: "cancelled"))
    assert session is not None
    with pytest.raises(TaskError, match="stopped: cancelled"):
        session.complete([Message("user", "hi")])
    assert provider.calls == []


def test_an_unknown_provider_names_the_installed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__PROVIDER", "opneai")
    monkeypatch.setenv("CONNECTSW_LLM__MODEL", "m")
    get_settings.cache_clear()
    with pytest.raises(LLMError) as info:
        open_session("architect", ctx(tmp_path))
    assert str(info.value) == (
        "no LLM provider 'opneai' (llm.provider; installed: anthropic, llm, openai)"
    )
