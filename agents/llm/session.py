"""An agent's model for one task: chosen from the settings, called within the task's
deadline, its tokens and cost counted.

Selection (``[llm]``): ``llm.agents.NAME.provider`` / ``.model`` / ``.max_tokens`` /
``.temperature`` for agent type NAME, else ``llm.provider``, ``llm.model`` ... An
empty provider means no model: :func:`open_session` returns None and the agent
keeps its deterministic built-in behaviour. Cost is the provider's if it reports
one, else priced from ``llm.prices.MODEL`` (0 when the model has no price).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectsw.agents.base import TaskContext
from connectsw.agents.llm.base import Completion, LLMProvider, Message, price
from connectsw.core.errors import (
    ConfigError,
    LLMError,
    LLMTimeout,
    TaskError,
    TaskTimeout,
    one_line,
)
from connectsw.core.models import LLMUsage

if TYPE_CHECKING:
    from connectsw.conf.settings import LLMSettings

log = logging.getLogger("connectsw.llm")


@dataclass(frozen=True)
class Choice:
    """The provider and model one agent type uses, and its reply limits."""

    provider: str
    model: str
    max_tokens: int
    temperature: float


def choice_for(agent: str, llm: LLMSettings) -> Choice | None:
    """What agent type ``agent`` uses under ``llm``; None: no model configured.

    Raises :class:`ConfigError` when a provider is chosen without a model.
    """
    own = llm.agents.get(agent)
    provider = own.provider if own is not None and own.provider is not None else llm.provider
    if not provider:
        return None
    model = (own.model if own is not None and own.model else None) or llm.model
    if not model:
        raise ConfigError(f"llm.agents.{agent}.model: needed when its provider is set")
    return Choice(
        provider,
        model,
        own.max_tokens if own is not None and own.max_tokens is not None else llm.max_tokens,
        own.temperature if own is not None and own.temperature is not None else llm.temperature,
    )


class ModelSession:
    """Calls to one provider and model on behalf of one agent's task attempt.

    Each call's timeout is ``llm.timeout`` or what is left of the task's deadline,
    whichever is shorter; a stop request (cancel, lost lease) is honoured between
    calls. Usage is added to ``ctx.usage`` (recorded with the attempt, failed or not).
    """

    def __init__(
        self,
        ctx: TaskContext,
        provider: LLMProvider,
        choice: Choice,
        llm: LLMSettings,
        forked: bool = False,
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self.choice = choice
        self.llm = llm
        self.forked = forked

    def complete(self, messages: Sequence[Message]) -> str:
        """The model's reply to ``messages`` (text); raises :class:`LLMError`, TaskTimeout."""
        ctx = self.ctx
        stop = ctx.should_stop() if ctx.should_stop is not None else None
        if stop is not None:
            raise TaskError(f"stopped: {stop}")
        timeout = self.llm.timeout
        if ctx.deadline is not None:
            left = ctx.deadline - time.monotonic()
            if left <= 0:
                raise TaskTimeout(f"timed out after {ctx.timeout:g}s before a model call")
            timeout = min(timeout, left)
        c = self.choice
        if self.forked:
            done = self._complete_forked(messages, timeout)
        else:
            done = self.provider.complete(
                list(messages),
                model=c.model,
                max_tokens=c.max_tokens,
                temperature=c.temperature,
                timeout=timeout,
            )
        cost = done.cost
        if cost is None:
            rate = self.llm.prices.get(c.model)
            cost = price(done.tokens_in, done.tokens_out, rate.input, rate.output) if rate else 0.0
        ctx.usage = ctx.usage + LLMUsage(
            calls=1, tokens_in=done.tokens_in, tokens_out=done.tokens_out, cost=max(cost, 0.0)
        )
        log.info(
            "%s: %s/%s answered (%d tokens in, %d out)",
            ctx.task.id,
            c.provider,
            c.model,
            done.tokens_in,
            done.tokens_out,
        )
        return done.text

    def _complete_forked(self, messages: Sequence[Message], timeout: float) -> Completion:
        """A plugin provider's ``complete`` in a forked child under a keeper
        (:func:`connectsw.core.isolation.run_forked`), ended with every process it started
        at the call's deadline (the task's, or ``llm.timeout``), on cancel or a lost lease.

        A built-in agent runs in the worker's thread; a plugin provider that ignores its
        ``timeout`` ran on there past the task's deadline, its side effects landing after
        the attempt was recorded timed out (trial 8b, F2). Dropping a late answer would
        not stop them: its code is stopped instead.
        """
        from connectsw.core import errors
        from connectsw.core.isolation import AttemptStopped, run_forked

        ctx, c, provider = self.ctx, self.choice, self.provider

        def work() -> dict[str, Any]:  # in the child
            try:
                done = provider.complete(
                    list(messages),
                    model=c.model,
                    max_tokens=c.max_tokens,
                    temperature=c.temperature,
                    timeout=timeout,
                )
            except LLMError as exc:  # kept as its class (auth, model not found...)
                return {"llm_error": type(exc).__name__, "message": one_line(exc)}
            return {
                "text": done.text,
                "tokens_in": done.tokens_in,
                "tokens_out": done.tokens_out,
                "cost": done.cost,
            }

        deadline = time.monotonic() + timeout
        task_bound = ctx.deadline is not None and ctx.deadline <= deadline
        try:
            data = run_forked(
                work,
                deadline=deadline,
                should_stop=ctx.should_stop,
                on_spawn=ctx.on_spawn,
                timeout_message=(
                    f"timed out after {ctx.timeout:g}s"
                    if task_bound and ctx.timeout
                    else "timed out"
                ),
                what=f"LLM provider {c.provider!r}",
                hide_env=False,
            )
        except AttemptStopped as exc:
            raise TaskError(f"stopped: {exc.reason}") from None
        except TaskTimeout:
            if task_bound:
                raise
            raise LLMTimeout(
                f"{c.provider} provider: model {c.model!r} gave no answer within {timeout:g} s"
            ) from None
        if "llm_error" in data:
            kind = getattr(errors, str(data["llm_error"]), None)
            if not (isinstance(kind, type) and issubclass(kind, LLMError)):
                kind = LLMError
            raise kind(str(data["message"]))
        return Completion(
            str(data["text"]),
            int(data["tokens_in"] or 0),
            int(data["tokens_out"] or 0),
            None if data["cost"] is None else float(data["cost"]),
        )


def model_configured(agent: str) -> bool:
    """True when agent type ``agent`` has a model (settings read as the worker sees them)."""
    try:
        from connectsw.conf.settings import get_settings

        return choice_for(agent, get_settings().llm) is not None
    except ConfigError:
        return True  # the task will fail with the message when it runs


class ModelBrief:
    """Mixin for built-in agents: ``brief`` (start recorded with the end) only without a
    model; with one, the agent makes network calls and its start is recorded first."""

    @property
    def brief(self) -> bool:
        """True when this agent type has no model configured (a few file writes)."""
        return not model_configured(str(getattr(self, "name", "")))

    @brief.setter
    def brief(self, value: bool) -> None:
        raise AttributeError("brief follows the [llm] settings")


def open_session(agent: str, ctx: TaskContext) -> ModelSession | None:
    """The model session of agent type ``agent`` for this task, or None without a model.

    Raises :class:`LLMError` naming the provider when none of that name is registered.
    """
    from connectsw.conf.settings import get_settings

    llm = get_settings().llm
    choice = choice_for(agent, llm)
    if choice is None:
        return None
    from connectsw.plugins.registry import get_registries

    regs = get_registries()
    provider = regs.llm_providers.get(choice.provider)
    if provider is None:
        known = ", ".join(sorted(regs.llm_providers.items)) or "none"
        raise regs.unknown_error(
            "LLM provider",
            choice.provider,
            f"no LLM provider {choice.provider!r} (llm.provider; installed: {known})",
            LLMError,
        )
    from connectsw.plugins.manager import is_builtin

    owner = regs.llm_providers.owners.get(choice.provider, "?")
    return ModelSession(ctx, provider, choice, llm, forked=not is_builtin(owner))
