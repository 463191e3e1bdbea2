"""Choosing an agent's provider and model from [llm], pricing, deadlines, unknown names."""

from __future__ import annotations

import json
import os
import tempfile
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
        fd, name = tempfile.mkstemp(prefix="fixed-provider-")
        os.close(fd)
        self.log = Path(name)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The options of each call: written to a file, as a plugin provider's call runs
        in a forked child (trial 8b, F2)."""
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        with self.log.open("a") as fh:
            fh.write(json.dumps(options) + "\n")
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


class SlowProvider(FixedProvider):
    """A plugin provider that ignores its timeout, then has a side effect (trial 8b, F2)."""

    def __init__(self, late: Path, sleep: float) -> None:
        super().__init__(cost=None)
        self.late = late
        self.sleep = sleep

    def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        time.sleep(self.sleep)
        self.late.write_text("late")
        return Completion("late reply", 1, 1, None)


def test_a_plugin_providers_call_ends_at_the_tasks_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial 8b, F2: a plugin provider behind a built-in (thread) agent ran 15 s past a
    3 s task timeout, its side effect landing after the attempt was recorded timed
    out. Its call is now stopped at the deadline: no side effect, ever."""
    late = tmp_path / "late.txt"
    use(SlowProvider(late, sleep=4), monkeypatch)
    c = ctx(tmp_path, timeout=1.0, deadline=time.monotonic() + 1)
    session = open_session("architect", c)
    assert session is not None
    started = time.monotonic()
    with pytest.raises(TaskTimeout, match="timed out after 1s"):
        session.complete([Message("user", "hi")])
    assert time.monotonic() - started < 1 + 3  # the deadline, then the keeper's grace
    time.sleep(4.5)  # past when the provider would have written its file
    assert not late.exists()


def test_a_plugin_providers_call_is_stopped_on_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = tmp_path / "late.txt"
    use(SlowProvider(late, sleep=4), monkeypatch)
    asked = time.monotonic() + 0.5
    c = ctx(
        tmp_path,
        timeout=30.0,
        deadline=time.monotonic() + 30,
        should_stop=lambda: "cancelled" if time.monotonic() > asked else None,
    )
    session = open_session("architect", c)
    assert session is not None
    with pytest.raises(TaskError, match="stopped: cancelled"):
        session.complete([Message("user", "hi")])
    time.sleep(4)
    assert not late.exists()


def test_a_plugin_providers_llm_error_keeps_its_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.core.errors import LLMAuthError

    class Refusing(FixedProvider):
        def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
            raise LLMAuthError("fixed provider: key refused")

    use(Refusing(cost=None), monkeypatch)
    session = open_session("architect", ctx(tmp_path))
    assert session is not None
    with pytest.raises(LLMAuthError, match="^fixed provider: key refused$"):
        session.complete([Message("user", "hi")])


def test_a_built_in_agent_with_a_slow_plugin_provider_is_timed_out_with_no_late_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Any
) -> None:
    """Trial 8b, F2, as the trial ran it: product-manager (a thread agent) on a plugin
    provider that sleeps 10 s then writes a file; the task's timeout is 2 s."""
    from connectsw.core.models import ExecutionStatus
    from connectsw.plugins.registry import get_registries, reset_registries

    late = tmp_path / "late.txt"
    use(SlowProvider(late, sleep=10), monkeypatch)
    reset_registries()
    engine.registries = get_registries()
    graph = tmp_path / "pm.yaml"
    graph.write_text(
        "name: pmt\ntasks:\n  - id: prd\n    agent: product-manager\n    timeout: 2\n"
        "    with: {output: docs/PRD.md, title: Thing}\n"
    )
    ex = engine.submit(Request(command="run", args=[str(graph)]), tmp_path / "ws")
    started = time.monotonic()
    done = engine.run(ex.id)
    assert time.monotonic() - started < 8
    assert done.status is ExecutionStatus.FAILED
    assert "timed out after 2s" in (done.error or ""), done.error
    time.sleep(max(0.0, started + 12 - time.monotonic()))  # past the provider's 10 s
    assert not late.exists()
