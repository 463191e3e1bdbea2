"""The Anthropic Messages API (``POST {base_url}/v1/messages``).

System messages go in the ``system`` field; the key goes in ``x-api-key`` with
``anthropic-version: 2023-06-01``. Streaming is SSE: ``message_start`` carries the
input tokens, ``content_block_delta`` the text, ``message_delta`` the output tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectsw.agents.llm.base import Completion, Message
from connectsw.agents.llm.http import Call, Endpoint, HTTPProvider, error_message
from connectsw.core.errors import LLMError

API_VERSION = "2023-06-01"


class AnthropicProvider(HTTPProvider):
    """Anthropic's Messages API over aiohttp, whole or streamed."""

    name = "anthropic"
    description = "Anthropic Messages API (Claude models)"
    default_base_url = "https://api.anthropic.com"
    default_key_env = "ANTHROPIC_API_KEY"
    path = "v1/messages"

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if endpoint.key:
            headers["x-api-key"] = endpoint.key
        return headers

    def body(
        self, messages: Sequence[Message], model: str, max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "temperature": min(temperature, 1.0),  # the API's range is 0 to 1
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
        }
        if system:
            body["system"] = system
        return body

    def parse(self, call: Call, data: Any) -> Completion:
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, list):
            raise call.missing("content")
        text = "".join(
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(text, _int(usage.get("input_tokens")), _int(usage.get("output_tokens")))

    def chunks(self, call: Call, event: str, data: Any, usage: dict[str, int]) -> str | None:
        if not isinstance(data, dict):
            raise call.missing("a JSON object in a streamed event")
        kind = data.get("type") or event
        if kind == "error":
            _code, text = error_message(data)
            raise LLMError(f"{call.endpoint.who} failed mid-stream: {call.endpoint.scrub(text)}")
        if kind == "message_start":
            counts = _dict(_dict(data.get("message")).get("usage"))
            usage["tokens_in"] = _int(counts.get("input_tokens"))
            usage["tokens_out"] = _int(counts.get("output_tokens"))
        elif kind == "message_delta":
            counts = _dict(data.get("usage"))
            if "output_tokens" in counts:
                usage["tokens_out"] = _int(counts.get("output_tokens"))
        elif kind == "content_block_delta":
            chunk = _dict(data.get("delta")).get("text")
            return chunk if isinstance(chunk, str) else None
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
