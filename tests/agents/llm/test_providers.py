"""The built-in providers against a real aiohttp server on loopback speaking each protocol.

Nothing of the providers is replaced: the real HTTP client talks to a scripted
server (model_server.py) that answers as OpenAI-compatible servers and Anthropic's
Messages API do, including streams, 429 with Retry-After, 500, malformed JSON,
slow replies, refused keys and unknown models.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from connectsw.agents.llm.anthropic import AnthropicProvider
from connectsw.agents.llm.base import Completion, LLMProvider, Message, Usage
from connectsw.agents.llm.http import HTTPProvider, read_key, retry_after
from connectsw.agents.llm.openai import OpenAIProvider
from connectsw.conf.settings import get_settings
from connectsw.core.errors import (
    LLMAuthError,
    LLMBadResponse,
    LLMError,
    LLMModelNotFound,
    LLMTimeout,
)
from connectsw.plugins.registry import get_registries

from .model_server import ModelServer, Reply, anthropic_reply, openai_reply

KEY = "sk-test-SECRET-0123456789"
MESSAGES = [Message("system", "You are terse."), Message("user", "Say hi")]
ARGS = {"model": "m-1", "max_tokens": 100, "temperature": 0.0, "timeout": 10.0}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    srv = ModelServer()
    with srv.running():
        for name in ("OPENAI", "ANTHROPIC"):
            base = srv.url + ("/v1" if name == "OPENAI" else "")
            monkeypatch.setenv(f"CONNECTSW_LLM__{name}__BASE_URL", base)
            monkeypatch.setenv(f"CONNECTSW_LLM__{name}__API_KEY_ENV", "TEST_LLM_KEY")
        monkeypatch.setenv("TEST_LLM_KEY", KEY)
        monkeypatch.setenv("CONNECTSW_LLM__RETRY_BACKOFF", "0.01")
        get_settings.cache_clear()
        yield srv
    get_settings.cache_clear()


PROVIDERS: dict[str, tuple[type[HTTPProvider], object]] = {
    "openai": (OpenAIProvider, openai_reply),
    "anthropic": (AnthropicProvider, anthropic_reply),
}


@pytest.fixture(params=sorted(PROVIDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def provider_of(kind: str) -> HTTPProvider:
    return PROVIDERS[kind][0]()


def reply_of(kind: str, text: str, tokens_in: int = 10, tokens_out: int = 5) -> Reply:
    make = PROVIDERS[kind][1]
    return make(text, tokens_in, tokens_out)  # type: ignore[operator]


def test_builtin_providers_are_registered_and_typed() -> None:
    providers = get_registries().llm_providers
    assert [p.name for p in providers] == ["openai", "anthropic", "llm"]
    assert all(isinstance(p, LLMProvider) for p in providers)
    assert providers.owners["openai"] == "connectsw.agents.llm.builtin"


def test_openai_complete_sends_the_protocol_and_counts_tokens(server: ModelServer) -> None:
    server.script(openai_reply("Hi!", 12, 3))
    done = OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert done == Completion("Hi!", 12, 3, None)
    (seen,) = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.body == {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hi"},
        ],
        "max_tokens": 100,
        "temperature": 0.0,
    }


def test_anthropic_complete_sends_the_protocol_and_counts_tokens(server: ModelServer) -> None:
    server.script(anthropic_reply("Hi!", 12, 3))
    done = AnthropicProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert done == Completion("Hi!", 12, 3, None)
    (seen,) = server.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in seen.headers
    assert seen.body == {
        "model": "m-1",
        "max_tokens": 100,
        "temperature": 0.0,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say hi"}],
    }


def test_openai_stream_yields_chunks_then_usage(server: ModelServer) -> None:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
    server.script(
        Reply(
            events=[
                (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
                (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
                (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "lo"}}]}),
                (
                    None,
                    {**chunk, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
                ),
                (None, "[DONE]"),
            ]
        )
    )
    items = list(OpenAIProvider().stream(MESSAGES, **ARGS))  # type: ignore[arg-type]
    assert items == ["Hel", "lo", Usage(7, 2)]
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


def test_anthropic_stream_yields_chunks_then_usage(server: ModelServer) -> None:
    server.script(
        Reply(
            events=[
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {"usage": {"input_tokens": 9, "output_tokens": 1}},
                    },
                ),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                ("ping", {"type": "ping"}),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "Hel"},
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "lo"},
                    },
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 4},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )
    )
    items = list(AnthropicProvider().stream(MESSAGES, **ARGS))  # type: ignore[arg-type]
    assert items == ["Hel", "lo", Usage(9, 4)]
    assert server.requests[0].body["stream"] is True


def test_429_is_retried_after_retry_after(kind: str, server: ModelServer) -> None:
    limited = Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0.5"})
    server.script(limited, reply_of(kind, "ok"))
    started = time.monotonic()
    done = provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert done.text == "ok"
    assert time.monotonic() - started >= 0.5
    assert len(server.requests) == 2


def test_retry_after_is_capped(
    kind: str, server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__RETRY_BACKOFF_MAX", "0.2")
    get_settings.cache_clear()
    server.script(Reply(429, {}, headers={"Retry-After": "3600"}), reply_of(kind, "ok"))
    started = time.monotonic()
    assert provider_of(kind).complete(MESSAGES, **ARGS).text == "ok"  # type: ignore[arg-type]
    assert time.monotonic() - started < 5


def test_500_is_retried_then_gives_up_in_one_line(
    kind: str, server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__RETRIES", "2")
    get_settings.cache_clear()
    broken = Reply(500, {"error": {"message": "overloaded"}})
    server.script(broken, broken, broken, reply_of(kind, "never"))
    with pytest.raises(LLMError) as info:
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    message = str(info.value)
    assert message == (
        f"{kind} provider at 127.0.0.1:{server.url.rsplit(':', 1)[1]} answered HTTP 500:"
        " overloaded (3 tries; gave up)"
    )
    assert len(server.requests) == 3


def test_a_500_then_success_is_a_success(kind: str, server: ModelServer) -> None:
    server.script(Reply(502, raw=b"<html>bad gateway</html>"), reply_of(kind, "fine"))
    assert provider_of(kind).complete(MESSAGES, **ARGS).text == "fine"  # type: ignore[arg-type]


def test_a_wrong_key_is_one_line_without_the_key(kind: str, server: ModelServer) -> None:
    server.script(
        Reply(
            401,
            {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}},
        )
    )
    with pytest.raises(LLMAuthError) as info:
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    message = str(info.value)
    assert KEY not in message and "SECRET" not in message
    assert "\n" not in message
    assert message.endswith(
        "refused the API key (HTTP 401); check the environment variable TEST_LLM_KEY"
    )
    assert len(server.requests) == 1  # not retried


def test_an_unknown_model_is_named(kind: str, server: ModelServer) -> None:
    server.script(
        Reply(
            404, {"error": {"message": "The model `m-1` does not exist", "code": "model_not_found"}}
        )
    )
    with pytest.raises(LLMModelNotFound) as info:
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert "has no model 'm-1' (HTTP 404): The model `m-1` does not exist; check llm.model" in str(
        info.value
    )


def test_model_not_found_code_on_a_400(server: ModelServer) -> None:
    server.script(Reply(400, {"error": {"message": "no such model", "code": "model_not_found"}}))
    with pytest.raises(LLMModelNotFound):
        OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]


def test_other_4xx_is_refused_with_the_server_message_scrubbed(
    kind: str, server: ModelServer
) -> None:
    server.script(Reply(400, {"error": {"message": f"bad request near {KEY}"}}))
    with pytest.raises(LLMError) as info:
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert str(info.value).endswith("refused the request (HTTP 400): bad request near [key]")


ODD_KEY = "sk-ab/cd+ef=SECRET99 x"


@pytest.mark.parametrize(
    "echo",
    [
        ODD_KEY,
        quote(ODD_KEY, safe=""),
        quote(ODD_KEY, safe="").lower(),
        quote(ODD_KEY),
        quote_plus(ODD_KEY),
        base64.b64encode(f"user:{ODD_KEY}".encode()).decode(),
        base64.urlsafe_b64encode(f"u:{ODD_KEY}!".encode()).decode(),
        base64.b64encode(ODD_KEY.encode()).decode(),
    ],
    ids=["raw", "percent", "percent-lower", "path", "form", "basic", "base64url", "base64"],
)
@pytest.mark.parametrize("status", [400, 500])
def test_an_echoed_key_is_masked_in_every_encoding(
    kind: str, server: ModelServer, monkeypatch: pytest.MonkeyPatch, echo: str, status: int
) -> None:
    """Trial 5, item 7: a server's message held the key percent-encoded
    (``sk-ab%2Fcd%2Bef%3DSECRET99``) and it was stored with the task's error."""
    monkeypatch.setenv("TEST_LLM_KEY", ODD_KEY)
    get_settings.cache_clear()
    monkeypatch.setenv("CONNECTSW_LLM__RETRIES", "0")
    get_settings.cache_clear()
    server.script(Reply(status, {"error": {"message": f"bad key {echo} here"}}))
    with pytest.raises(LLMError) as info:
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    message = str(info.value)
    assert "SECRET99" not in message and "[key]" in message, message
    for secret in (ODD_KEY, quote(ODD_KEY, safe=""), base64.b64encode(ODD_KEY.encode()).decode()):
        assert secret[4:16].lower() not in message.lower(), message


def test_malformed_json_is_a_bad_response(kind: str, server: ModelServer) -> None:
    server.script(Reply(200, raw=b'{"choices": [ {"message": '))
    with pytest.raises(LLMBadResponse, match="answered malformed JSON"):
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]


def test_json_without_the_reply_is_a_bad_response(kind: str, server: ModelServer) -> None:
    server.script(Reply(200, {"unexpected": True}))
    with pytest.raises(LLMBadResponse, match="answered without"):
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]


def test_malformed_json_in_a_stream_is_a_bad_response(kind: str, server: ModelServer) -> None:
    server.script(Reply(events=[(None, "{not json")]))
    with pytest.raises(LLMBadResponse, match="streamed malformed JSON"):
        list(provider_of(kind).stream(MESSAGES, **ARGS))  # type: ignore[arg-type]


def test_a_slow_reply_past_the_timeout(kind: str, server: ModelServer) -> None:
    server.script(Reply(delay=3, body={}))
    started = time.monotonic()
    with pytest.raises(LLMTimeout) as info:
        provider_of(kind).complete(MESSAGES, **{**ARGS, "timeout": 0.5})  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert str(info.value).endswith("gave no answer within 0.5 s")


def test_a_slow_stream_past_the_timeout(server: ModelServer) -> None:
    server.script(Reply(delay=3, events=[]))
    with pytest.raises(LLMTimeout):
        list(OpenAIProvider().stream(MESSAGES, **{**ARGS, "timeout": 0.5}))  # type: ignore[arg-type]


def test_a_retry_after_past_the_deadline_ends_the_call_at_once(
    kind: str, server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__RETRY_BACKOFF_MAX", "60")
    get_settings.cache_clear()
    server.script(Reply(429, {"error": {"message": "quota"}}, headers={"Retry-After": "30"}))
    started = time.monotonic()
    with pytest.raises(LLMError, match="HTTP 429: quota; no time left for a retry within 2 s"):
        provider_of(kind).complete(MESSAGES, **{**ARGS, "timeout": 2.0})  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.5


def test_a_server_that_is_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__OPENAI__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CONNECTSW_LLM__RETRIES", "1")
    monkeypatch.setenv("CONNECTSW_LLM__RETRY_BACKOFF", "0.01")
    get_settings.cache_clear()
    with pytest.raises(
        LLMError, match=r"^cannot reach openai provider at 127.0.0.1:9 \(.*\) \(2 tries; gave up\)$"
    ):
        OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]


def test_the_key_from_a_file(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    key_file = tmp_path / "key"
    key_file.write_text("file-key-42\n", encoding="utf-8")
    monkeypatch.setenv("CONNECTSW_LLM__OPENAI__API_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    server.script(openai_reply("ok"))
    OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert server.requests[0].headers["Authorization"] == "Bearer file-key-42"


def test_an_unreadable_key_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("CONNECTSW_LLM__OPENAI__API_KEY_FILE", str(tmp_path / "missing"))
    get_settings.cache_clear()
    with pytest.raises(LLMError, match=r"^cannot read the API key file .*missing: not found$"):
        OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]


def test_a_key_file_is_read_as_every_user_file_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """UTF-16 with its byte-order mark is text; a bad byte is named by place only (it
    may be part of the key); a huge file is refused unread (found by the new-user trial:
    a UTF-16 key file was "not text")."""
    monkeypatch.delenv("CONNECTSW_TEST_UNSET_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_bytes("file-key-42\n".encode("utf-16"))
    assert read_key("CONNECTSW_TEST_UNSET_KEY", key_file) == ("file-key-42", f"the file {key_file}")
    key_file.write_bytes(b"file-\xffkey\n")
    with pytest.raises(LLMError) as info:
        read_key("CONNECTSW_TEST_UNSET_KEY", key_file)
    assert str(info.value) == (
        f"cannot read the API key file {key_file}: not valid UTF-8 (line 1, offset 5)"
    )
    key_file.write_bytes(b"k" * 70_000)
    with pytest.raises(LLMError, match=r": larger than 65536 bytes$"):
        read_key("CONNECTSW_TEST_UNSET_KEY", key_file)


def test_no_key_sends_no_authorization(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    get_settings.cache_clear()
    server.script(openai_reply("local"), anthropic_reply("local"))
    OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    AnthropicProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    assert "Authorization" not in server.requests[0].headers
    assert "x-api-key" not in server.requests[1].headers


def test_the_endpoint_repr_holds_no_key(server: ModelServer) -> None:
    endpoint = OpenAIProvider().endpoint()
    assert endpoint.key == KEY
    assert KEY not in repr(endpoint) and KEY not in str(endpoint)


def test_retry_after_forms() -> None:
    assert retry_after("2") == 2.0
    assert retry_after("1.5") == 1.5
    assert retry_after("-3") == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
    assert retry_after("nan") is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=20), usegmt=True)
    assert retry_after(later, now=now.timestamp()) == pytest.approx(20)


def test_an_answer_past_the_size_limit(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.agents.llm import http

    monkeypatch.setattr(http, "BODY_LIMIT", 100_000)
    server.script(Reply(raw=b"[" + b"1," * 100_000 + b"1]"))
    with pytest.raises(LLMBadResponse, match="answered more than 100000 bytes"):
        OpenAIProvider().complete(MESSAGES, **ARGS)  # type: ignore[arg-type]


def test_a_streamed_line_too_long(server: ModelServer) -> None:
    server.script(Reply(events=[(None, '"' + "a" * 2_000_000 + '"')]))
    with pytest.raises(LLMBadResponse, match="streamed a line too long"):
        list(OpenAIProvider().stream(MESSAGES, **ARGS))  # type: ignore[arg-type]


def test_a_stream_error_event(server: ModelServer) -> None:
    server.script(
        Reply(
            events=[
                (
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                )
            ]
        )
    )
    with pytest.raises(LLMError, match="failed mid-stream: Overloaded$"):
        list(AnthropicProvider().stream(MESSAGES, **ARGS))  # type: ignore[arg-type]


QUERY_SECRET = "Zq9SECRETQ/x+y"


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_query_in_the_base_url_stays_the_query_and_its_secret_is_masked(
    kind: str, server: ModelServer, monkeypatch: pytest.MonkeyPatch, slash: str
) -> None:
    """Trial 6 (issue 5, kind 8): ``base_url = http://h/v1?key=SECRET`` sent
    ``POST /v1?key=SECRET/chat/completions``, and the server's echo of the request line
    kept the secret in the task's error. The query is kept as the query (Azure-style
    ``?api-version=``) and every secret query value is masked wherever quoted."""
    name = kind.upper()
    query = f"api-version=2024-06&key={quote(QUERY_SECRET, safe='')}&sig=Sg7SIGVALUE"
    base = server.url + ("/v1" if kind == "openai" else "") + slash
    monkeypatch.setenv(f"CONNECTSW_LLM__{name}__BASE_URL", f"{base}?{query}")
    monkeypatch.setenv("CONNECTSW_LLM__RETRIES", "0")
    get_settings.cache_clear()
    server.responder = lambda seen: Reply(
        400, {"error": {"message": f"bad request: POST {seen.path}?{seen.query}"}}
    )
    with pytest.raises(LLMError) as info:
        provider_of(kind).complete(MESSAGES, **ARGS)  # type: ignore[arg-type]
    (seen,) = server.requests
    assert seen.path == ("/v1/chat/completions" if kind == "openai" else "/v1/messages")
    assert dict(p.split("=", 1) for p in seen.query.split("&"))["api-version"] == "2024-06"
    message = str(info.value)
    for secret in ("Zq9SECRETQ", "Sg7SIGVALUE"):
        assert secret not in message, message
    assert "api-version=2024-06&key=***&sig=***" in message, message
