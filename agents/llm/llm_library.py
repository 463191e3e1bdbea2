"""An adapter to the ``llm`` library: every model it or its plugins provide
(``pip install 'connectsw[llm]'``; ``llm models`` lists them).

``llm.provider = "llm"`` and ``llm.model`` = an ``llm`` model id or alias. Keys and
endpoints are the library's (``llm keys set``, ``extra-openai-models.yaml``, its
plugins' settings), read from its own user directory (``LLM_USER_PATH``). The
call runs in a thread of its own, abandoned at the deadline (the library has no
per-call timeout to give): a late answer is dropped, never waited for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from connectsw.agents.llm.base import Completion, Message, Usage
from connectsw.core.errors import LLMAuthError, LLMError, LLMModelNotFound, LLMTimeout, one_line

INSTALL = "the llm provider needs the llm library: pip install 'connectsw[llm]'"


def _library() -> Any:
    try:
        import llm
    except ImportError:
        raise LLMError(INSTALL) from None
    return llm


class LLMLibraryProvider:
    """Any model of the ``llm`` library, by its id or alias."""

    name = "llm"
    description = "Any model of the llm library and its plugins (optional extra: connectsw[llm])"

    def _prompt(
        self,
        messages: Sequence[Message],
        model: str,
        max_tokens: int,
        temperature: float,
        stream: bool,
    ) -> Any:
        llm = _library()
        try:
            found = llm.get_model(model)
        except llm.UnknownModelError:
            raise LLMModelNotFound(
                f"the llm library has no model {model!r}; check llm.model (`llm models` lists them)"
            ) from None
        wanted = {"max_tokens": max_tokens, "temperature": temperature}
        fields = getattr(found.Options, "model_fields", {})
        options = {k: v for k, v in wanted.items() if k in fields}
        make = {"system": llm.system, "user": llm.user, "assistant": llm.assistant}
        history = [make[m.role](m.content) for m in messages]
        return found.prompt(messages=history, stream=stream, **options)

    def _fail(self, model: str, exc: BaseException) -> LLMError:
        status = getattr(exc, "status_code", None)
        if status in (401, 403) or "auth" in type(exc).__name__.lower():
            # No library text: a provider may echo part of the key it refused.
            return LLMAuthError(
                f"the llm library's model {model!r} was refused its key ({type(exc).__name__});"
                " check `llm keys`"
            )
        if status == 404:
            return LLMModelNotFound(f"the llm library's model {model!r} is unknown to its server")
        return LLMError(f"the llm library's model {model!r} failed: {one_line(exc, typed=True)}")

    def _within(self, timeout: float, model: str, work: Any) -> Any:
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = work()
            except BaseException as exc:  # reported in the caller's thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="connectsw-llm-library", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise LLMTimeout(
                f"the llm library's model {model!r} gave no answer within {timeout:g} s"
            )
        if "error" in outcome:
            error = outcome["error"]
            if isinstance(error, LLMError):
                raise error
            raise self._fail(model, error) from None
        return outcome["value"]

    def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
    ) -> Completion:
        """The whole reply (see :class:`~connectsw.agents.llm.base.LLMProvider`)."""

        def work() -> Completion:
            response = self._prompt(messages, model, max_tokens, temperature, stream=False)
            text = response.text()
            usage = response.usage()
            return Completion(text, usage.input or 0, usage.output or 0)

        result: Completion = self._within(timeout, model, work)
        return result

    def stream(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
    ) -> Iterator[str | Usage]:
        """The reply's chunks as the library yields them, then the usage (one deadline)."""

        def work() -> list[str | Usage]:
            response = self._prompt(messages, model, max_tokens, temperature, stream=True)
            items: list[str | Usage] = [chunk for chunk in response if chunk]
            usage = response.usage()
            items.append(Usage(usage.input or 0, usage.output or 0))
            return items

        # The library streams in its own thread here: chunks come once the reply is whole.
        yield from self._within(timeout, model, work)
