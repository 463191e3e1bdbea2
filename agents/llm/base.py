"""The provider contract: messages in, a completion (or a stream of text) out.

A provider is registered through the ``register_llm_providers`` hook and selected
by the ``llm.provider`` setting. It raises :class:`connectsw.core.errors.LLMError`
(one line, never an API key) when it cannot answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One message of a conversation: ``role`` and its text."""

    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    """Tokens a call consumed and what it cost (US dollars; None: the provider does not
    know, the host prices it from ``llm.prices``)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None


@dataclass(frozen=True)
class Completion:
    """A model's whole reply: its text and the call's usage."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None

    @property
    def usage(self) -> Usage:
        """The call's usage alone."""
        return Usage(self.tokens_in, self.tokens_out, self.cost)


@runtime_checkable
class LLMProvider(Protocol):
    """What ``register_llm_providers`` registers (see plugins/hookspecs.py).

    ``timeout`` is seconds for the whole call (retries included). ``stream`` yields
    the reply's text in chunks as they arrive, then exactly one :class:`Usage`.
    Both raise :class:`~connectsw.core.errors.LLMError` subclasses: key refused,
    unknown model, malformed answer, timeout, or the server still failing after
    its retries.
    """

    name: str
    description: str

    def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
    ) -> Completion:
        """The reply to ``messages`` as one :class:`Completion`."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
    ) -> Iterator[str | Usage]:
        """The reply's text chunks, then its :class:`Usage`."""
        ...


def price(
    tokens_in: int, tokens_out: int, input_per_million: float, output_per_million: float
) -> float:
    """Dollars for a call at per-million-token prices (``llm.prices``)."""
    return (tokens_in * input_per_million + tokens_out * output_per_million) / 1_000_000
