"""The OpenAI-compatible chat-completions API (``POST {base_url}/chat/completions``).

The same protocol is spoken by OpenAI, vLLM, Ollama (``http://HOST:11434/v1``),
llama.cpp's server and LM Studio: point ``llm.openai.base_url`` at them. The key,
if any, goes in ``Authorization: Bearer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectsw.agents.llm.base import Completion, Message
from connectsw.agents.llm.http import Call, Endpoint, HTTPProvider, error_message
from connectsw.core.errors import LLMError


class OpenAIProvider(HTTPProvider):
    """Chat completions over aiohttp, whole or streamed (SSE, usage in the last chunk)."""

    name = "openai"
    description = "OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp, LM Studio)"
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"
    path = "chat/completions"

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {"Authorization": f"Bearer {endpoint.key}"} if endpoint.key else {}

    def body(
        self, messages: Sequence[Message], model: str, max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }

    def stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "stream": True, "stream_options": {"include_usage": True}}

    def parse(self, call: Call, data: Any) -> Completion:
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise call.missing("choices[0].message.content") from None
        if not isinstance(text, str):
            raise call.missing("a text reply in choices[0].message.content")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text, _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        )

    def chunks(self, call: Call, event: str, data: Any, usage: dict[str, int]) -> str | None:
        if not isinstance(data, dict):
            raise call.missing("a JSON object in a streamed chunk")
        if "error" in data:
            _code, text = error_message(data)
            raise LLMError(f"{call.endpoint.who} failed mid-stream: {call.endpoint.scrub(text)}")
        if isinstance(data.get("usage"), dict):
            usage["tokens_in"] = _int(data["usage"].get("prompt_tokens"))
            usage["tokens_out"] = _int(data["usage"].get("completion_tokens"))
        choices = data.get("choices") or []
        if not choices:
            return None
        delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
